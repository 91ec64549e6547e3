"""Grafana Live over /loki/api/v1/tail: a real WebSocket of JSON text frames."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from exporter.app import create_app
from exporter.keys import STATUS, STREAMS
from exporter.settings import Settings

from conftest import ClientFactory
from support import async_wait_until, shopper


def tail_url(query: str) -> str:
    """The path Grafana's proxy opens for a Live query."""
    return "/loki/api/v1/tail?query=" + quote(query)


def tails(app: web.Application, count: int) -> Callable[[], Awaitable[bool]]:
    """A check that `count` tails are open, as the service counts them."""

    async def check() -> bool:
        return app[STATUS].streams["tail"] == count

    return check


async def next_text(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
    """The next JSON text frame, skipping keep-alive pings."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if msg.type == WSMsgType.TEXT:
            body: dict[str, Any] = orjson.loads(msg.data)
            return body
        assert msg.type in (WSMsgType.PING, WSMsgType.PONG), msg


async def test_new_event_arrives_within_a_second(aiohttp_client: ClientFactory) -> None:
    """A cart_add logged after connecting reaches the tail in under a second, as Loki frames it."""
    app = create_app(Settings())
    client = await aiohttp_client(app)
    async with client.ws_connect(tail_url('{job="shopper-events"} |= "added"')) as ws:
        await async_wait_until(tails(app, 1), timeout=5)
        started = time.monotonic()
        resp = await client.post("/api/metrics", json=shopper("amy", itemsInCart=2, cartValue=7.0))
        assert resp.status == 200
        body = await next_text(ws, timeout=1.0)
        assert time.monotonic() - started < 1.0
        [stream] = body["streams"]
        assert stream["stream"]["job"] == "shopper-events"
        assert stream["stream"]["type"] == "cart_add"
        [[ts, line]] = stream["values"]
        assert ts.isdigit()
        assert len(ts) >= 19
        assert orjson.loads(line)["userId"] == "amy"
    await async_wait_until(tails(app, 0), timeout=5)
    assert not app[STREAMS]


async def test_recent_entries_come_first(aiohttp_client: ClientFactory) -> None:
    """On connect the tail sends recent matching entries, oldest first."""
    client = await aiohttp_client(create_app(Settings()))
    for name in ("ann", "ben", "cat"):
        assert (await client.post("/api/metrics", json=shopper(name))).status == 200
    async with client.ws_connect(tail_url('{type="session_started"}')) as ws:
        body = await next_text(ws, timeout=2.0)
        values = [v for s in body["streams"] for v in s["values"]]
        assert [orjson.loads(line)["userId"] for _, line in values] == ["ann", "ben", "cat"]


async def test_state_stream_tails_shopper_updates(aiohttp_client: ClientFactory) -> None:
    """Tailing the shopper-state stream sends each updated shopper's state line."""
    app = create_app(Settings())
    client = await aiohttp_client(app)
    async with client.ws_connect(tail_url('{job="shopper-state", status="online"}')) as ws:
        await async_wait_until(tails(app, 1), timeout=5)
        resp = await client.post("/api/metrics", json=shopper("dee", membershipType="Premium"))
        assert resp.status == 200
        body = await next_text(ws, timeout=2.0)
        [stream] = body["streams"]
        assert stream["stream"] == {
            "job": "shopper-state",
            "service_name": "shopper-state",
            "detected_level": "info",
            "status": "online",
            "membership": "Premium",
        }
        view = orjson.loads(stream["values"][0][1])
        assert view["userId"] == "dee"
        assert "email" not in view


async def test_server_pings_every_second(aiohttp_client: ClientFactory) -> None:
    """An idle tail gets WebSocket pings, as Loki sends them."""
    client = await aiohttp_client(create_app(Settings()))
    async with client.ws_connect(tail_url('{job="shopper-events"}'), autoping=False) as ws:
        msg = await ws.receive(timeout=3.0)
        assert msg.type == WSMsgType.PING


async def test_bad_query_closes_with_the_reason(aiohttp_client: ClientFactory) -> None:
    """A query error closes the socket with 1011 and the parse error, which Grafana shows."""
    client = await aiohttp_client(create_app(Settings()))
    async with client.ws_connect(tail_url('{job="shopper-events"')) as ws:
        msg = await ws.receive(timeout=2.0)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == WSCloseCode.INTERNAL_ERROR
        assert msg.extra.startswith("parse error at line 1, col 22")


async def test_metric_query_cannot_be_tailed(aiohttp_client: ClientFactory) -> None:
    """Without an upgrade the error is a plain 400; metric queries are refused."""
    client = await aiohttp_client(create_app(Settings()))
    resp = await client.get(tail_url('rate({job="shopper-events"}[1m])'))
    assert resp.status == 400
    assert "log query" in await resp.text()


async def test_shutdown_closes_tails_going_away(aiohttp_client: ClientFactory) -> None:
    """Stopping the service closes open tails with 1001 (going away)."""
    app = create_app(Settings())
    client = await aiohttp_client(app)
    ws = await client.ws_connect(tail_url('{job="shopper-events"}'))
    await async_wait_until(tails(app, 1), timeout=5)
    await app.shutdown()
    msg = await ws.receive(timeout=3.0)
    while msg.type in (WSMsgType.PING, WSMsgType.PONG):
        msg = await ws.receive(timeout=3.0)
    assert msg.type == WSMsgType.CLOSE
    assert msg.data == WSCloseCode.GOING_AWAY
    await ws.close()
