"""Pull sources against real upstream WebSocket, SSE and HTTP servers that stop and restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from exporter.app import create_app
from exporter.keys import INGESTOR, STATUS, STORE
from exporter.settings import Settings
from exporter.sources import source_kind, source_name
from exporter.sources.sse import SseEvent, SseParser
from exporter.sources.supervisor import Backoff

from support import async_wait_until, free_port, iso, shopper

ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def quick(*sources: str, **more: Any) -> Settings:
    """Settings with the given sources and reconnects in tens of milliseconds."""
    return Settings(
        sources=sources, reconnect_delay=0.05, reconnect_max_delay=0.2, poll_interval=0.05, **more
    )


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    async def probe() -> object:
        return check()

    await async_wait_until(probe, timeout=timeout)


class Changes:
    """Wakes waiters whenever an upstream gets something new to send."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class WsUpstream:
    """A real `websockets` server that sends each queued message once, to whoever is connected."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.queue: list[str] = []
        self.connections = 0
        self.changes = Changes()
        self._server: Server | None = None

    def send(self, *bodies: Any) -> None:
        self.queue += [orjson.dumps(b).decode() for b in bodies]
        self.changes.notify()

    async def start(self) -> None:
        self._server = await serve(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, conn: ServerConnection) -> None:
        self.connections += 1
        closed = asyncio.ensure_future(conn.wait_closed())
        with contextlib.suppress(ConnectionClosed):
            while not closed.done():
                while self.queue and not closed.done():
                    await conn.send(self.queue[0])
                    self.queue.pop(0)
                changed = asyncio.ensure_future(self.changes.wait())
                await asyncio.wait([changed, closed], return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()


class SseUpstream:
    """An SSE server with its own event log that honours Last-Event-ID, as a real one would."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str]] = []
        self.last_event_ids: list[str | None] = []
        self.changes = Changes()
        self.closing = False

    def add(self, wire: str) -> None:
        """Add one event; `wire` is its lines without the id (the id is the next number)."""
        self.events.append((len(self.events) + 1, wire))
        self.changes.notify()

    def app(self) -> web.Application:
        self.closing = False
        app = web.Application()
        app.router.add_get("/feed", self._feed)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, _: web.Application) -> None:
        self.closing = True
        self.changes.notify()

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Last-Event-ID")
        self.last_event_ids.append(header)
        sent = int(header or 0)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": hello\n\n")
        while not self.closing:
            for event_id, wire in self.events[sent:]:
                await resp.write(f"id: {event_id}\n{wire}\n\n".encode())
                sent = event_id
            await self.changes.wait()
        return resp


