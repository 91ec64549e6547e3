"""Forwarding the event log to a Loki push endpoint: here, a second instance of the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.app import create_app
from exporter.keys import STATUS
from exporter.settings import Settings

from conftest import ClientFactory
from support import async_wait_until, free_port, shopper

ServerFactory = Callable[..., Awaitable[TestServer]]


def source_settings(port: int, **overrides: Any) -> Settings:
    """A service forwarding to the push endpoint on `port`, retrying quickly."""
    fields: dict[str, Any] = {
        "loki_push_url": f"http://127.0.0.1:{port}/loki/api/v1/push",
        "reconnect_delay": 0.05,
        "reconnect_max_delay": 0.2,
    }
    fields.update(overrides)
    return Settings(**fields)


async def forwarded_ids(target: TestServer) -> list[str]:
    """Shopper ids found in the lines the target received (each line holds the original)."""
    params = {"query": '{job="shopper-events"}', "limit": "5000", "direction": "forward"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(target.make_url("/loki/api/v1/query_range"), params=params) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    ids = []
    for stream in body["data"]["result"]:
        for _, line in stream["values"]:
            original = orjson.loads(orjson.loads(line)["line"])
            ids.append(original["userId"])
    return ids


def counter(app: web.Application, name: str) -> Callable[[], Awaitable[int]]:
    """An async read of one forwarding counter, for waiting on it."""

    async def read() -> int:
        value: int = getattr(app[STATUS], name)
        return value

    return read


async def test_events_reach_the_target(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    """Events logged by the source arrive at the target's push endpoint, labelled by stream."""
    target = await aiohttp_server(create_app(Settings()))
    source_app = create_app(source_settings(target.port or 0))
    source = await aiohttp_client(source_app)
    names = [f"fwd{i}" for i in range(5)]
    resp = await source.post("/api/metrics", json=[shopper(n) for n in names])
    assert resp.status == 200

    async def arrived() -> bool:
        return sorted(await forwarded_ids(target)) == names

    await async_wait_until(arrived, timeout=10)
    assert source_app[STATUS].forward_sent == 5
    assert source_app[STATUS].forward_dropped == 0


async def test_target_down_then_back(
    aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    """While the target is down, sends fail and are retried; the ring bounds the backlog and
    what falls off it is counted; once the target is back, the rest arrives."""
    port = free_port()
    source_app = create_app(source_settings(port, event_log_size=20))
    source = await aiohttp_client(source_app)
    names = [f"late{i:02d}" for i in range(30)]
    resp = await source.post("/api/metrics", json=[shopper(n) for n in names])
    assert resp.status == 200
    status = source_app[STATUS]
    await async_wait_until(counter(source_app, "forward_failures"), timeout=10)
    assert status.forward_sent == 0
    # 30 events into a ring of 20: the 10 oldest were gone before they could be sent.
    assert status.forward_dropped == 10

    target = await aiohttp_server(create_app(Settings()), port=port)

    async def arrived() -> bool:
        return sorted(await forwarded_ids(target)) == names[10:]

    await async_wait_until(arrived, timeout=10)
    assert status.forward_sent == 20
    assert status.forward_dropped == 10
