"""The event log's bounds (age, estimated memory, count), its compact storage, and the readers
that share it: Loki queries over evicted and held ranges, resume, erasure and snapshots."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter import snapshot
from exporter.api.live import FrameFilter, LiveFeed
from exporter.app import bounded_event_log, create_app
from exporter.eventlog import EventLog, Hub
from exporter.events import ShoppingEvent
from exporter.ingest import Ingestor
from exporter.keys import EVENT_LOG
from exporter.settings import Settings, parse_bytes, parse_duration
from exporter.store import ShopperStore

SECOND = 1_000_000_000
T0 = 1_800_000_000 * SECOND

Client = TestClient[Any, Any]


class Clock:
    """A nanosecond clock the test moves by hand."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def demo_event(rng: random.Random, i: int) -> ShoppingEvent:
    """An event of the demo's mix: the five context details, sometimes one or two more."""
    kind = rng.choice(["cart_add", "product_viewed", "search", "checkout_started", "cart_remove"])
    props: dict[str, Any] = {
        "location": rng.choice(["Austin, TX", "Chicago, IL", "Seattle, WA"]),
        "activity": rng.choice(["Browsing", "Cart", "Checkout", "Search"]),
        "membership": rng.choice(["Free", "Premium", "Plus"]),
        "cartValue": round(rng.uniform(0, 300), 2),
        "itemsInCart": rng.randrange(0, 30),
    }
    if kind == "cart_add":
        props["items"] = rng.randrange(1, 4)
    if kind == "search":
        props["count"] = 1
    user = f"shopper_{rng.randrange(500)}"
    return ShoppingEvent(kind, user, f"Shopper {user}", T0 / SECOND + i, props)


def test_events_read_back_as_they_were_logged() -> None:
    """Stored by column and rebuilt on reading, every event reads back equal to what was logged,
    across block boundaries, by id, by time and in both directions."""
    rng = random.Random(1)
    log = EventLog(None, block_size=64)
    logged = [log.append(demo_event(rng, i), ts_ns=T0 + i * SECOND) for i in range(500)]
    logged.append(log.append(ShoppingEvent("custom_thing", "", "", 1.5, {"line": "x", "n": None})))
    assert list(log.after(0)) == logged
    assert [log.get(e.id) for e in logged] == logged
    assert list(log.between(T0 + 10 * SECOND, T0 + 300 * SECOND)) == logged[10:300]
    backward = list(log.between(T0 + 10 * SECOND, T0 + 300 * SECOND, backward=True))
    assert backward == logged[10:300][::-1]
    assert [e.line for e in log.after(0)] == [e.line for e in logged]


def test_events_older_than_the_retention_leave_oldest_first() -> None:
    """With a clock the test moves, events leave once older than the retention, oldest first,
    when events are appended and when readers look, and are counted by reason `age`."""
    clock = Clock()
    log = EventLog(None, retention_ns=60 * SECOND, block_size=16, clock=clock)
    rng = random.Random(2)
    for i in range(100):  # one a second
        clock.now = T0 + i * SECOND
        log.append(demo_event(rng, i))
    assert (log.first_id, log.last_id) == (40, 100)  # logged at 39 s .. 99 s
    assert all(e.ts_ns >= clock.now - 60 * SECOND for e in log.after(0))
    clock.now += 30 * SECOND  # nothing appended: a reader still sees only the last minute
    ids = [e.id for e in log.after(0)]
    assert ids == list(range(100 - 30, 101))
    assert log.evicted["age"] == 100 - 31
    clock.now += 3600 * SECOND
    assert list(log.after(0)) == []
    assert len(log) == 0
    assert log.last_id == 100  # ids carry on
    clock.now += SECOND
    assert log.append(demo_event(rng, 0)).id == 101


def test_the_byte_bound_holds_and_drops_whole_oldest_blocks() -> None:
    """Past `max_bytes` by the log's own estimate, the oldest blocks leave; the estimate stays
    within the bound and matches the sum of what the held blocks are made of."""
    rng = random.Random(3)
    bound = 200_000
    log = EventLog(None, max_bytes=bound, block_size=4096)
    for i in range(20_000):
        log.append(demo_event(rng, i), ts_ns=T0 + i)
        assert log.nbytes <= bound + 2 * bound // 8  # at most the open block's growth past it
    assert log.evicted["bytes"] > 0
    assert log.last_id == 20_000
    held = list(log.after(0))
    assert held[0].id == log.first_id
    assert [e.id for e in held] == list(range(log.first_id, 20_001))
    sealed = [b for b in log._blocks if b.sealed]
    assert all(b.nbytes == b.estimate() for b in sealed)
    assert log.nbytes == sum(b.nbytes for b in log._blocks)


def test_the_count_bound_is_a_third_bound() -> None:
    """`capacity` still bounds the number of events, whatever the other two allow."""
    rng = random.Random(4)
    log = EventLog(250, retention_ns=3600 * SECOND, max_bytes=1 << 30, block_size=100)
    for i in range(1000):
        log.append(demo_event(rng, i), ts_ns=T0 + i)
    assert len(log) == 250
    assert (log.first_id, log.last_id) == (751, 1000)
    assert log.evicted["count"] == 750