class PollUpstream:
    """The brief's REST source: GET returns the latest `{metrics, events}` with an ETag."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.polls = 0
        self.not_modified = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/metrics", self._metrics)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        self.polls += 1
        etag = f'"{len(self.batches)}"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        body = self.batches[-1] if self.batches else {"metrics": [], "events": []}
        return web.json_response(body, headers={"ETag": etag})


def user_ids(client: TestClient[Any, Any]) -> set[str]:
    return {s.user_id for s in client.app[STORE].newest(limit=1000)}


@pytest.fixture
async def ws_upstream() -> AsyncIterator[WsUpstream]:
    """A running upstream WebSocket server on a fixed port (so it can be restarted there)."""
    upstream = WsUpstream(free_port())
    await upstream.start()
    yield upstream
    await upstream.stop()


class TestWebSocketSource:
    async def test_reconnects_and_counts_each_record_once(
        self, aiohttp_client: ClientFactory, ws_upstream: WsUpstream
    ) -> None:
        """Records before and after an upstream restart arrive once; status follows the link."""
        url = f"ws://127.0.0.1:{ws_upstream.port}/feed"
        ws_upstream.send({"type": "user_metric", "metric": shopper("w1")}, [shopper("w2")])
        client = await aiohttp_client(create_app(quick(url)))
        status = client.app[STATUS].source(url)
        await eventually(lambda: user_ids(client) == {"w1", "w2"})
        assert status.up
        assert status.last_success is not None

        await ws_upstream.stop()
        await eventually(lambda: not status.up)
        ws_upstream.send([shopper("w3"), shopper("w4")])  # sent once it is back
        await ws_upstream.start()
        await eventually(lambda: user_ids(client) == {"w1", "w2", "w3", "w4"})
        assert status.up
        assert status.reconnects >= 1
        assert client.app[INGESTOR].received["ws"] == 4
        metrics = await (await client.get("/metrics")).text()
        assert f'shopper_exporter_source_up{{source="{url}"}} 1.0' in metrics
        assert 'shopper_updates_received_total{transport="ws"} 4.0' in metrics

    async def test_oversize_message_is_refused_and_the_source_recovers(
        self, aiohttp_client: ClientFactory, ws_upstream: WsUpstream
    ) -> None:
        """A message over the body limit is counted too_large; the source reconnects and goes on."""
        url = f"ws://127.0.0.1:{ws_upstream.port}/"
        ws_upstream.send([shopper(f"big{i}") for i in range(40)])
        client = await aiohttp_client(create_app(quick(url, max_body_bytes=2048)))
        rejected = client.app[INGESTOR].rejected
        await eventually(lambda: rejected.get(("ws", "too_large")) == 1)
        await eventually(lambda: ws_upstream.connections == 2)
        ws_upstream.send(shopper("small"))
        await eventually(lambda: user_ids(client) == {"small"})
        assert rejected[("ws", "too_large")] == 1


class TestSseSource:
    async def test_resumes_with_last_event_id_so_nothing_counts_twice(
        self, aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
    ) -> None:
        """After the upstream restarts, the source sends Last-Event-ID and gets only new events."""
        upstream, port = SseUpstream(), free_port()
        upstream.add(f"event: user_metric\ndata: {orjson.dumps(shopper('s1')).decode()}")
        s2, s3 = (orjson.dumps(shopper(u)).decode() for u in ("s2", "s3"))
        upstream.add(f"data: [{s2},\ndata: {s3}]")  # unnamed, one array over two data lines
        search = {"type": "search", "userId": "s1", "timestamp": iso(), "query": "tofu"}
        upstream.add(f"event: event\ndata: {orjson.dumps(search).decode()}")
        upstream.add('event: summary\ndata: {"activeShoppers": 3}')  # not ingested
        server = await aiohttp_server(upstream.app(), port=port)
        url = f"sse+http://127.0.0.1:{port}/feed"
        client = await aiohttp_client(create_app(quick(url)))
        status = client.app[STATUS].source(url)
        await eventually(lambda: client.app[INGESTOR].received.get("sse") == 4)
        assert user_ids(client) == {"s1", "s2", "s3"}
        assert client.app[STORE].counters.events["search"] == 1
        assert status.up

        await server.close()
        await eventually(lambda: not status.up)
        upstream.add(f"event: user_metric\ndata: {orjson.dumps(shopper('s4')).decode()}")
        upstream.add(f"event: metrics\ndata: {orjson.dumps({'metrics': [shopper('s5')]}).decode()}")
        await aiohttp_server(upstream.app(), port=port)
        await eventually(lambda: user_ids(client) == {"s1", "s2", "s3", "s4", "s5"})
        assert upstream.last_event_ids[0] is None
        assert upstream.last_event_ids[-1] == "4"
        assert client.app[INGESTOR].received["sse"] == 6
        assert status.up
        assert status.reconnects >= 1


class TestPollSource:
    async def test_polls_and_recovers_counting_each_batch_once(
        self, aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
    ) -> None:
        """Each new body is ingested once (ETag), an outage marks the source down, then up."""
        upstream, port = PollUpstream(), free_port()
        event = {"type": "order_completed", "userId": "p1", "timestamp": iso(), "orderValue": 40}
        upstream.batches.append({"metrics": [shopper("p1"), shopper("p2")], "events": [event]})
        server = await aiohttp_server(upstream.app(), port=port)
        url = f"poll+http://127.0.0.1:{port}/api/metrics"
        client = await aiohttp_client(create_app(quick(url)))
        status = client.app[STATUS].source(url)
        await eventually(lambda: upstream.not_modified >= 2)
        assert user_ids(client) == {"p1", "p2"}
        assert client.app[STORE].counters.orders == 1
        assert client.app[INGESTOR].received["poll"] == 3
        assert status.up
        assert status.last_success is not None

        await server.close()
        await eventually(lambda: not status.up)
        upstream.batches.append({"metrics": [shopper("p3")]})
        await aiohttp_server(upstream.app(), port=port)
        await eventually(lambda: "p3" in user_ids(client))
        await eventually(lambda: status.up)
        assert client.app[INGESTOR].received["poll"] == 4
        assert status.reconnects >= 1


class TestIsolation:
    async def test_a_dead_source_harms_nothing_and_logs_once(
        self,
        aiohttp_client: ClientFactory,
        aiohttp_server: ServerFactory,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A source that cannot connect retries quietly while others and HTTP ingest work."""
        caplog.set_level(logging.DEBUG, logger="exporter.sources")
        upstream = PollUpstream()
        upstream.batches.append({"metrics": [shopper("from_poll")]})
        poll_server = await aiohttp_server(upstream.app())
        dead_port = free_port()
        dead = f"ws://127.0.0.1:{dead_port}/"
        polled = f"poll+http://127.0.0.1:{poll_server.port}/api/metrics"
        client = await aiohttp_client(create_app(quick(dead, polled)))
        sources = client.app[STATUS].sources
        await eventually(lambda: sources[dead].reconnects >= 3)
        assert "from_poll" in user_ids(client)
        resp = await client.post("/api/metrics", data=orjson.dumps(shopper("from_http")))
        assert resp.status == 200
        assert sources[polled].up
        assert not sources[dead].up
        assert sources[dead].last_error

        def logged(level: int, text: str) -> int:
            return sum(
                1
                for r in caplog.records
                if r.levelno == level and dead in r.getMessage() and text in r.getMessage()
            )

        assert logged(logging.WARNING, "is down") == 1
        assert logged(logging.INFO, "is up") == 0

        upstream_ws = WsUpstream(dead_port)
        await upstream_ws.start()
        try:
            await eventually(lambda: sources[dead].up)
            assert logged(logging.INFO, "is up") == 1
            await upstream_ws.stop()
            await eventually(lambda: not sources[dead].up)
            reconnects = sources[dead].reconnects
            await eventually(lambda: sources[dead].reconnects >= reconnects + 3)
            assert logged(logging.WARNING, "is down") == 2
        finally:
            await upstream_ws.stop()

    def test_unsupported_scheme_is_refused_at_start(self) -> None:
        """A source URL with an unknown scheme fails create_app, naming the choices."""
        with pytest.raises(ValueError, match="poll\\+http://"):
            create_app(Settings(sources=("ftp://example.com/feed",)))


