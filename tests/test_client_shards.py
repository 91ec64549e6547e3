"""The Python client against real sharded replicas: split batches, owners, held records, demo."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.app import create_app
from exporter.client import MetricsClient, PushError
from exporter.keys import INGESTOR, STORE
from exporter.settings import Settings
from exporter.sharding import SHARD_HEADER, Shard, shard_of

from support import free_port, iso, shopper

ServerFactory = Callable[..., Awaitable[TestServer]]
COUNT = 3
IDS = [f"shopper_{i}" for i in range(60)]


def replica_app(index: int) -> web.Application:
    return create_app(Settings(shard=Shard(index, COUNT)))


async def start_replicas(aiohttp_server: ServerFactory, ports: list[int]) -> list[TestServer]:
    return [await aiohttp_server(replica_app(i), port=p) for i, p in enumerate(ports)]


def tracked(server: TestServer) -> set[str]:
    return {s.user_id for s in server.app[STORE].newest(limit=10_000)}


def wrong_shard(server: TestServer) -> int:
    return sum(
        n for (_, reason), n in server.app[INGESTOR].rejected.items() if reason == "wrong_shard"
    )


async def test_a_batch_is_split_so_each_replica_gets_only_its_own(
    aiohttp_server: ServerFactory,
) -> None:
    """Every shopper lands on the replica that owns it; no replica refuses anything."""
    ports = [free_port() for _ in range(COUNT)]
    replicas = await start_replicas(aiohttp_server, ports)
    async with MetricsClient([f"http://127.0.0.1:{p}" for p in ports]) as client:
        report = await client.push_bulk_metrics([shopper(u) for u in IDS])
    assert report["accepted"] == len(IDS)
    assert report["queued"] == 0
    for index, replica in enumerate(replicas):
        assert tracked(replica) == {u for u in IDS if shard_of(u, COUNT) == index}
        assert wrong_shard(replica) == 0


async def test_refusals_keep_their_index_in_the_whole_batch(aiohttp_server: ServerFactory) -> None:
    """A bad record's index in the merged report is its index in the batch the client sent."""
    ports = [free_port() for _ in range(COUNT)]
    await start_replicas(aiohttp_server, ports)
    batch: list[dict[str, Any]] = [shopper(u) for u in IDS[:10]]
    batch[7] = {**batch[7], "cartValue": -5}
    async with MetricsClient([f"http://127.0.0.1:{p}" for p in ports]) as client:
        report = await client.push_bulk_metrics(batch)
    assert report["accepted"] == 9
    assert [(r["index"], r["reason"]) for r in report["rejected"]] == [(7, "invalid")]


async def test_a_single_push_and_events_go_to_the_owner(aiohttp_server: ServerFactory) -> None:
    """push_user_metric and push_events reach only the owning replica."""
    ports = [free_port() for _ in range(COUNT)]
    replicas = await start_replicas(aiohttp_server, ports)
    user = IDS[4]
    owner = replicas[shard_of(user, COUNT)]
    order = {"type": "order_completed", "userId": user, "timestamp": iso(), "orderValue": 30}
    async with MetricsClient([f"http://127.0.0.1:{p}" for p in ports]) as client:
        assert (await client.push_user_metric(shopper(user)))["accepted"] == 1
        assert (await client.push_events([order]))["accepted"] == 1
    assert tracked(owner) == {user}
    assert owner.app[STORE].counters.orders == 1
    assert sum(len(tracked(r)) for r in replicas) == 1


async def test_one_proxy_url_names_each_requests_shard_in_a_header(
    aiohttp_server: ServerFactory,
) -> None:
    """With shards=N and one URL, each request carries X-Shopper-Shard with its records' shard."""
    seen: list[tuple[str | None, list[str]]] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((request.headers.get(SHARD_HEADER), [m["userId"] for m in body["metrics"]]))
        return web.json_response({"accepted": len(body["metrics"]), "ignored": 0, "rejected": []})

    app = web.Application()
    app.router.add_post("/api/metrics", record)
    server = await aiohttp_server(app)
    async with MetricsClient(str(server.make_url("/")), shards=COUNT) as client:
        report = await client.push_bulk_metrics([shopper(u) for u in IDS])
    assert report["accepted"] == len(IDS)
    assert len(seen) == COUNT
    for header, users in seen:
        assert header is not None
        assert {shard_of(u, COUNT) for u in users} == {int(header)}


