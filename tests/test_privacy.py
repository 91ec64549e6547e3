"""Privacy: pseudonymised ids and names never leave as sent, and erasure works through them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter.settings import Settings

from support import brief_example, iso

Client = TestClient[Any, Any]


@pytest.fixture
def settings() -> Settings:
    return Settings(pseudonym_salt="pepper")


async def test_ids_and_names_are_pseudonymised(client: Client) -> None:
    """With a salt, the shopper's id and name appear nowhere; a stable pseudonym does."""
    await client.post("/api/metrics", data=orjson.dumps(brief_example()))
    order = {"type": "order_completed", "userId": "shopper_123", "timestamp": iso()}
    await client.post("/api/events", data=orjson.dumps(order))
    listing = await (await client.get("/api/shoppers")).json()
    [view] = listing["shoppers"]
    assert view["userId"].startswith("s_")
    assert view["userName"].startswith("Shopper ")
    for path in ("/api/shoppers", f"/api/shoppers/{view['userId']}/events", "/metrics"):
        body = await (await client.get(path)).text()
        assert "shopper_123" not in body, path
        assert "Sarah" not in body, path
        assert "sarah@email.com" not in body, path
    events = await (await client.get(f"/api/shoppers/{view['userId']}/events")).json()
    assert {e["type"] for e in events["events"]} >= {"order_completed", "session_started"}


async def test_lookup_and_erase_by_original_id(client: Client) -> None:
    """The producer's own id still finds and erases the shopper."""
    await client.post("/api/metrics", data=orjson.dumps(brief_example()))
    resp = await client.get("/api/shoppers/shopper_123")
    assert resp.status == 200
    assert (await resp.json())["userId"].startswith("s_")
    assert (await client.delete("/api/shoppers/shopper_123")).status == 204
    assert (await client.get("/api/shoppers/shopper_123")).status == 404


async def test_no_endpoint_stream_or_log_line_carries_an_email(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An email sent over every way in comes out of no reply, stream, Loki line or log line."""
    import logging
    import time

    from exporter.app import create_app

    caplog.set_level(logging.DEBUG)
    client = await aiohttp_client(create_app(Settings()))
    email = "sarah@email.com"
    record = brief_example()
    ws = await client.ws_connect("/ws")
    await ws.send_str(orjson.dumps({"type": "subscribe"}).decode())
    tail = await client.ws_connect('/loki/api/v1/tail?query={job="shopper-events"}')
    sse = await client.get("/api/stream?lastEventId=0")

    await client.post("/api/metrics", data=orjson.dumps(record))
    await ws.send_str(
        orjson.dumps({"type": "user_metric", "metric": record | {"pageViews": 30}}).decode()
    )
    line = orjson.dumps(record | {"pageViews": 31}).decode()
    push = {"streams": [{"stream": {"job": "app"}, "values": [[str(time.time_ns()), line]]}]}
    pushed = await client.post("/loki/api/v1/push", json=push)
    assert pushed.status == 204
    event = {"type": "coupon_applied", "userId": "shopper_123", "timestamp": iso(), "email": email}
    await client.post("/api/events", data=orjson.dumps(event))

    seen: list[str] = []
    for _ in range(6):  # frames from the WebSocket subscription and the tail
        for socket in (ws, tail):
            try:
                msg = await socket.receive(timeout=1)
            except TimeoutError:
                continue
            seen.append(str(msg.data))
    seen.append((await sse.content.read(64 * 1024)).decode())
    now = time.time_ns()
    start = now - 3_600_000_000_000
    for path in (
        "/api/shoppers",
        "/api/shoppers/shopper_123",
        "/api/shoppers/shopper_123/events",
        "/api/summary",
        "/metrics",
        f'/loki/api/v1/query_range?query={{job="shopper-events"}}&start={start}&end={now + 10**9}',
        f'/loki/api/v1/query_range?query={{job="shopper-state"}}&start={start}&end={now + 10**9}',
        f'/loki/api/v1/query_range?query={{job="app"}}&start={start}&end={now + 10**9}',
        "/loki/api/v1/labels",
        '/loki/api/v1/series?match[]={job="shopper-events"}',
    ):
        resp = await client.get(path)
        assert resp.status == 200, path
        seen.append(await resp.text())
    body = "\n".join(seen)
    assert "Sarah Johnson" in body  # the walk did reach the shopper's data
    assert email not in body
    assert email not in caplog.text
    await ws.close()
    await tail.close()
    sse.close()


async def test_emails_in_pushed_log_lines_are_masked(aiohttp_client: Any) -> None:
    """A plain log line pushed to the Loki API is kept with its email masked."""
    import time

    from exporter.app import create_app

    client = await aiohttp_client(create_app(Settings()))
    text = "checkout failed for sarah.j+groceries@email.co.uk at 10:02"
    push = {"streams": [{"stream": {"job": "app"}, "values": [[str(time.time_ns()), text]]}]}
    assert (await client.post("/loki/api/v1/push", json=push)).status == 204
    now = time.time_ns()
    window = f"start={now - 10**12}&end={now + 10**9}"
    resp = await client.get(f'/loki/api/v1/query_range?query={{job="shopper-events"}}&{window}')
    body = await resp.text()
    assert "checkout failed for [email] at 10:02" in body
    assert "sarah.j" not in body


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("mail jane.doe+x@shop.example.com now", "mail [email] now"),
        ("(bob@ex.org), first.last@sub.domain.co.uk;x@ex.io", "([email]), [email];[email]"),
        ("no address: a@b, user@localhost", "no address: a@b, user@localhost"),
        ("a" * 999 + "@", "a" * 999 + "@"),
        ("a" * 490 + "@" + "b" * 490 + ".io", "[email]"),
        ("a." * 400 + "@" + "b-" * 90, "a." * 400 + "@" + "b-" * 90),
    ],
)
def test_email_masking_takes_whole_addresses_and_leaves_the_rest(line: str, masked: str) -> None:
    """Every address is masked whole (from the start of its run of address characters); lines
    with an `@` but no address, long ones included, come back unchanged."""
    from exporter.ingest import redact_emails

    assert redact_emails(line) == masked
