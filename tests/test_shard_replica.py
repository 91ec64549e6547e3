"""A replica started with --shard applies only its own shoppers' records, on every transport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from snapshot_shapes import Clock, make_ingestor, record
from test_sources import PollUpstream, ServerFactory, quick, user_ids

from exporter import snapshot
from exporter.app import create_app
from exporter.keys import INGESTOR, STORE
from exporter.settings import Settings
from exporter.sharding import Shard, shard_of

from conftest import ClientFactory
from support import async_wait_until, free_port, iso, shopper

Client = TestClient[Any, Any]
SHARD = Shard(0, 2)
MINE = [u for u in (f"u{i}" for i in range(40)) if shard_of(u, 2) == 0][:3]
THEIRS = [u for u in (f"u{i}" for i in range(40)) if shard_of(u, 2) == 1][:3]


@pytest.fixture
def settings() -> Settings:
    """Shard 0 of 2, no demo."""
    return Settings(shard=SHARD)


async def metrics(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = await (await client.get("/metrics")).text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def refused_here(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in reply["rejected"] if r["reason"] == "wrong_shard"]


async def test_http_batch_applies_own_shoppers_and_refuses_others_naming_the_owner(
    client: Client,
) -> None:
    """A mixed batch: own shoppers applied, the others refused as wrong_shard naming shard 1."""
    body = [shopper(u) for u in MINE + THEIRS]
    resp = await client.post("/api/metrics", data=orjson.dumps(body))
    reply = await resp.json()
    assert resp.status == 200
    assert reply["accepted"] == len(MINE)
    refused = refused_here(reply)
    assert [r["index"] for r in refused] == list(range(len(MINE), len(body)))
    for rejection in refused:
        assert rejection["shard"] == 1
        (error,) = rejection["errors"]
        assert error["field"] == "userId"
        assert "belongs to shard 1 of 2" in error["message"]
    assert {s.user_id for s in client.app[STORE].newest(limit=100)} == set(MINE)


async def test_a_body_all_of_another_shard_is_422_and_changes_nothing(client: Client) -> None:
    """Only wrong_shard records: 422 with every record named, and the store stays empty."""
    resp = await client.post("/api/metrics", data=orjson.dumps([shopper(u) for u in THEIRS]))
    assert resp.status == 422
    assert len(refused_here(await resp.json())) == len(THEIRS)
    assert len(client.app[STORE]) == 0


async def test_events_of_another_shard_are_refused_and_not_counted(client: Client) -> None:
    """An order of another shard's shopper is refused; no order is counted here."""
    order = {"type": "order_completed", "userId": THEIRS[0], "timestamp": iso(), "orderValue": 9}
    resp = await client.post("/api/events", data=orjson.dumps([order]))
    reply = await resp.json()
    assert resp.status == 422
    assert refused_here(reply)[0]["kind"] == "event"
    assert client.app[STORE].counters.orders == 0


async def test_refusals_are_counted_by_transport_with_reason_wrong_shard(client: Client) -> None:
    """shopper_updates_rejected_total{reason="wrong_shard"} counts each refused record."""
    await client.post("/api/metrics", data=orjson.dumps([shopper(u) for u in THEIRS]))
    samples = await metrics(client)
    key = ("shopper_updates_rejected_total", (("reason", "wrong_shard"), ("transport", "http")))
    assert samples[key] == len(THEIRS)


async def test_websocket_push_refuses_another_shards_records(client: Client) -> None:
    """Over the push WebSocket the ack names the owner; only own records are applied."""
    async with client.ws_connect("/ws") as ws:
        await ws.send_str(orjson.dumps([shopper(MINE[0]), shopper(THEIRS[0])]).decode())
        ack = await ws.receive_json()
    assert ack["accepted"] == 1
    assert refused_here(ack)[0]["shard"] == 1
    assert client.app[INGESTOR].rejected[("ws", "wrong_shard")] == 1


async def test_loki_push_of_another_shards_line_is_refused(client: Client) -> None:
    """A shopper record pushed as a Loki line is sharded like any other record."""
    line = orjson.dumps(shopper(THEIRS[0])).decode()
    stream = {"stream": {"job": "shop"}, "values": [[str(10**18), line]]}
    body = orjson.dumps({"streams": [stream]})
    resp = await client.post(
        "/loki/api/v1/push", data=body, headers={"Content-Type": "application/json"}
    )
    assert "belongs to shard 1 of 2" in await resp.text()
    assert client.app[INGESTOR].rejected[("loki", "wrong_shard")] == 1
    assert len(client.app[STORE]) == 0


