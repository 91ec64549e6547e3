"""GET /ws: pushes answered with acks or errors, the 1009 size limit, and live subscriptions."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.streams import StreamReader

from exporter.api.websocket import ws_bytes
from exporter.app import create_app
from exporter.client import MetricsClient, PushError
from exporter.eventlog import Frame
from exporter.keys import HUB, INGESTOR, STATUS, STORE
from exporter.settings import Settings

from support import ROOT, async_wait_until, brief_example, iso, shopper


@pytest.fixture
async def server(aiohttp_server: Any) -> TestServer:
    """The full app on a real port, with quick summaries and a small message limit."""
    app = create_app(Settings(summary_interval=0.05, max_body_bytes=4096))
    started: TestServer = await aiohttp_server(app)
    return started


@pytest.fixture
async def ws(server: TestServer) -> AsyncIterator[ClientConnection]:
    """A `websockets` client connected to /ws."""
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as conn:
        yield conn


async def send(ws: ClientConnection, body: Any) -> dict[str, Any]:
    await ws.send(orjson.dumps(body).decode())
    return await recv(ws)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(10):
        raw = await ws.recv()
    assert isinstance(raw, str), "replies and frames are text messages (JSON for browsers)"
    reply: dict[str, Any] = orjson.loads(raw)
    return reply


async def _truthy(value: object) -> object:
    return value


class TestPush:
    async def test_every_accepted_shape_is_acked(
        self, server: TestServer, ws: ClientConnection
    ) -> None:
        """One update, the brief's user_metric and event messages, an array and the envelope."""
        ack = await send(ws, {"type": "user_metric", "metric": brief_example()})
        assert ack == {
            "type": "ack",
            "accepted": 1,
            "ignored": 0,
            "ignoredRecords": [],
            "rejected": [],
        }
        store = server.app[STORE]
        searches_before = store.counters.events.get("search", 0)
        event = {"type": "search", "userId": "shopper_123", "timestamp": iso(), "query": "tofu"}
        assert (await send(ws, {"type": "event", "event": event}))["accepted"] == 1
        assert (await send(ws, shopper("a")))["accepted"] == 1
        assert (await send(ws, [shopper("b"), shopper("c")]))["accepted"] == 2
        envelope = {"metrics": [shopper("d")], "events": [dict(event, query="kale")]}
        assert (await send(ws, envelope))["accepted"] == 2
        assert {"shopper_123", "a", "b", "c", "d"} <= {s.user_id for s in store.newest()}
        assert store.counters.events["search"] == searches_before + 2
        assert server.app[INGESTOR].received["ws"] == 7

    async def test_bad_fields_are_named(self, ws: ClientConnection) -> None:
        """A record with bad fields is refused by index and field; the others still apply."""
        ack = await send(ws, [shopper("ok"), shopper("bad", pageViews=-1, scrollDepth=140)])
        assert ack["type"] == "ack"
        assert ack["accepted"] == 1
        [rejection] = ack["rejected"]
        assert rejection["index"] == 1
        assert rejection["kind"] == "metric"
        assert {e["field"] for e in rejection["errors"]} == {"pageViews", "scrollDepth"}

    async def test_a_batch_is_a_batch_whatever_its_type(self, ws: ClientConnection) -> None:
        """A message with `metrics` is acked as a batch, even with a control word as its
        type: all-valid (the one-pass path) and with a bad record (the record path) alike."""
        valid = {"type": "subscribe", "metrics": [shopper("t1")]}
        assert await send(ws, valid) == {
            "type": "ack",
            "accepted": 1,
            "ignored": 0,
            "ignoredRecords": [],
            "rejected": [],
        }
        mixed = {"type": "subscribe", "metrics": [shopper("t2"), shopper("t3", pageViews=-1)]}
        ack = await send(ws, mixed)
        assert (ack["type"], ack["accepted"], ack["rejected"][0]["index"]) == ("ack", 1, 1)

    async def test_bad_json_is_answered_and_the_connection_stays(
        self, server: TestServer, ws: ClientConnection
    ) -> None:
        """Not JSON (also one that starts like a batch) gets an error message; the next push on
        the same socket still works."""
        for raw in ("{not json", "[not json"):
            error = await send_raw(ws, raw)
            assert error["type"] == "error"
            assert error["error"] == "not_json"
            assert error["message"]
            assert (await send(ws, shopper("after")))["accepted"] == 1
        assert server.app[INGESTOR].rejected[("ws", "not_json")] == 2

    async def test_unreadable_shape_is_an_error(self, ws: ClientConnection) -> None:
        """JSON that is no accepted shape (a number) is answered with an error, not an ack."""
        error = await send(ws, 42)
        assert (error["type"], error["error"]) == ("error", "invalid")

    async def test_oversize_message_closes_with_1009(
        self, server: TestServer, ws: ClientConnection
    ) -> None:
        """A message over max_body_bytes closes the socket with 1009 and is counted."""
        await ws.send(orjson.dumps([shopper(f"s{i}") for i in range(100)]).decode())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        rejected = server.app[INGESTOR].rejected
        await async_wait_until(lambda: _truthy(rejected.get(("ws", "too_large")) == 1))


