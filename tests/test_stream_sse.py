"""GET /api/stream: frames, resume without gap or duplicate, filters, stalled readers, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exporter import eventlog, ingest
from exporter.app import create_app
from exporter.eventlog import EventLog, Frame, Hub, Published, Subscription, render_line
from exporter.ingest import Ingestor
from exporter.keys import EVENT_LOG, HUB, INGESTOR, STATUS, STORE
from exporter.settings import Settings
from exporter.sources.sse import SseEvent, SseParser
from exporter.store import ShopperStore
from exporter.views import view_of

from support import async_wait_until, iso, shopper

Client = TestClient[Any, Any]


class SseReader:
    """Reads a live SSE response with the service's own parser."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.parser = SseParser()
        self.events: list[SseEvent] = []

    async def read_until(
        self, done: Callable[[list[SseEvent]], bool], timeout: float = 10.0
    ) -> list[SseEvent]:
        async with asyncio.timeout(timeout):
            while not done(self.events):
                chunk = await self.response.content.readany()
                if not chunk:
                    raise EOFError(f"stream ended after {len(self.events)} events")
                self.events.extend(self.parser.feed(chunk))
        return self.events

    async def read_to_end(self, timeout: float = 10.0) -> list[SseEvent]:
        async with asyncio.timeout(timeout):
            while chunk := await self.response.content.readany():
                self.events.extend(self.parser.feed(chunk))
        return self.events

    def ids(self, kind: str = "event") -> list[int]:
        return [int(e.last_event_id) for e in self.events if e.type == kind]


def searches(start: int, count: int, user: str = "a") -> list[dict[str, Any]]:
    """Explicit `search` events: each becomes exactly one logged event."""
    return [
        {"type": "search", "userId": user, "timestamp": iso(), "query": f"q{i}"}
        for i in range(start, start + count)
    ]


async def post_events(client: Client, events: list[dict[str, Any]]) -> None:
    resp = await client.post("/api/events", data=orjson.dumps(events))
    assert resp.status == 200, await resp.text()


