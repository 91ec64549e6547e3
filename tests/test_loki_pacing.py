"""Queries pause between slices, stop at their deadline, and only so many heavy ones run at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from exporter.eventlog import EventLog
from exporter.events import ShoppingEvent
from exporter.loki.evaluate import Sources, Stats, run_log_query
from exporter.loki.index import StreamIndex
from exporter.loki.logql import LogQuery, parse
from exporter.loki.pacing import (
    LOOP_SHARE,
    QueryCancelledError,
    QueryGate,
    QueryTimeoutError,
    TooManyQueriesError,
)
from exporter.loki.streams import StreamLabeller
from exporter.settings import Settings
from exporter.store import ShopperStore

from support import async_wait_until

SECOND = 1_000_000_000


async def until(check: Callable[[], bool]) -> None:
    """Wait (on the loop) until `check()` holds."""

    async def probe() -> bool:
        return check()

    await async_wait_until(probe, timeout=5.0, interval=0.001)


async def work(gate: QueryGate, seconds: float, **pace: object) -> int:
    """Busy work in 1 ms slices with a tick between; returns how many slices ran."""
    slices = 0
    with gate.pace(**pace) as p:  # type: ignore[arg-type]
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            spin = time.monotonic() + 0.001
            while time.monotonic() < spin:
                pass
            slices += 1
            await p.tick()
    return slices


async def test_a_short_query_takes_no_slot() -> None:
    """Work that fits in one turn never pauses, so it never counts as heavy."""
    gate = QueryGate(timeout=5.0, max_heavy=1)
    with gate.pace() as pace:
        await pace.tick()
        assert gate.heavy == 0
    assert gate.heavy == 0


async def test_a_long_query_pauses_and_lets_others_run() -> None:
    """A query longer than its turn yields: a concurrent coroutine makes progress meanwhile."""
    gate = QueryGate(timeout=5.0, max_heavy=2)
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while True:
            beats += 1
            await asyncio.sleep(0)

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    started = beats
    await work(gate, 0.2)
    beating.cancel()
    # 0.2 s of work in turns of LOOP_SHARE leaves the loop at least every turn.
    assert beats - started >= 0.2 / LOOP_SHARE / 2
    assert gate.heavy == 0
    assert gate.working == 0


async def test_heavy_queries_past_the_cap_are_refused_with_a_retry_hint() -> None:
    """With the one slot held by a running heavy query, another heavy one gets TooManyQueries."""
    gate = QueryGate(timeout=5.0, max_heavy=1)
    first = asyncio.create_task(work(gate, 0.3))
    await until(lambda: gate.heavy == 1)
    with pytest.raises(TooManyQueriesError) as refused:
        await work(gate, 0.1)
    assert str(refused.value) == "too many outstanding requests"
    assert 1 <= refused.value.retry_after <= 5
    assert await first > 0
    assert gate.heavy == 0


async def test_uncapped_work_needs_no_slot() -> None:
    """Tail filtering (uncapped) runs even when every heavy-query slot is taken."""
    gate = QueryGate(timeout=5.0, max_heavy=1)
    first = asyncio.create_task(work(gate, 0.3))
    await until(lambda: gate.heavy == 1)
    assert await work(gate, 0.05, capped=False) > 0
    await first


async def test_a_query_stops_at_its_deadline() -> None:
    """Work that goes on past the timeout stops with Loki's timeout words."""
    gate = QueryGate(timeout=0.1, max_heavy=1)
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError) as stopped:
        await work(gate, 5.0)
    assert time.monotonic() - started < 1.0
    assert str(stopped.value).startswith("request timed out, decrease the duration")
    assert gate.heavy == 0


async def test_a_query_stops_when_its_client_is_gone() -> None:
    """A query whose client went away stops at its next pause."""
    gate = QueryGate(timeout=5.0, max_heavy=1)
    with pytest.raises(QueryCancelledError):
        await work(gate, 5.0, gone=lambda: True)
    assert gate.heavy == 0


async def test_turns_are_shared_among_working_queries() -> None:
    """The loop time between two pauses is split among the queries working at once."""
    gate = QueryGate(timeout=5.0, max_heavy=4)
    assert gate.turn == LOOP_SHARE
    tasks = [asyncio.create_task(work(gate, 0.1)) for _ in range(4)]
    await until(lambda: gate.working == 4)
    assert gate.turn == pytest.approx(LOOP_SHARE / 4)
    await asyncio.gather(*tasks)
    assert gate.turn == LOOP_SHARE


@pytest.mark.parametrize(
    ("query", "block_size"),
    [
        # Every stream: one run of ids, read in order.
        ('{job="shopper-events"} | json | n > 0', 16_384),
        # One stream of two: its ids a block at a time from the index, put in order at the end.
        ('{type="cart_add"} |= "cart" | json | n > 0', 256),
    ],
)
async def test_events_leaving_the_ring_mid_query_are_skipped_not_misread(
    query: str, block_size: int
) -> None:
    """While a query pauses, new events push old ones out of the ring: every entry the query
    returns is a real event with its own line, none twice, none that had left, in order."""
    log = EventLog(5_000, block_size=block_size)
    lines: dict[int, str] = {}

    def log_event(i: int) -> None:
        props = {"activity": "Cart", "membership": "Free", "n": i}
        event = ShoppingEvent("cart_add" if i % 2 else "search", f"u{i}", "U", float(i), props)
        logged = log.append(event, ts_ns=i * SECOND)
        lines[logged.ts_ns] = logged.line

    for i in range(1, 5_001):
        log_event(i)
    sources = Sources(log, ShopperStore(Settings()), StreamLabeller(50), StreamIndex(log))
    expr = parse('{job="shopper-events"} | json | n > 0')
    assert isinstance(expr, LogQuery)
    gate = QueryGate(timeout=30.0, max_heavy=1)
    with gate.pace() as pace:
        still = await run_log_query(
            sources, expr, 0, 5_001 * SECOND, limit=5_000, backward=False, stats=Stats(), pace=pace
        )
    appended = 0

    async def push_on() -> None:
        nonlocal appended
        while True:
            for _ in range(500):
                log_event(5_001 + appended)
                appended += 1
            await asyncio.sleep(0)

    pusher = asyncio.create_task(push_on())
    with gate.pace() as pace:
        found = await run_log_query(
            sources, expr, 0, 5_001 * SECOND, limit=5_000, backward=False, stats=Stats(), pace=pace
        )
    pusher.cancel()
    assert appended > 0, "the query never paused"
    entries = [entry for _, values in found.streams.values() for entry in values]
    assert entries, "the query found nothing"
    assert len({ts for ts, _ in entries}) == len(entries)
    assert all(lines[ts] == line for ts, line in entries)
    # A slot the ring refilled would hold a newer event, from outside the asked range.
    assert all(ts < 5_001 * SECOND for ts, _ in entries)
    assert [ts for ts, _ in entries] == sorted(ts for ts, _ in entries)
    # Some were pushed out before the query reached them; the rest are what it found at rest.
    assert 0 < len(entries) < still.count
    at_rest = {ts for _, values in still.streams.values() for ts, _ in values}
    assert {ts for ts, _ in entries} <= at_rest
