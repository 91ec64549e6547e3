"""The HTTP API: ingest replies, bad input, shopper reads, erasure, summary and probes."""

from __future__ import annotations

import gzip
import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.keys import STORE
from exporter.settings import Settings

from conftest import ClientFactory
from support import async_wait_until, brief_example, iso, shopper

Client = TestClient[Any, Any]


async def post(client: Client, path: str, body: Any) -> tuple[int, Any]:
    resp = await client.post(
        path, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    return resp.status, await resp.json()


async def store_state(client: Client) -> tuple[int, int, dict[str, Any]]:
    """Enough of the store to notice any change: tracked, online, and the summary."""
    store = client.app[STORE]
    return len(store), store.aggregates.active, store.summary(0)


class TestIngest:
    async def test_brief_example_over_http(self, client: Client) -> None:
        """The brief's example, POSTed as is, is accepted and shows up as a shopper."""
        status, reply = await post(client, "/api/metrics", brief_example())
        assert status == 200
        assert reply == {"accepted": 1, "ignored": 0, "ignoredRecords": [], "rejected": []}
        resp = await client.get("/api/shoppers/shopper_123")
        view = await resp.json()
        assert view["userName"] == "Sarah Johnson"
        assert view["location"] == "San Francisco, CA"
        assert view["cartValue"] == 127.5
        assert view["online"] is True

    async def test_array_and_envelope(self, client: Client) -> None:
        """An array of updates and the {metrics, events} envelope are both accepted."""
        status, reply = await post(client, "/api/metrics", [shopper("a"), shopper("b")])
        assert (status, reply["accepted"]) == (200, 2)
        order = {"type": "order_completed", "userId": "a", "timestamp": iso(), "orderValue": 12}
        status, reply = await post(
            client, "/api/metrics", {"metrics": [shopper("c")], "events": [order]}
        )
        assert (status, reply["accepted"]) == (200, 2)
        assert client.app[STORE].counters.orders == 1

    async def test_events_endpoint(self, client: Client) -> None:
        """POST /api/events takes explicit events."""
        body = [{"type": "search", "userId": "a", "timestamp": iso(), "query": "oat milk"}]
        status, reply = await post(client, "/api/events", body)
        assert (status, reply["accepted"]) == (200, 1)
        assert client.app[STORE].counters.events["search"] == 1

    async def test_valid_records_of_a_batch_are_applied(self, client: Client) -> None:
        """Invalid records are refused by index and field; the valid ones still apply."""
        batch = [shopper("good1"), shopper("bad", pageViews=-4), shopper("good2"), {"userId": 3}]
        status, reply = await post(client, "/api/metrics", batch)
        assert status == 200
        assert reply["accepted"] == 2
        assert [r["index"] for r in reply["rejected"]] == [1, 3]
        assert reply["rejected"][0]["errors"] == [
            {"field": "pageViews", "message": "Input should be greater than or equal to 0"}
        ]
        fields = {e["field"] for e in reply["rejected"][1]["errors"]}
        assert fields == {"userId", "userName", "timestamp", "isActive"}
        assert "bad" not in client.app[STORE]
        assert {"good1", "good2"} <= {s.user_id for s in client.app[STORE].newest()}

    @pytest.mark.parametrize(
        ("record", "field"),
        [
            ({"userName": "x", "timestamp": "2026-01-01T00:00:00Z", "isActive": True}, "userId"),
            (shopper(pageViews="many"), "pageViews"),
            (shopper(itemsInCart=-1), "itemsInCart"),
            (shopper(scrollDepth=150), "scrollDepth"),
            (shopper(userName="n" * 1_000_000), "userName"),
            (shopper(isActive="true"), "isActive"),
            (shopper(timestamp="not a time"), "timestamp"),
        ],
    )
    async def test_all_invalid_is_422_with_the_field(
        self, client: Client, record: dict[str, Any], field: str
    ) -> None:
        """A body whose only record is invalid is a 422 naming the field; nothing changes."""
        before = await store_state(client)
        status, reply = await post(client, "/api/metrics", record)
        assert status == 422
        assert reply["accepted"] == 0
        assert reply["rejected"][0]["errors"][0]["field"] == field
        assert await store_state(client) == before

    @pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
    async def test_non_finite_numbers_name_the_field(self, client: Client, token: str) -> None:
        """NaN and Infinity (not JSON, but sent by some encoders) are refused by field."""
        raw = orjson.dumps(shopper()).decode()[:-1] + f', "cartValue": {token}}}'
        resp = await client.post("/api/metrics", data=raw)
        reply = await resp.json()
        assert resp.status == 422
        assert reply["rejected"][0]["errors"][0]["field"] == "cartValue"
        assert "finite" in reply["rejected"][0]["errors"][0]["message"]
        assert len(client.app[STORE]) == 0

    async def test_not_json_is_400(self, client: Client) -> None:
        """A body that is not JSON is a 400 that says so."""
        resp = await client.post("/api/metrics", data=b"userId=1&isActive=true")
        reply = await resp.json()
        assert resp.status == 400
        assert reply["error"] == "not_json"
        assert "not valid JSON" in reply["message"]

    @pytest.mark.parametrize("path", ["/api/metrics", "/api/events"])
    async def test_bytes_that_are_no_utf8_are_400(self, client: Client, path: str) -> None:
        """Bytes that are not even text are a 400 `not_json` on both ingest paths."""
        resp = await client.post(path, data=b"\xff\xfe{\x80")
        assert resp.status == 400
        assert (await resp.json())["error"] == "not_json"

    async def test_wrong_top_level_shape_is_422(self, client: Client) -> None:
        """A JSON scalar is refused with the reason."""
        resp = await client.post("/api/metrics", data=b"42")
        assert resp.status == 422
        assert (await resp.json())["message"] == "body must be a JSON object or array"

    async def test_empty_array_is_fine(self, client: Client) -> None:
        """An empty batch is accepted and does nothing."""
        status, reply = await post(client, "/api/metrics", [])
        assert (status, reply["accepted"]) == (200, 0)


class TestLimits:
    @pytest.fixture
    def settings(self) -> Any:
        from exporter.settings import Settings

        return Settings(max_body_bytes=64 * 1024, max_batch=100)

    async def test_oversized_body_is_413(self, client: Client) -> None:
        """A body over the limit is refused with 413 and changes nothing."""
        big = [shopper(f"s{i}", lastAction="x" * 190) for i in range(400)]
        status, reply = await post(client, "/api/metrics", big)
        assert status == 413
        assert reply["error"] == "too_large"
        assert len(client.app[STORE]) == 0

    async def test_oversized_chunked_body_is_413(self, client: Client) -> None:
        """A body without Content-Length is cut off at the limit, not read whole."""

        async def chunks() -> Any:
            for _ in range(1000):
                yield b" " * 4096

        resp = await client.post("/api/metrics", data=chunks())
        assert resp.status == 413

    async def test_gzip_body_inflating_past_the_limit_is_413(self, client: Client) -> None:
        """The limit holds for the body as read, not as sent: 2 KiB of gzip inflating to 1 MiB."""
        bomb = gzip.compress(b"[" + b" " * (1024 * 1024) + b"]")
        assert len(bomb) < 4096
        resp = await client.post("/api/metrics", data=bomb, headers={"Content-Encoding": "gzip"})
        assert resp.status == 413
        assert (await resp.json())["error"] == "too_large"

    async def test_oversized_batch_is_413(self, client: Client) -> None:
        """More records than the batch cap is a 413 naming the limit."""
        status, reply = await post(client, "/api/metrics", [shopper(f"s{i}") for i in range(101)])
        assert status == 413
        assert reply["error"] == "batch_too_large"
        assert "limit is 100" in reply["message"]
        assert len(client.app[STORE]) == 0

    async def test_gzip_body_is_accepted(self, client: Client) -> None:
        """A gzip-encoded body is read like a plain one."""
        raw = gzip.compress(orjson.dumps([shopper("zipped")]))
        resp = await client.post("/api/metrics", data=raw, headers={"Content-Encoding": "gzip"})
        assert resp.status == 200
        assert "zipped" in client.app[STORE]


class TestShoppers:
    async def test_list_newest_first_and_filters(self, client: Client) -> None:
        """Shoppers come newest first; online=true leaves out offline ones; limit caps."""
        await post(client, "/api/metrics", [shopper("a"), shopper("b"), shopper("c")])
        await post(client, "/api/metrics", shopper("a", isActive=False, timestamp=iso()))
        reply = await (await client.get("/api/shoppers")).json()
        assert [s["userId"] for s in reply["shoppers"]] == ["a", "c", "b"]
        online = await (await client.get("/api/shoppers?online=true&limit=1")).json()
        assert [s["userId"] for s in online["shoppers"]] == ["c"]
        assert online["total"] == 2

    async def test_bad_limit(self, client: Client) -> None:
        """A limit that is not a number is a 400 naming it."""
        resp = await client.get("/api/shoppers?limit=ten")
        assert resp.status == 400
        assert (await resp.json())["field"] == "limit"

    async def test_unknown_shopper_is_404(self, client: Client) -> None:
        """Reading or erasing an unknown shopper is a 404."""
        assert (await client.get("/api/shoppers/nobody")).status == 404
        assert (await client.delete("/api/shoppers/nobody")).status == 404

    async def test_delete_erases_state_and_identity(self, client: Client) -> None:
        """DELETE forgets the shopper and removes their name from the held events."""
        await post(client, "/api/metrics", shopper("gone", userName="Gone Person", itemsInCart=2))
        resp = await client.delete("/api/shoppers/gone")
        assert resp.status == 204
        assert (await client.get("/api/shoppers/gone")).status == 404
        summary = await (await client.get("/api/summary")).json()
        assert (summary["activeShoppers"], summary["activeCarts"]) == (0, 0)
        timeline = await (await client.get("/api/shoppers/gone/events")).json()
        assert timeline["events"] == []
        metrics = await (await client.get("/metrics")).text()
        assert "Gone Person" not in metrics

    async def test_timeline_newest_first(self, client: Client) -> None:
        """A shopper's timeline lists their events, newest first."""
        await post(client, "/api/metrics", shopper("t", itemsInCart=0))
        await post(client, "/api/metrics", shopper("t", itemsInCart=2, cartValue=9.5))
        reply = await (await client.get("/api/shoppers/t/events")).json()
        assert [e["type"] for e in reply["events"]] == ["cart_add", "session_started"]
        assert reply["events"][0]["message"] == "added 2 items to cart ($9.50)"
        assert reply["events"][0]["id"] > reply["events"][1]["id"]

    async def test_email_never_appears(self, client: Client) -> None:
        """The email sent with an update is in no reply, event or metric."""
        await post(client, "/api/metrics", brief_example())
        for path in (
            "/api/shoppers",
            "/api/shoppers/shopper_123",
            "/api/shoppers/shopper_123/events",
            "/api/summary",
            "/metrics",
        ):
            body = await (await client.get(path)).text()
            assert "sarah@email.com" not in body, path
            assert "@" not in body or path == "/metrics", path


class TestSummaryAndProbes:
    async def test_summary_keys(self, client: Client) -> None:
        """The summary carries every key metric of the brief."""
        await post(client, "/api/metrics", brief_example())
        summary = await (await client.get("/api/summary")).json()
        for key in (
            "activeShoppers",
            "activeCarts",
            "totalCartValue",
            "ordersLastHour",
            "averageSessionSeconds",
            "cartAbandonmentRate",
            "productViews",
            "searches",
            "activityDistribution",
            "topActivities",
        ):
            assert key in summary, key
        assert summary["activeShoppers"] == 1
        assert summary["totalCartValue"] == 127.5
        assert summary["averageSessionSeconds"] == 900
        assert summary["productViews"] == 35

    async def test_probes_and_landing(self, client: Client) -> None:
        """Liveness, readiness and the page at / answer."""
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert (ready.status, (await ready.json())["status"]) == (200, "ready")
        page = await client.get("/")
        assert page.status == 200
        assert "Live Shopper Metrics" in await page.text()


async def test_demo_control_can_be_disabled(aiohttp_client: ClientFactory) -> None:
    """With demo control off, Start Demo is refused with 403."""
    from exporter.app import create_app
    from exporter.settings import Settings

    client = await aiohttp_client(create_app(Settings(demo_control=False)))
    resp = await client.post("/api/demo/start")
    assert resp.status == 403
    assert (await (await client.get("/api/demo")).json())["enabled"] is False


async def test_demo_start_and_stop(client: Client) -> None:
    """Start Demo runs the generator; Stop Demo stops it and signs its shoppers out."""
    resp = await client.post("/api/demo/start", json={"shoppers": 5})
    assert (await resp.json())["running"] is True
    store = client.app[STORE]

    async def someone_online() -> bool:
        return store.aggregates.active > 0

    await async_wait_until(someone_online, timeout=5)
    resp = await client.post("/api/demo/stop")
    assert (await resp.json())["running"] is False
    assert store.aggregates.active == 0


async def test_openapi_describes_the_api(client: Client) -> None:
    """The OpenAPI document names every ingest path and the wire model's required fields."""
    doc = await (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/metrics", "/api/events", "/api/shoppers", "/api/summary"} <= set(doc["paths"])
    update = doc["components"]["schemas"]["ShopperUpdate"]
    assert set(update["required"]) == {"userId", "userName", "timestamp", "isActive"}
    assert "email" not in update["properties"]


async def test_slow_body_is_cut_off(aiohttp_client: ClientFactory) -> None:
    """A client that trickles its body past --body-timeout gets a 408, not the handler held."""
    import asyncio

    client = await aiohttp_client(create_app(Settings(body_timeout=0.3)))

    async def trickle() -> Any:
        yield b"["
        await asyncio.sleep(2)
        yield b"]"

    resp = await client.post("/api/metrics", data=trickle())
    assert resp.status == 408
    assert (await resp.json())["error"] == "timeout"


async def test_page_links_the_endpoints(client: Client) -> None:
    """The page at / links the metrics, the APIs and the probes."""
    page = await (await client.get("/")).text()
    for href in ("/metrics", "/api/summary", "/api/shoppers", "/api/stream", "/healthz"):
        assert f'href="{href}"' in page, href


class TestReplyShape:
    async def test_ignored_records_are_listed_with_their_reason(self, client: Client) -> None:
        """A stale and a repeated update are each listed by index with their reason; the stale
        one names both times. The reply validates against the OpenAPI Report schema."""
        from jsonschema import Draft202012Validator

        now = time.time() - 600
        first = shopper("a", timestamp=iso(now + 60), pageViews=2)
        body = [first, shopper("a", timestamp=iso(now), pageViews=1), dict(first)]
        status, reply = await post(client, "/api/metrics", body)
        assert status == 200
        assert (reply["accepted"], reply["ignored"]) == (1, 2)
        stale, repeat = reply["ignoredRecords"]
        assert (stale["index"], stale["kind"], stale["reason"]) == (1, "metric", "stale")
        assert stale["timestamp"].startswith(iso(now)[:19])
        assert stale["storedTimestamp"].startswith(iso(now + 60)[:19])
        assert stale["timestamp"] in stale["message"]
        assert stale["storedTimestamp"] in stale["message"]
        assert (repeat["index"], repeat["reason"]) == (2, "duplicate")

        doc = await (await client.get("/api/openapi.json")).json()
        schema = {**doc["components"]["schemas"]["Report"], "components": doc["components"]}
        Draft202012Validator(schema).validate(reply)
        assert set(reply) == set(doc["components"]["schemas"]["Report"]["properties"])


async def test_the_client_returns_ignored_records_and_retry_after(
    aiohttp_client: ClientFactory,
) -> None:
    """MetricsClient returns the report with ignoredRecords, and a 429 raises PushError with
    the service's Retry-After."""
    from exporter.client import MetricsClient, PushError

    test_client = await aiohttp_client(create_app(Settings(max_shoppers=1)))
    async with MetricsClient(str(test_client.make_url("/"))) as pusher:
        assert (await pusher.push_user_metric(shopper("a")))["accepted"] == 1
        again = await pusher.push_bulk_metrics([shopper("a", timestamp=iso(0))])
        assert again["ignoredRecords"][0]["reason"] == "stale"
        with pytest.raises(PushError) as full:
            await pusher.push_user_metric(shopper("b"))
    assert full.value.status == 429
    assert full.value.retry_after is not None
    assert full.value.retry_after > 0
    assert full.value.body["rejected"][0]["reason"] == "capacity"