async def test_a_down_replicas_records_wait_and_arrive_once_it_returns(
    aiohttp_server: ServerFactory,
) -> None:
    """While a replica is down the others take theirs and its records are held; when it is back
    they are delivered in order, each once."""
    ports = [free_port() for _ in range(COUNT)]
    replicas = await start_replicas(aiohttp_server, ports)
    await replicas[1].close()
    own_1 = [u for u in IDS if shard_of(u, COUNT) == 1]
    async with MetricsClient([f"http://127.0.0.1:{p}" for p in ports]) as client:
        first = await client.push_bulk_metrics([shopper(u) for u in IDS])
        assert first["queued"] == len(own_1)
        assert first["accepted"] == len(IDS) - len(own_1)
        order = {"type": "order_completed", "userId": own_1[0], "timestamp": iso(), "orderValue": 7}
        assert (await client.push_events([order]))["queued"] == 1
        assert client.queued == len(own_1) + 1
        assert await client.flush() == len(own_1) + 1  # still down: still held

        back = await aiohttp_server(replica_app(1), port=ports[1])
        assert await client.flush() == 0
    assert tracked(back) == set(own_1)
    assert back.app[STORE].counters.orders == 1
    assert back.app[INGESTOR].received["http"] == len(own_1) + 1
    assert client.dropped == 0


async def test_the_queue_is_bounded_and_counts_what_it_drops(aiohttp_server: ServerFactory) -> None:
    """Past queue_limit the oldest held records are dropped and counted."""
    ports = [free_port(), free_port()]
    async with MetricsClient([f"http://127.0.0.1:{p}" for p in ports], queue_limit=5) as client:
        report = await client.push_bulk_metrics([shopper(u) for u in IDS[:20]])
    assert report["queued"] == 20
    assert client.queued == 10  # two shards, five each
    assert client.dropped == 10


async def test_a_body_refused_whole_is_raised_not_held(aiohttp_server: ServerFactory) -> None:
    """A 401 (wrong token) is no outage: it is raised, and nothing is held."""
    port = free_port()
    await aiohttp_server(create_app(Settings(shard=Shard(0, 1), write_token="w" * 20)), port=port)
    async with MetricsClient([f"http://127.0.0.1:{port}"], shards=1) as client:
        with pytest.raises(PushError) as caught:
            await client.push_bulk_metrics([shopper("a")])
    assert caught.value.status == 401
    assert client.queued == 0


def test_url_count_and_shards_must_agree() -> None:
    """Three URLs are three shards; saying otherwise is an error that says so."""
    with pytest.raises(ValueError, match="3 URLs are 3 shards, not 2"):
        MetricsClient(["http://a", "http://b", "http://c"], shards=2)


async def test_the_standalone_demo_pushes_to_several_urls(aiohttp_server: ServerFactory) -> None:
    """`demo --url A --url B` spreads shoppers over both replicas, none refused."""
    ports = [free_port(), free_port()]
    replicas = [
        await aiohttp_server(create_app(Settings(shard=Shard(i, 2))), port=p)
        for i, p in enumerate(ports)
    ]
    args = [sys.executable, "-m", "exporter", "demo", "--shoppers", "40", "--seed", "5"]
    args += ["--demo-speed", "50", "--duration", "2"]
    for port in ports:
        args += ["--url", f"http://127.0.0.1:{port}"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
    assert proc.returncode == 0, output
    for index, replica in enumerate(replicas):
        assert tracked(replica), output
        assert all(shard_of(u, 2) == index for u in tracked(replica))
        assert wrong_shard(replica) == 0