class TestNaming:
    @pytest.mark.parametrize(
        ("url", "name", "kind"),
        [
            (
                "sse+https://user:secret@example.com:8443/feed?token=abc#x",
                "sse+https://example.com:8443/feed",
                "sse",
            ),
            ("wss://shop.example/live?key=1", "wss://shop.example/live", "ws"),
            ("POLL+HTTP://[::1]:9000/api/metrics", "poll+http://[::1]:9000/api/metrics", "poll"),
        ],
    )
    def test_names_drop_credentials_and_query(self, url: str, name: str, kind: str) -> None:
        """A source is named by its URL without credentials, query or fragment."""
        assert source_name(url) == name
        assert source_kind(url) == kind


class TestBackoff:
    def test_doubles_with_jitter_up_to_the_cap_and_resets(self) -> None:
        """Delays start at the base, roughly double, never pass the cap, and start over."""
        backoff = Backoff(5.0, 60.0, random.Random(7))
        delays = [backoff.next_delay() for _ in range(8)]
        assert delays[0] == 5.0
        for n, delay in enumerate(delays):
            ceiling = min(60.0, 5.0 * 2**n)
            assert max(5.0, 0.75 * ceiling) <= delay <= ceiling
        assert delays[-1] >= 45.0
        backoff.reset()
        assert backoff.next_delay() == 5.0


def parse(*chunks: bytes) -> tuple[SseParser, list[SseEvent]]:
    parser = SseParser()
    events: list[SseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return parser, events


class TestSseParser:
    def test_fields_comments_and_multi_line_data(self) -> None:
        """event, id and data fields; comments skipped; data lines joined with newlines."""
        parser, events = parse(
            b': keep-alive\n\nid: 7\nevent: user_metric\ndata: {"a":\ndata:  1}\n\n'
        )
        assert events == [SseEvent("user_metric", '{"a":\n 1}', "7")]
        assert parser.last_event_id == "7"

    @pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
    def test_every_line_ending_even_split_across_chunks(self, newline: bytes) -> None:
        """LF, CRLF and CR all end lines, also when a chunk ends between CR and LF."""
        wire = b"id: 1" + newline + b"data: x" + newline + newline + b"data: y" + newline * 2
        chunks = [wire[i : i + 1] for i in range(len(wire))]
        _, events = parse(*chunks)
        assert [(e.type, e.data, e.last_event_id) for e in events] == [
            ("message", "x", "1"),
            ("message", "y", "1"),
        ]

    def test_id_takes_effect_only_when_its_event_is_dispatched(self) -> None:
        """An event cut off before its blank line leaves the last id unchanged."""
        parser, events = parse(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
        assert [e.data for e in events] == ["a"]
        assert parser.last_event_id == "1"

    def test_retry_bom_bare_field_and_empty_event(self) -> None:
        """retry (digits only), a leading BOM, `data` without colon, and events with no data."""
        parser, events = parse(
            "\ufeffretry: 2500\nretry: soon\n\nid: 9\n\ndata\n\n".encode(), b"\xc3", b"\xa9"
        )
        assert parser.retry_ms == 2500
        assert parser.last_event_id == "9"  # an id-only block still moves it
        assert events == [SseEvent("message", "", "9")]