def test_erasure_names_nobody_in_held_events_and_later_ones_are_the_shoppers() -> None:
    """Erasing a shopper renames them in every held event; events they make afterwards carry
    their identity again (the table entry is not shared with the erased ones)."""
    log = EventLog(None, block_size=8)
    rng = random.Random(5)
    for i in range(30):
        event = demo_event(rng, i)
        log.append(event._replace(user_id="gone" if i % 3 == 0 else event.user_id), ts_ns=T0 + i)
    assert log.redact("gone") == 10
    assert not any(e.event.user_id == "gone" for e in log.after(0))
    assert sum(e.event.user_id == "(erased)" for e in log.after(0)) == 10
    later = log.append(demo_event(rng, 99)._replace(user_id="gone", user_name="Gone"))
    assert log.get(later.id) == later


def test_durations_and_sizes_parse_as_the_flags_document() -> None:
    """`--event-log-retention` takes 90s/30m/1h/seconds; `--event-log-max-bytes` takes bytes
    or KiB/MiB/GiB; anything else is refused with the reason."""
    assert parse_duration("1h") == 3600.0
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("90s") == 90.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration("120") == 120.0
    assert parse_bytes("256MiB") == 256 * 2**20
    assert parse_bytes("1GiB") == 2**30
    assert parse_bytes("65536") == 65536
    for bad in ("soon", "1 hour", "-5m"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="size"):
        parse_bytes("lots")


async def test_a_query_spanning_evicted_and_held_ranges_returns_what_is_held(
    aiohttp_client: Any,
) -> None:
    """A Loki query over a range half of which left the log (by age) returns exactly the held
    half; a count_over_time over it counts only held events."""
    app = create_app(Settings(event_log_retention=120.0))
    log = app[EVENT_LOG]
    clock = Clock()
    log.clock = clock
    rng = random.Random(6)
    for i in range(240):  # one a second for four minutes
        clock.now = T0 + i * SECOND
        log.append(demo_event(rng, i))
    client = await aiohttp_client(app)
    params = {
        "query": '{service_name="shopper-events"}',
        "start": str(T0),
        "end": str(T0 + 240 * SECOND),
        "limit": "5000",
        "direction": "forward",
    }
    resp = await client.get("/loki/api/v1/query_range?" + urlencode(params))
    assert resp.status == 200
    body = await resp.json()
    stamps = sorted(int(ts) for s in body["data"]["result"] for ts, _ in s["values"])
    assert stamps == [T0 + i * SECOND for i in range(239 - 120, 240)]
    metric = {
        "query": 'sum(count_over_time({service_name="shopper-events"}[10m]))',
        "time": str(T0 + 240 * SECOND),
    }
    resp = await client.get("/loki/api/v1/query?" + urlencode(metric))
    [sample] = (await resp.json())["data"]["result"]
    assert sample["value"][1] == "121"


async def test_the_log_estimate_is_exported(aiohttp_client: Any) -> None:
    """/metrics carries the log's own size estimate and its evictions by reason."""
    app = create_app(Settings())
    log = app[EVENT_LOG]
    rng = random.Random(7)
    for i in range(100):
        log.append(demo_event(rng, i))
    client = await aiohttp_client(app)
    text = await (await client.get("/metrics")).text()
    assert f"shopper_exporter_event_log_bytes {float(log.nbytes)}" in text
    assert 'shopper_exporter_event_log_evicted_events_total{reason="age"} 0.0' in text
    assert "shopper_exporter_event_log_entries 100.0" in text


def test_a_restart_from_a_snapshot_of_a_large_log_keeps_it(tmp_path: Path) -> None:
    """200,000 events saved to a snapshot and restored: the same ids, times and lines, the
    bounds applied again (a smaller byte bound keeps the newest), ids carrying on."""
    settings = Settings()
    rng = random.Random(8)
    ingestor = Ingestor(settings, ShopperStore(settings), bounded_event_log(settings), Hub())
    log = ingestor.log
    now = log.clock()
    count = 200_000
    for i in range(count):
        log.append(demo_event(rng, i), ts_ns=now - (count - i) * 10_000_000)  # 100 a second
    path = tmp_path / "state"
    snapshot.save(path, ingestor)

    def fresh(s: Settings) -> Ingestor:
        return Ingestor(s, ShopperStore(s), bounded_event_log(s), Hub())

    back = snapshot.load(path, lambda: fresh(settings)).ingestor.log
    assert (back.first_id, back.last_id, len(back)) == (1, count, count)
    for event_id in (1, 2, 4096, 4097, 123_456, count):
        assert back.get(event_id) == log.get(event_id)
    assert back.append(demo_event(rng, 0)).id == count + 1

    small = replace(settings, event_log_max_bytes=2 * 2**20)
    kept = snapshot.load(path, lambda: fresh(small)).ingestor.log
    assert kept.last_id == count
    assert 0 < len(kept) < count
    assert kept.nbytes <= 2 * 2**20
    newest, original = kept.get(count), log.get(count)
    assert newest is not None
    assert original is not None
    assert newest == original
    assert orjson.loads(newest.line) == orjson.loads(original.line)


def test_a_resuming_reader_gets_at_most_its_backlog_of_the_hour() -> None:
    """The log holds an hour; a reader resuming from far back replays the newest events its
    backlog holds, not the whole log (its shopper table still comes from the states)."""
    log = EventLog(None)
    rng = random.Random(9)
    for i in range(500):
        log.append(demo_event(rng, i), ts_ns=T0 + i)
    feed = LiveFeed(Hub(), log, FrameFilter(), last_event_id=10, max_backlog=50)
    replayed = [frame.id for frame in feed.take()]
    assert replayed == list(range(451, 501))
    near = LiveFeed(Hub(), log, FrameFilter(), last_event_id=480, max_backlog=50)
    assert [frame.id for frame in near.take()] == list(range(481, 501))