async def send_raw(ws: ClientConnection, text: str) -> dict[str, Any]:
    await ws.send(text)
    return await recv(ws)


class TestSubscribe:
    async def test_live_frames_use_the_brief_shapes(
        self, server: TestServer, ws: ClientConnection
    ) -> None:
        """After subscribe, updates arrive as user_metric/metric, event/event, summary/summary."""
        reply = await send(ws, {"type": "subscribe"})
        assert reply["type"] == "subscribed"
        assert reply["types"] == ["event", "summary", "user_metric"]
        assert server.app[STATUS].streams["ws"] == 1
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as pusher:
            assert (await send(pusher, shopper("sarah", itemsInCart=3)))["accepted"] == 1
        first: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(10):
            while len(first) < 3:
                message = await recv(ws)
                first.setdefault(message["type"], message)
        metric, event, summary = first["user_metric"], first["event"], first["summary"]
        assert set(metric) == {"type", "metric"}
        assert metric["metric"]["userId"] == "sarah"
        assert metric["metric"]["itemsInCart"] == 3
        assert set(event) == {"type", "event"}
        assert event["event"]["userId"] == "sarah"
        assert isinstance(event["event"]["id"], int)
        assert set(summary) == {"type", "summary"}
        assert summary["summary"]["trackedShoppers"] == 1

    async def test_filters_and_resume(self, server: TestServer, ws: ClientConnection) -> None:
        """`types`, `user` and `lastEventId` narrow the frames and replay what was missed."""
        events = [
            {"type": "search", "userId": user, "timestamp": iso(), "query": "x"}
            for user in ("a", "b", "a", "b")
        ]
        assert (await send(ws, {"events": events}))["accepted"] == 4
        reply = await send(
            ws, {"type": "subscribe", "types": ["event"], "user": "b", "lastEventId": 0}
        )
        assert (reply["types"], reply["user"], reply["lastEventId"]) == (["event"], "b", 4)
        replayed = [await recv(ws), await recv(ws)]
        assert [m["event"]["id"] for m in replayed] == [2, 4]
        assert {m["event"]["userId"] for m in replayed} == {"b"}
        await ws.send(orjson.dumps({"events": events[:2]}).decode())
        # The ack and b's new event (id 6) arrive; nothing of a's, and no summary.
        got = [await recv(ws), await recv(ws)]
        assert sorted(m["type"] for m in got) == ["ack", "event"]
        assert next(m for m in got if m["type"] == "event")["event"]["id"] == 6

    async def test_unsubscribe_stops_frames(self, server: TestServer, ws: ClientConnection) -> None:
        """After unsubscribe only acks come back, and the subscriber is no longer counted."""
        assert (await send(ws, {"type": "subscribe", "types": ["event"]}))["type"] == "subscribed"
        await ws.send(orjson.dumps(shopper("a")).decode())
        assert {(await recv(ws))["type"], (await recv(ws))["type"]} == {"ack", "event"}
        assert (await send(ws, {"type": "unsubscribe"})) == {"type": "unsubscribed"}
        await async_wait_until(lambda: _truthy(server.app[STATUS].streams["ws"] == 0))
        for user in ("b", "c"):
            assert (await send(ws, shopper(user)))["type"] == "ack"

    async def test_bad_subscription_is_refused(self, ws: ClientConnection) -> None:
        """An unknown frame type in `types` is answered with an error naming it."""
        error = await send(ws, {"type": "subscribe", "types": ["orders"]})
        assert (error["type"], error["error"]) == ("error", "invalid")
        assert "orders" in error["message"]

    async def test_closing_the_socket_ends_the_subscription(self, server: TestServer) -> None:
        """A subscriber that disconnects is no longer counted."""
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as conn:
            await send(conn, {"type": "subscribe"})
            assert server.app[STATUS].streams["ws"] == 1
        await async_wait_until(lambda: _truthy(server.app[STATUS].streams["ws"] == 0))