async def open_stream(client: Client, query: str = "", **headers: str) -> SseReader:
    resp = await client.get(f"/api/stream{query}", headers=headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    return SseReader(resp)


@pytest.fixture
def settings() -> Settings:
    """Summaries every 50 ms, so tests see them quickly."""
    return Settings(summary_interval=0.05)


class TestFrames:
    async def test_update_gives_event_user_metric_and_summary_frames(self, client: Client) -> None:
        """An update yields event and user_metric frames, and summaries follow, each with an id."""
        reader = await open_stream(client)
        status, body = await post_update(client, shopper("sarah", itemsInCart=2, cartValue=9.5))
        assert status == 200, body
        kinds = {"event", "user_metric", "summary"}
        await reader.read_until(lambda evs: kinds <= {e.type for e in evs})
        by_kind = {e.type: e for e in reversed(reader.events)}
        last_id = client.app[EVENT_LOG].last_id
        assert last_id >= 1
        event = orjson.loads(by_kind["event"].data)
        assert event["userId"] == "sarah"
        assert int(by_kind["event"].last_event_id) == event["id"]
        metric = orjson.loads(by_kind["user_metric"].data)
        assert metric["userId"] == "sarah"
        assert metric["itemsInCart"] == 2
        assert "email" not in metric
        assert int(by_kind["user_metric"].last_event_id) == last_id
        summary = orjson.loads(by_kind["summary"].data)
        assert summary["trackedShoppers"] == 1
        assert int(by_kind["summary"].last_event_id) == last_id
        assert reader.parser.retry_ms == 5000

    async def test_subscribers_are_counted(self, client: Client) -> None:
        """STATUS counts open SSE subscribers and forgets one that went away."""
        reader = await open_stream(client, "?types=summary")
        await reader.read_until(lambda evs: len(evs) >= 1)
        assert client.app[STATUS].streams["sse"] == 1
        reader.response.close()
        await async_wait_until(lambda: _truthy(client.app[STATUS].streams["sse"] == 0))
        metrics = await (await client.get("/metrics")).text()
        assert 'shopper_exporter_stream_subscribers{stream="sse"} 0.0' in metrics

    async def test_filtered_out_frames_do_not_send_keep_alives(self, client: Client) -> None:
        """Summaries a reader filtered out neither reach it nor trigger keep-alive comments."""
        resp = await client.get("/api/stream?types=event")
        hub = client.app[HUB]
        published = hub.published
        await async_wait_until(lambda: _truthy(hub.published >= published + 5))
        await post_events(client, searches(0, 1))
        received = b""
        async with asyncio.timeout(10):
            while b"event: event" not in received:
                received += await resp.content.readany()
        assert received.startswith(b"retry: 5000\n")
        assert b"keep-alive" not in received
        assert b"summary" not in received

    async def test_unknown_type_is_refused(self, client: Client) -> None:
        """Asking for a frame type that does not exist is a 400 naming it."""
        resp = await client.get("/api/stream?types=event,orders")
        assert resp.status == 400
        assert "orders" in (await resp.json())["message"]


class TestResume:
    async def test_last_event_id_header_resumes_without_gap_or_duplicate(
        self, client: Client
    ) -> None:
        """A reader that drops mid-stream and resumes with Last-Event-ID sees every event once."""
        first = await open_stream(client, "?types=event")
        for start in range(0, 20, 5):
            await post_events(client, searches(start, 5))
        await first.read_until(lambda evs: len(evs) >= 7)
        first.response.close()
        seen = first.ids()
        await post_events(client, searches(20, 20))  # while disconnected
        second = await open_stream(client, "?types=event", **{"Last-Event-ID": str(seen[-1])})
        await post_events(client, searches(40, 10))
        await second.read_until(lambda evs: bool(evs) and int(evs[-1].last_event_id) >= 50)
        assert seen + second.ids() == list(range(1, 51))

    async def test_query_parameter_resumes_too(self, client: Client) -> None:
        """`?lastEventId=` (what the page uses) resumes like the header."""
        await post_events(client, searches(0, 10))
        reader = await open_stream(client, "?types=event&lastEventId=4")
        await post_events(client, searches(10, 2))
        await reader.read_until(lambda evs: len(evs) >= 8)
        assert reader.ids() == list(range(5, 13))

    async def test_id_from_before_a_restart_does_not_hide_new_events(self, client: Client) -> None:
        """An id above anything logged (the service restarted) replays nothing and skips nothing."""
        await post_events(client, searches(0, 3))
        reader = await open_stream(client, "?types=event", **{"Last-Event-ID": "9999"})
        await post_events(client, searches(3, 2))
        await reader.read_until(lambda evs: len(evs) >= 2)
        assert reader.ids() == [4, 5]


class TestFilters:
    async def test_types_filter(self, client: Client) -> None:
        """`types=summary` gets only summaries; `types=event,user_metric` never a summary."""
        summaries = await open_stream(client, "?types=summary")
        shoppers = await open_stream(client, "?types=event,user_metric")
        await post_update(client, shopper("a"))
        await shoppers.read_until(lambda evs: {"event", "user_metric"} <= {e.type for e in evs})
        await summaries.read_until(lambda evs: len(evs) >= 3)
        assert {e.type for e in summaries.events} == {"summary"}
        await post_update(client, shopper("a", pageViews=3))
        await shoppers.read_until(lambda evs: sum(e.type == "user_metric" for e in evs) >= 2)
        assert {e.type for e in shoppers.events} == {"event", "user_metric"}

    async def test_user_filter(self, client: Client) -> None:
        """`user=b` gets b's event and user_metric frames only."""
        reader = await open_stream(client, "?user=b&types=event,user_metric")
        await post_update(client, shopper("a"))
        await post_update(client, shopper("b"))
        await post_events(client, searches(0, 1, user="a") + searches(1, 1, user="b"))
        await reader.read_until(lambda evs: any(e.data.find('"q1"') >= 0 for e in evs))
        users = {orjson.loads(e.data)["userId"] for e in reader.events}
        assert users == {"b"}
        assert {e.type for e in reader.events} == {"event", "user_metric"}

    async def test_user_filter_applies_to_the_replay(self, client: Client) -> None:
        """A resumed, filtered stream replays only the chosen shopper's events."""
        await post_events(client, searches(0, 3, user="a") + searches(3, 3, user="b"))
        reader = await open_stream(client, "?user=b&types=event&lastEventId=0")
        await reader.read_until(lambda evs: len(evs) >= 3)
        assert reader.ids() == [4, 5, 6]


async def post_update(client: Client, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await client.post("/api/metrics", data=orjson.dumps(body))
    return resp.status, await resp.json()


async def _truthy(value: object) -> object:
    return value


class TestStalledSubscriber:
    async def test_stalled_reader_loses_oldest_frames_and_ingestion_goes_on(
        self, aiohttp_server: Any
    ) -> None:
        """A reader that stops reading is held to its backlog, its drops are counted at once,
        ingestion is never held up, and a reader that keeps up misses nothing."""
        backlog = 1000
        app = create_app(Settings(stream_backlog=backlog, summary_interval=3600))
        server: TestServer = await aiohttp_server(app)
        hub, ingestor = app[HUB], app[INGESTOR]
        url = server.make_url("/api/stream?types=event")
        async with aiohttp.ClientSession() as session:
            stalled = SseReader(await session.get(url))  # not read until the end
            keeping_up = SseReader(await session.get(url))
            await async_wait_until(lambda: _truthy(hub.subscribers == 2))

            total = extra = 0
            while extra < 5 and total < 400_000:
                ingestor.ingest(searches(total, 100), "http", "event")
                total += 100
                await keeping_up.read_until(lambda _, last=total: keeping_up.ids()[-1:] == [last])
                extra += hub.dropped_frames > 0
            dropped_while_stalled = hub.dropped_frames
            assert dropped_while_stalled > 0, "the stalled reader never fell behind"
            assert app[STORE].counters.events["search"] == total
            assert keeping_up.ids() == list(range(1, total + 1))
            metrics = await (await session.get(server.make_url("/metrics"))).text()
            assert f"shopper_exporter_stream_dropped_frames_total {dropped_while_stalled}.0" in (
                metrics
            )

            # Reading again: the oldest frames are gone, the newest (at most the backlog) arrive.
            await stalled.read_until(lambda evs: stalled.ids()[-1:] == [total], timeout=30)
            received = stalled.ids()
            assert received == sorted(set(received))
            missing = set(range(1, total + 1)) - set(received)
            assert len(missing) == dropped_while_stalled == hub.dropped_frames
            assert len(_last_run(received)) <= backlog


async def _read_forever(ws: ClientConnection) -> None:
    async with asyncio.timeout(5):
        while True:
            await ws.recv()


def _last_run(ids: list[int]) -> list[int]:
    run = ids[-1:]
    for prev, cur in zip(reversed(ids[:-1]), reversed(ids), strict=False):
        if prev != cur - 1:
            break
        run.insert(0, prev)
    return run


class TestShutdown:
    async def test_shutdown_closes_websockets_going_away_and_ends_sse(
        self, aiohttp_server: Any
    ) -> None:
        """Stopping the service closes subscribed WebSockets with 1001 and ends SSE streams,
        promptly even for a reader that stopped reading."""
        app = create_app(Settings(summary_interval=0.05, stream_backlog=100))
        server: TestServer = await aiohttp_server(app)
        hub = app[HUB]
        async with (
            aiohttp.ClientSession() as session,
            connect(f"ws://127.0.0.1:{server.port}/ws") as ws,
        ):
            await ws.send(orjson.dumps({"type": "subscribe", "types": ["summary"]}).decode())
            assert orjson.loads(await ws.recv())["type"] == "subscribed"
            sse = SseReader(await session.get(server.make_url("/api/stream?types=summary")))
            await sse.read_until(lambda evs: len(evs) >= 1)
            await session.get(server.make_url("/api/stream?types=event"))  # never read
            assert app[STATUS].streams == {"sse": 2, "ws": 1, "tail": 0}
            total = 0
            while hub.dropped_frames == 0 and total < 400_000:
                app[INGESTOR].ingest(searches(total, 200), "http", "event")
                total += 200
                await asyncio.sleep(0)
            assert hub.dropped_frames > 0

            closing = asyncio.create_task(server.close())
            with pytest.raises(ConnectionClosed) as closed:
                await _read_forever(ws)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
            await sse.read_to_end(timeout=5)
            async with asyncio.timeout(5):
                await closing
        assert app[STATUS].streams == {"sse": 0, "ws": 0, "tail": 0}


class TestLazyFrames:
    """Frames are rendered when a reader first takes them, from what was captured at publish."""

    @staticmethod
    def make() -> tuple[Ingestor, Subscription]:
        settings = Settings()
        clock = 1_800_000_000.0
        hub = Hub()
        ingestor = Ingestor(
            settings, ShopperStore(settings), EventLog(100), hub, clock=lambda: clock
        )
        return ingestor, hub.subscribe()

    def test_user_metric_read_later_shows_the_state_at_publish(self) -> None:
        ingestor, sub = self.make()
        first = shopper("a", timestamp=iso(1_800_000_000.0), pageViews=3, cartValue=10.0)
        first["featuresUsed"] = ["Browsing"]
        ingestor.ingest(first, "http")
        later = shopper("a", timestamp=iso(1_800_000_001.0), pageViews=9, cartValue=42.5)
        later["featuresUsed"] = ["Browsing", "Cart"]
        ingestor.ingest(later, "http")
        views = [orjson.loads(f.data) for f in sub.pending() if f.kind == "user_metric"]
        assert [(v["pageViews"], v["cartValue"], v["featuresUsed"]) for v in views] == [
            (3, 10.0, ["Browsing"]),
            (9, 42.5, ["Browsing", "Cart"]),
        ]
        current = ingestor.store.get("a")
        assert current is not None
        assert views[-1] == ingestor.store.view(current)

    def test_frames_nobody_reads_are_never_rendered(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A stalled reader costs no rendering: what falls off its backlog never is, and what
        it finally takes is rendered once, however often it is read."""
        ingestor, _ = self.make()
        stalled = ingestor.hub.subscribe(max_backlog=5)
        views = 0

        def counting_view(glimpsed: tuple[Any, ...]) -> dict[str, Any]:
            nonlocal views
            views += 1
            return view_of(glimpsed)

        monkeypatch.setattr(ingest, "view_of", counting_view)
        rendered: list[str] = []

        def counting_line(event: Any) -> str:
            rendered.append(event.type)
            return render_line(event)

        monkeypatch.setattr(eventlog, "render_line", counting_line)
        for i in range(20):
            at = 1_800_000_000.0 + i
            ingestor.ingest(shopper("a", timestamp=iso(at), pageViews=i), "http")
            ingestor.ingest(
                [{"type": "search", "userId": "a", "timestamp": iso(at), "query": f"q{i}"}],
                "http",
                "event",
            )
        # 20 searches, 1 session start, and a user_metric after each update and each search.
        assert ingestor.hub.published == 61
        assert views == 0
        assert rendered == []

        frames = stalled.pending()
        assert len(frames) == 5
        assert stalled.dropped == 56
        for frame in frames * 2:
            orjson.loads(frame.data)
        assert views == sum(f.kind == "user_metric" for f in frames) == 3
        assert len(rendered) == sum(f.kind == "event" for f in frames) == 2


class TestHubRing:
    """Frames published one by one or a body at a time reach readers the same way."""

    @staticmethod
    def frames(first: int, count: int) -> list[Frame]:
        return [Frame("summary", i, f'{{"n":{i}}}') for i in range(first, first + count)]

    @staticmethod
    def seeds(first: int, count: int) -> list[Published]:
        """Frames as bodies publish them: mostly seeds, rendered when read, some Frames."""
        return [
            ("event", i, f"u{i}", i, lambda n: f'{{"n":{n}}}')
            if i % 3
            else Frame("summary", i, f'{{"n":{i}}}')
            for i in range(first, first + count)
        ]

    @pytest.mark.parametrize("sizes", [[3, 4, 5], [7, 7, 7, 7], [10], [25], [1, 13, 2], [0, 6]])
    def test_publish_many_is_publishing_each_in_turn(self, sizes: list[int]) -> None:
        """Across the ring's wrap and past its size: same frames, same drops, same order."""
        one_by_one, bodies = Hub(capacity=10), Hub(capacity=10)
        readers = [(one_by_one.subscribe(max_backlog=8), bodies.subscribe(max_backlog=8))]

        def same(a: Subscription, b: Subscription) -> None:
            assert [(f.id, f.data) for f in a.pending()] == [(f.id, f.data) for f in b.pending()]

        first = 0
        for size in sizes:
            for frame in self.frames(first, size):
                one_by_one.publish(frame)
            bodies.publish_many(self.seeds(first, size))
            first += size
            readers.append((one_by_one.subscribe(), bodies.subscribe()))
            if size % 2:  # some readers read between bodies, some fall behind
                for a, b in readers[::2]:
                    same(a, b)
        assert one_by_one.published == bodies.published == first
        for a, b in readers:
            same(a, b)
            assert a.dropped == b.dropped
        assert one_by_one.dropped_frames == bodies.dropped_frames

    def test_a_seed_becomes_one_frame_for_every_reader(self) -> None:
        """Made into a Frame when first read, once: readers share it, and its rendering."""
        hub = Hub(capacity=10)
        first, second = hub.subscribe(), hub.subscribe()
        rendered: list[int] = []

        def render(n: int) -> str:
            rendered.append(n)
            return f'{{"n":{n}}}'

        hub.publish_many([("event", 1, "u1", 1, render), ("event", 2, "u2", 2, render)])
        taken = first.pending()
        assert [(f.kind, f.id, f.user_id) for f in taken] == [
            ("event", 1, "u1"),
            ("event", 2, "u2"),
        ]
        assert rendered == []  # nothing rendered until someone reads the data
        again = second.pending()
        assert all(a is b for a, b in zip(taken, again, strict=True))
        assert [f.data for f in taken + again] == ['{"n":1}', '{"n":2}'] * 2
        assert rendered == [1, 2]

    async def test_publish_many_wakes_a_waiting_reader(self) -> None:
        hub = Hub(capacity=10)
        sub = hub.subscribe()
        waiting = asyncio.ensure_future(sub.next_batch(wait=5))
        await asyncio.sleep(0)
        hub.publish_many(self.frames(1, 3))
        async with asyncio.timeout(5):
            assert [f.id for f in await waiting] == [1, 2, 3]
