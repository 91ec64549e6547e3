"""Resume delivers state: a reader back with Last-Event-ID gets the table of one that stayed."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer
from websockets.asyncio.client import connect

from exporter.api.live import REPLAY_CHUNK, FrameFilter, LiveFeed
from exporter.app import create_app
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.keys import EVENT_LOG
from exporter.settings import Settings
from exporter.store import ShopperStore

from support import SseClient, http_request, iso, run_exporter, shopper

T0 = 1_800_000_000.0


def ingestor() -> Ingestor:
    settings = Settings()
    return Ingestor(settings, ShopperStore(settings), EventLog(100), Hub(), clock=lambda: T0)


class TestStatesSince:
    def test_changed_shoppers_come_in_order_of_change(self) -> None:
        """Only shoppers changed at or after the id, oldest change first, with their ids."""
        ing = ingestor()
        for user in ("a", "b", "c"):
            ing.ingest(shopper(user, timestamp=iso(T0)), "http")
        mark = ing.log.last_id
        ing.ingest(shopper("a", timestamp=iso(T0 + 1), pageViews=1), "http")
        ing.ingest([{"type": "cart_add", "userId": "b", "timestamp": iso(T0 + 2)}], "http", "event")
        # c changed last at the resume id itself: a reader at that id may have missed its frame.
        frames = list(ing.states_since(mark))
        assert [(f.user_id, f.id) for f in frames] == [("c", mark), ("a", mark), ("b", mark + 1)]
        assert orjson.loads(frames[-1].data)["itemsInCart"] == 1
        assert [f.user_id for f in ing.states_since(mark + 1)] == ["b"]

    def test_erased_shoppers_are_not_sent(self) -> None:
        """A shopper erased after the replay was taken is skipped, not resurrected."""
        ing = ingestor()
        for user in ("a", "b"):
            ing.ingest(shopper(user, timestamp=iso(T0)), "http")
        frames = ing.states_since(0)
        ing.store.erase("a")
        assert [f.user_id for f in frames] == ["b"]

    def test_a_long_replay_goes_out_in_pieces(self) -> None:
        """A resume that missed more changes than one piece gets all of them, piece by piece,
        and then live frames."""
        ing = ingestor()
        users = REPLAY_CHUNK * 2 + 7
        ing.ingest([shopper(f"u{i}", timestamp=iso(T0)) for i in range(users)], "http")
        wanted = FrameFilter.parse(["user_metric"], None)
        feed = LiveFeed(ing.hub, ing.log, wanted, 0, 10_000, ing.states_since)
        pieces = []
        while feed.replaying:
            pieces.append(len(feed.take()))
        assert pieces == [REPLAY_CHUNK, REPLAY_CHUNK, 7]
        ing.ingest(shopper("late", timestamp=iso(T0)), "http")
        assert [f.user_id for f in feed.take()] == ["late"]


@pytest.mark.integration
async def test_a_resumed_sse_client_ends_with_the_same_table(tmp_path: Path) -> None:
    """Two real SSE clients of a real exporter: one stays, one drops off for 1,000 updates (and
    some explicit events) and resumes with Last-Event-ID. Most events it missed fell off the
    event log, yet both end with the same shopper table, the service's own."""
    rng = random.Random(3)
    with run_exporter(tmp_path, "--event-log-size", "200") as proc:
        base = proc.base_url
        push = base + "/api/metrics"
        now = time.time()
        first = [shopper(f"s{i}", timestamp=iso(now)) for i in range(30)]

        def has_all(client: SseClient) -> bool:
            return len(client.table()) >= 30

        async with SseClient(base) as stayer:
            async with SseClient(base) as leaver:
                assert http_request(push, first)[2]["accepted"] == 30
                await leaver.read_until(has_all)
            resume_from = leaver.last_event_id
            assert resume_from is not None
            sent = 0
            step = 0.001
            while sent < 1000:
                body = []
                for _ in range(50):
                    now += step
                    body.append(
                        shopper(
                            f"s{rng.randrange(45)}",
                            timestamp=iso(now),
                            pageViews=sent,
                            itemsInCart=rng.randrange(4),
                            cartValue=round(rng.uniform(0, 80), 2),
                            activeFeature=rng.choice(["Browsing", "Cart", "Search"]),
                            isActive=rng.random() > 0.05,
                        )
                    )
                    sent += 1
                status, _, reply = http_request(push, body)
                assert (status, reply["rejected"]) == (200, [])
            events = [
                {"type": "delivery_scheduled", "userId": "s1", "timestamp": iso(now + 0.1)},
                {"type": "cart_add", "userId": "s2", "timestamp": iso(now + 0.1), "items": 2},
            ]
            assert http_request(base + "/api/events", events)[2]["accepted"] == 2
            http_request(push, shopper("zz_end", timestamp=iso(now + 1)))

            def saw_the_end(client: SseClient) -> bool:
                return "zz_end" in client.table()

            await stayer.read_until(saw_the_end)
            async with SseClient(base, last_event_id=resume_from) as back:
                back.frames = list(leaver.frames)  # what it had before dropping off
                before = len(back.frames)
                await back.read_until(saw_the_end)
                replayed = back.frames[before:]
        _, _, listed = http_request(base + "/api/shoppers?limit=1000")
        service = {row["userId"]: row for row in listed["shoppers"]}
        assert len(service) == 46
        assert stayer.table() == service
        assert back.table() == service
        missed_events = [f for f in replayed if f.type == "event"]
        assert int(missed_events[0].last_event_id) > int(resume_from) + 1  # older ones fell off
        state_ids = [int(f.last_event_id) for f in replayed if f.type == "user_metric"]
        assert state_ids == sorted(state_ids)


async def test_a_websocket_resume_delivers_state_too(aiohttp_server: Any) -> None:
    """`{"type": "subscribe", "lastEventId": n}` on /ws replays the missed events and the state
    of each shopper changed since, then goes live."""
    server: TestServer = await aiohttp_server(create_app(Settings()))
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(url) as ws:
        for user in ("a", "b"):  # one body each: a body's shoppers share its last id
            await ws.send(orjson.dumps(shopper(user)).decode())
            await ws.recv()  # ack
        last_id = server.app[EVENT_LOG].last_id  # b's change below logs no event: same id
        await ws.send(orjson.dumps(shopper("b", pageViews=7)).decode())
        await ws.recv()
    async with connect(url) as ws:
        await ws.send(orjson.dumps({"type": "subscribe", "lastEventId": last_id}).decode())
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not any(f.get("type") == "user_metric" for f in frames):
                frames.append(orjson.loads(await ws.recv()))
        states = [f["metric"] for f in frames if f["type"] == "user_metric"]
        assert [(s["userId"], s["pageViews"]) for s in states] == [("b", 7)]