class TestPusher:
    async def test_pusher_gets_an_ack_per_message_in_order(self, server: TestServer) -> None:
        """Overlapping sends on one connection each get their own ack, matched in order."""
        async with MetricsClient(str(server.make_url("/"))) as client:
            pusher = await client.connect_websocket()
            replies = await asyncio.gather(
                *(pusher.send([shopper(f"u{n}_{i}") for i in range(n)]) for n in range(1, 9))
            )
            assert [r["accepted"] for r in replies] == list(range(1, 9))
            bad = await pusher.send([shopper("ok")], [{"type": "search", "userId": "ok"}])
            assert bad["accepted"] == 1
            assert bad["rejected"][0]["kind"] == "event"
            with pytest.raises(PushError) as refused:
                await pusher.send_body(42)
            assert refused.value.status == 422
            assert (await pusher.send([shopper("after")]))["accepted"] == 1
            await pusher.close()
        assert server.app[INGESTOR].received["ws"] == 36 + 2 + 1 + 1

    async def test_demo_pushes_over_a_websocket(self, server: TestServer) -> None:
        """`shopper-exporter demo --transport ws` streams its traffic through /ws (a few
        shoppers: this server caps messages at 4 KiB) and exits 0, having delivered."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "demo", "--url", str(server.make_url("/")),
            "--transport", "ws", "--shoppers", "4", "--seed", "3", "--pace", "2",
            "--duration", "1.5", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(30):
            output, _ = await proc.communicate()
        text = output.decode()
        assert proc.returncode == 0, text
        assert "(ws)" in text
        assert server.app[INGESTOR].received["ws"] > 0
        assert server.app[INGESTOR].received.get("http", 0) == 0
        assert len(server.app[STORE]) > 0


class TestFraming:
    @pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
    def test_frames_parse_as_text_messages(self, size: int) -> None:
        """Live frames are written as whole WebSocket messages: the `websockets` parser reads
        each back as one final, unmasked text frame, at every length encoding's edges."""
        data = '"' + "x" * size + '"'
        wire = ws_bytes(Frame("summary", 1, data))
        reader = StreamReader()
        reader.feed_data(wire)
        reader.feed_eof()
        parser = WsFrame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as parsed:
            next(parser)
        frame: WsFrame = parsed.value.value
        assert (frame.opcode, frame.fin) == (Opcode.TEXT, True)
        assert orjson.loads(frame.data) == {"type": "summary", "summary": "x" * size}
        assert reader.at_eof()


class TestStalledSubscriber:
    async def test_stalled_subscriber_falls_behind_and_pushes_go_on(
        self, aiohttp_server: Any
    ) -> None:
        """A WebSocket subscriber that stops reading is held to its backlog, its drops are
        counted, pushes from another socket are all acked and applied, and once it reads
        again it gets the newest frames in order."""
        app = create_app(Settings(stream_backlog=500, summary_interval=3600))
        server: TestServer = await aiohttp_server(app)
        hub = app[HUB]
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with connect(url, max_queue=1) as stalled, connect(url) as pusher:
            assert (await send(stalled, {"type": "subscribe", "types": ["event"]}))[
                "type"
            ] == "subscribed"
            events = 0
            while hub.dropped_frames == 0 and events < 400_000:
                batch = [
                    {"type": "search", "userId": "a", "timestamp": iso(), "query": f"q{i}"}
                    for i in range(events, events + 500)
                ]
                assert (await send(pusher, {"events": batch}))["accepted"] == 500
                events += 500
            assert hub.dropped_frames > 0, "the stalled subscriber never fell behind"
            assert app[STORE].counters.events["search"] == events
            ids: list[int] = []
            async with asyncio.timeout(30):
                while not ids or ids[-1] < events:
                    message = await recv(stalled)
                    ids.append(message["event"]["id"])
            assert ids == sorted(set(ids))
            assert len(ids) == events - hub.dropped_frames