async def test_a_pulled_source_feeds_only_own_shoppers(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    """A poll source's records of other shards are refused and counted under `poll`."""
    upstream, port = PollUpstream(), free_port()
    upstream.batches.append({"metrics": [shopper(u) for u in MINE + THEIRS]})
    await aiohttp_server(upstream.app(), port=port)
    url = f"poll+http://127.0.0.1:{port}/api/metrics"
    client = await aiohttp_client(create_app(quick(url, shard=SHARD)))

    async def polled() -> bool:
        return client.app[INGESTOR].rejected.get(("poll", "wrong_shard"), 0) == len(THEIRS)

    await async_wait_until(polled)
    assert user_ids(client) == set(MINE)


async def test_shard_info_and_summary_say_which_shard(client: Client) -> None:
    """shopper_exporter_shard_info{shard="0",shards="2"} is 1; /api/summary names the shard."""
    samples = await metrics(client)
    assert samples[("shopper_exporter_shard_info", (("shard", "0"), ("shards", "2")))] == 1
    summary = await (await client.get("/api/summary")).json()
    assert summary["shard"] == {"index": 0, "count": 2}


async def test_an_unsharded_exporter_is_shard_0_of_1(aiohttp_client: ClientFactory) -> None:
    """Without --shard every record is applied and the info says 0 of 1; summary shard null."""
    client = await aiohttp_client(create_app(Settings()))
    resp = await client.post("/api/metrics", data=orjson.dumps([shopper(u) for u in THEIRS]))
    assert (await resp.json())["accepted"] == len(THEIRS)
    samples = await metrics(client)
    assert samples[("shopper_exporter_shard_info", (("shard", "0"), ("shards", "1")))] == 1
    assert (await (await client.get("/api/summary")).json())["shard"] is None


async def test_the_in_process_demo_plays_only_its_own_shard(
    aiohttp_client: ClientFactory,
) -> None:
    """--demo on a sharded replica simulates its own shoppers: nothing is refused."""
    client = await aiohttp_client(create_app(Settings(shard=SHARD, demo_shoppers=20, demo_seed=3)))
    store = client.app[STORE]

    async def some() -> bool:
        return len(store) >= 3

    await async_wait_until(some)
    assert all(shard_of(s.user_id, 2) == 0 for s in store.newest(limit=1000))
    assert client.app[INGESTOR].rejected.get(("demo", "wrong_shard"), 0) == 0


async def test_forwarded_events_carry_the_shard_as_a_stream_label(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    """With --loki-push-url, every stream a sharded replica pushes is labelled shard="0"."""
    pushed: list[dict[str, Any]] = []

    async def loki_push(request: web.Request) -> web.Response:
        assert request.headers["Content-Encoding"] == "gzip"  # aiohttp inflates it on read
        pushed.extend(orjson.loads(await request.read())["streams"])
        return web.Response(status=204)  # what Loki answers a good push

    loki = web.Application()
    loki.router.add_post("/loki/api/v1/push", loki_push)
    target = await aiohttp_server(loki)
    url = f"http://127.0.0.1:{target.port}/loki/api/v1/push"
    client = await aiohttp_client(create_app(Settings(shard=SHARD, loki_push_url=url)))
    await client.post("/api/metrics", data=orjson.dumps([shopper(u) for u in MINE]))

    async def arrived() -> bool:
        return sum(len(s["values"]) for s in pushed) >= len(MINE)

    await async_wait_until(arrived)
    assert pushed
    assert all(s["stream"]["shard"] == "0" for s in pushed)
    assert all(s["stream"]["job"] == "shopper-events" for s in pushed)


def test_only_new_shoppers_are_hashed_and_misrouted_ones_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shard check hashes a shopper the replica does not track yet; its next updates are
    applied without one, and a new shopper of another shard is still refused."""
    hashed: list[str] = []
    real_owner = Shard.owner

    def counting(self: Shard, user_id: str) -> int:
        hashed.append(user_id)
        return real_owner(self, user_id)

    monkeypatch.setattr(Shard, "owner", counting)
    clock = Clock()
    ingestor = make_ingestor(Settings(shard=SHARD), clock)
    mine, theirs = MINE[0], THEIRS[0]
    for step in range(4):
        report = ingestor.ingest([record(mine, step, pageViews=step + 1)], "http").to_json()
        assert report["accepted"] == 1
    assert hashed == [mine]
    report = ingestor.ingest([record(theirs, 5)], "http").to_json()
    assert refused_here(report)[0]["shard"] == 1
    assert theirs not in ingestor.store


def test_a_state_saved_under_another_sharding_keeps_only_this_shards_shoppers(
    tmp_path: Path,
) -> None:
    """Restored as shard 0 of 2 from a snapshot of one unsharded service, the replica keeps
    exactly the shoppers shard 0 owns, and refuses the others' next records."""
    clock = Clock()
    whole = make_ingestor(Settings(), clock)
    everyone = [f"u{i}" for i in range(40)]
    whole.ingest([record(uid, 0) for uid in everyone], "http")
    path = tmp_path / "state"
    snapshot.save(path, whole)
    replica = snapshot.load(path, lambda: make_ingestor(Settings(shard=SHARD), clock)).ingestor
    kept = sorted(s.user_id for s in replica.store.newest(limit=100))
    assert kept == sorted(uid for uid in everyone if shard_of(uid, 2) == 0)
    report = replica.ingest([record(THEIRS[0], 1)], "http").to_json()
    assert refused_here(report)[0]["shard"] == 1
