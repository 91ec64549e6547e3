"""The event log's cached, quickly rendered lines are exactly the lines rendered from its events."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from operator import gt, le

import pytest

from exporter.eventlog import EventLog, iso_millis, render_line
from exporter.events import ShoppingEvent

ODD_PROPS: list[dict[str, object]] = [
    {},
    {"activity": "Cart", "membership": "Free", "cartValue": 150.25, "score": 150.25},
    {"activity": "Cart", "score": 99.999, "location": "Zürich, CH 🛒"},
    {"score": "150", "note": 'says "hi"\\ and \n newline \u0001 control'},
    {"score": True, "activity": ["a", "list"], "membership": {"nested": {"deep": 1}}},
    {"score": None, "type": "not the type", "time": "not the time", "message": "mine"},
    {"score": 2**62, "count": -0.0, "query": "東京 \u2028 separator"},
    {"score": {"amount": 500}, "userName": "shadow", "items": 1e300},
    {"score": 100, "summary": "alert text", "activity": ""},
    {"score": -1e-7, "deliveryWindow": "9–11", "reason": "timeout"},
]
KINDS = ["cart_add", "search", "alert", "session_ended", "custom_kind", "order_completed"]


def odd_log(count: int, *, block_size: int = 7, cache: int | None = None) -> EventLog:
    """A log of events with awkward names, details and times, in small blocks."""
    log = EventLog(None, block_size=block_size, line_cache_bytes=cache)
    for i in range(count):
        props = dict(ODD_PROPS[i % len(ODD_PROPS)])
        name = ["Ann", 'Bo "Quote" \\', "Zoë 🙂", "\t tab", "名前"][i % 5]
        at = 1_700_000_000 + i * 0.3337 + (0.0005 if i % 3 == 0 else 0.0)
        event = ShoppingEvent(KINDS[i % len(KINDS)], f"u{i % 9}", name, at, props)
        log.append(event, ts_ns=(i + 1) * 1_000)
    return log


def slow_lines(log: EventLog, ids: list[int]) -> list[tuple[int, str, tuple[object, ...]]]:
    """What the log's events say, rendered one by one from rebuilt events."""
    out = []
    for logged in log.held(ids):
        props = logged.event.props
        facets = (logged.event.type, props.get("activity"), props.get("membership"))
        out.append((logged.ts_ns, render_line(logged.event), facets))
    return out


def slow_numbers(
    log: EventLog, ids: list[int] | range, keeps: Callable[[float, float], bool], limit: float
) -> list[int]:
    """The held ids whose score is not a JSON number failing the test, from rebuilt events."""
    kept = []
    for logged in log.held(list(ids)):
        value = logged.event.props.get("score")
        if type(value) not in (int, float) or keeps(float(value), limit):  # type: ignore[arg-type]
            kept.append(logged.id)
    return kept


def fast_lines(log: EventLog, ids: list[int] | range) -> list[tuple[int, str, tuple[object, ...]]]:
    stamps, lines, facets = log.read(ids)
    return list(zip(stamps, lines, facets, strict=True))


def test_iso_millis_is_datetimes_isoformat() -> None:
    """The quick ISO time equals datetime's own for edge fractions, negatives and random times."""
    rng = random.Random(5)
    values = [0.0, -0.0, 1.0, -1.5, 1e9 + 0.9995, 1e9 + 0.9999995, 1e9 + 0.9999994999]
    values += [1_700_000_000 + n / 2000 for n in range(4000)]
    values += [-86_400 * 365.25 * 50 + rng.random() for _ in range(500)]
    values += [rng.uniform(0, 4e9) for _ in range(20_000)]
    values += [math.nextafter(float(s), math.inf) for s in range(1_700_000_000, 1_700_000_050)]
    values += [math.nextafter(float(s), -math.inf) for s in range(1_700_000_000, 1_700_000_050)]
    for at in values:
        expected = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        assert iso_millis(at) == expected, at


@pytest.mark.parametrize("backward", [False, True])
def test_read_gives_the_rendered_lines_of_odd_events(backward: bool) -> None:
    """Runs and lists of ids, read twice (rendered, then cached), give the slow path's lines."""
    log = odd_log(100)
    run = range(100, 0, -1) if backward else range(1, 101)
    picked = [i for i in run if i % 3]
    for _ in range(2):
        assert fast_lines(log, run) == slow_lines(log, list(run))
        assert fast_lines(log, picked) == slow_lines(log, picked)
        assert fast_lines(log, run[5:40]) == slow_lines(log, list(run[5:40]))


def test_the_open_block_grows_after_its_lines_were_cached() -> None:
    """Lines cached while a block was open stay right, and its later events are read too."""
    log = odd_log(10, block_size=16)
    assert fast_lines(log, range(1, 11)) == slow_lines(log, list(range(1, 11)))
    for i in range(10, 30):
        log.append(ShoppingEvent("cart_add", f"n{i}", "Late", 1e9 + i, {"score": i}))
    ids = range(1, 31)
    assert fast_lines(log, ids) == slow_lines(log, list(ids))
    assert log.numbers_pass(ids, "score", gt, 25) == slow_numbers(log, ids, gt, 25)


def test_erasure_reaches_cached_lines() -> None:
    """After a shopper is erased, lines read again name them `(erased)`, cached or not."""
    log = odd_log(60)
    before = fast_lines(log, range(1, 61))
    assert any('"userId":"u3"' in line for _, line, _ in before)
    log.redact("u3")
    after = fast_lines(log, range(1, 61))
    assert after == slow_lines(log, list(range(1, 61)))
    assert not any('"u3"' in line for _, line, _ in after)
    assert any('"userId":"(erased)"' in line for _, line, _ in after)


def test_cache_bytes_are_counted_and_bounded() -> None:
    """The cache's bytes join the log's estimate, stay within its budget, and leave with events."""
    log = odd_log(700, block_size=50, cache=20_000)
    events_only = log.nbytes
    fast_lines(log, range(700, 0, -1))
    cached = log.nbytes - events_only
    assert 0 < cached <= 20_000
    log.numbers_pass(range(1, 701), "score", gt, 0)
    assert log.nbytes - events_only <= 20_000
    # The newest blocks are the ones kept: reading them again renders nothing new.
    before = log.nbytes
    fast_lines(log, range(700, 650, -1))
    assert log.nbytes == before
    log.capacity = 10
    log.expire()
    assert log.nbytes - log._bytes <= cached


def test_byte_bound_counts_the_cache() -> None:
    """A log bounded by bytes lets events go so that events and cached lines fit together."""
    log = EventLog(None, block_size=20, max_bytes=60_000)
    for i in range(2000):
        log.append(ShoppingEvent("search", f"u{i}", "N", 1e9 + i, {"query": "x" * 40}))
        if i % 100 == 0:
            fast_lines(log, range(log.last_id, log.first_id - 1, -1))
    assert log.nbytes <= 60_000
    assert log._lines.nbytes > 0


@pytest.mark.parametrize(("keeps", "limit"), [(gt, 100.0), (le, 99.999), (gt, math.nan)])
def test_numbers_pass_drops_only_failing_numbers(keeps: object, limit: float) -> None:
    """Events are dropped only when their detail is a JSON number that fails the comparison."""
    log = odd_log(100)
    for ids in (range(1, 101), range(100, 0, -1), [5, 3, 99, 2, 1000, 0]):
        expected = slow_numbers(log, ids, keeps, limit)  # type: ignore[arg-type]
        assert log.numbers_pass(ids, "score", keeps, limit) == expected  # type: ignore[arg-type]
