"""The stream index gives exactly what scanning the whole event log gives, ring wrap included."""

from __future__ import annotations

import pytest

from exporter.eventlog import EventLog
from exporter.events import ShoppingEvent
from exporter.loki.catalog import streams_in_range
from exporter.loki.evaluate import Sources, Stats, entries, evaluate_metric, run_log_query
from exporter.loki.index import StreamIndex
from exporter.loki.logql import LogQuery, MetricExpr, parse
from exporter.loki.pacing import Pace, QueryGate
from exporter.loki.streams import StreamLabeller
from exporter.settings import Settings
from exporter.store import ShopperStore

SECOND = 1_000_000_000
TYPES = ["cart_add", "search", "order_completed", "session_started", "price_watch"]
ACTIVITIES = ["Cart", "Search", "Checkout"]
MEMBERSHIPS = ["Free", "Premium"]


def filled(capacity: int, count: int, block_size: int = 16_384) -> tuple[Sources, Sources]:
    """The same log read with and without an index; `count` events through a ring of `capacity`."""
    log = EventLog(capacity, block_size=block_size)
    for i in range(count):
        props = {
            "activity": ACTIVITIES[i % 3],
            "membership": MEMBERSHIPS[i % 2],
            "location": "Austin, TX" if i % 4 == 0 else "Denver, CO",
        }
        event = ShoppingEvent(TYPES[i % 5], f"u{i}", f"User {i}", float(i), props)
        log.append(event, ts_ns=(i + 1) * SECOND)
    store = ShopperStore(Settings())
    labeller = StreamLabeller(50)
    return (
        Sources(log, store, labeller, StreamIndex(log)),
        Sources(log, store, labeller, None),
    )


def pace() -> Pace:
    """A query's pace under the service's default limits."""
    return QueryGate(timeout=30.0, max_heavy=8).pace()


QUERIES = [
    '{type="cart_add"}',
    '{type=~"cart_add|search", membership="Free"} |= "Austin"',
    '{type!="search", activity="Checkout"}',
    '{type="other"}',
    '{job="shopper-events"} != "Denver"',
    '{type=~"cart_add|search"} | json | location="Austin, TX"',
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("backward", [True, False])
@pytest.mark.parametrize(("capacity", "count"), [(1000, 300), (64, 300), (50, 1000)])
@pytest.mark.parametrize("block_size", [7, 16_384])
async def test_log_queries_agree(
    query: str, backward: bool, capacity: int, count: int, block_size: int
) -> None:
    """Indexed and scanned log queries return the same entries in the same order, whether a
    range lies in one block or in many."""
    indexed, scanned = filled(capacity, count, block_size)
    expr = parse(query)
    assert isinstance(expr, LogQuery)
    for start, end, limit in [(0, 10**12, 1000), (50 * SECOND, 250 * SECOND, 7), (0, 1, 5)]:
        results = [
            await run_log_query(
                s, expr, start, end, limit=limit, backward=backward, stats=Stats(), pace=pace()
            )
            for s in (indexed, scanned)
        ]
        assert results[0].streams == results[1].streams


async def test_index_keeps_up_with_new_events() -> None:
    """Events logged after a query are found by the next one, and evicted ones are not."""
    indexed, scanned = filled(50, 40)
    expr = parse('{type="search"}')
    assert isinstance(expr, LogQuery)
    before = await run_log_query(
        indexed, expr, 0, 10**12, limit=100, backward=True, stats=Stats(), pace=pace()
    )
    assert before.count == 8
    for i in range(40, 140):
        props = {"activity": "Search", "membership": "Free"}
        event = ShoppingEvent("search", f"n{i}", "New", float(i), props)
        indexed.log.append(event, ts_ns=(i + 1) * SECOND)
    after = await run_log_query(
        indexed, expr, 0, 10**12, limit=100, backward=True, stats=Stats(), pace=pace()
    )
    again = await run_log_query(
        scanned, expr, 0, 10**12, limit=100, backward=True, stats=Stats(), pace=pace()
    )
    assert after.streams == again.streams
    assert after.count == 50


@pytest.mark.parametrize(
    "query",
    [
        'sum by (type) (count_over_time({type=~"cart_add|search"}[30s]))',
        'sum(rate({membership="Premium"} |= "Austin" [1m]))',
        # Bare selectors of the event stream: counted from the index alone, no line read.
        'sum by (type) (count_over_time({job="shopper-events", type=~"cart_add|other"}[30s]))',
        'count_over_time({job="shopper-events"}[45s] offset 20s)',
        'rate({job="shopper-events", membership="Premium"}[1m])',
        'count_over_time({job="shopper-events", type="other"}[1m])',
        'count_over_time({job="shopper-events", type="nothing"}[1m])',
    ],
)
async def test_metric_queries_agree(query: str) -> None:
    """Metric queries over the index match the full scan at every step."""
    indexed, scanned = filled(64, 300)
    expr = parse(query)
    assert not isinstance(expr, LogQuery)
    metric: MetricExpr = expr
    steps = list(range(200 * SECOND, 301 * SECOND, 10 * SECOND))
    first = await evaluate_metric(indexed, metric, steps, Stats(), pace())
    second = await evaluate_metric(scanned, metric, steps, Stats(), pace())
    assert first == second


@pytest.mark.parametrize("selector", ["", '{type=~"cart_add|search"}', '{membership="Free"}'])
async def test_catalog_counts_agree(selector: str) -> None:
    """Label discovery from the index counts the same entries per stream as a full scan."""
    indexed, _ = filled(64, 300)
    selectors = []
    if selector:
        expr = parse(selector)
        assert isinstance(expr, LogQuery)
        selectors.append(expr.selector)
    window = (100 * SECOND, 280 * SECOND)
    counted = await streams_in_range(indexed, selectors, *window, pace())
    scanned = await streams_in_range(indexed, selectors, *window, pace(), with_bytes=True)
    assert {k: t.entries for k, t in counted.items()} == {k: t.entries for k, t in scanned.items()}
    assert counted
    assert all(t.bytes > 0 for t in scanned.values())


@pytest.mark.parametrize("backward", [False, True])
def test_held_gives_what_get_gives(backward: bool) -> None:
    """A bulk lookup returns, in the order asked, exactly the events `get` finds one by one:
    ids that fell off the ring and ids not logged yet are left out."""
    sources, _ = filled(100, 250)
    log = sources.log
    assert (log.first_id, log.last_id) == (151, 250)
    for ids in ([], [151, 160, 250], list(range(140, 260, 3)), [200]):
        asked = sorted(ids, reverse=backward)
        expected = [e for e in map(log.get, asked) if e is not None]
        assert list(log.held(asked)) == expected
        assert all(e.id in ids for e in expected)


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("size", [1, 3, 7, 40, 5000])
def test_windows_give_what_ids_gives(backward: bool, size: int) -> None:
    """Window by window, the index gives the same ids in the same order as all at once; small
    windows cut the id space into several (what lets a query stop early)."""
    sources, _ = filled(200, 700)
    index = sources.index
    assert index is not None
    index.refresh()
    keys = [key for key in index.picked(None, sources.labeller) if key[0] in ("cart_add", "search")]
    for first, last in [(0, 10**6), (520, 640), (650, 650), (640, 520)]:
        expected = index.ids(keys, first, last, backward=backward)
        windows = list(index.windows(keys, first, last, backward=backward, size=size))
        assert [i for window in windows for i in window] == expected
        assert all(windows)
        if size < len(expected) // 4:
            assert len(windows) > 1


@pytest.mark.parametrize("backward", [False, True])
def test_windows_survive_a_trim_between_two(backward: bool) -> None:
    """Events logged (and the index trimmed) while a reader is between two windows: the later
    windows still give exactly the wanted ids of the original range, none twice, none skipped,
    except those that left the log (which readers drop anyway)."""
    sources, _ = filled(5000, 7000)
    index, log = sources.index, sources.log
    assert index is not None
    index.refresh()
    keys = [key for key in index.picked(None, sources.labeller) if key[0] == "cart_add"]
    first, last = log.first_id, log.last_id
    expected = index.ids(keys, first, last, backward=backward)
    windows = index.windows(keys, first, last, backward=backward, size=50)
    got = list(next(windows))
    head = index.bucket(keys[0])[0]
    for i in range(1000):  # pushes 1000 of the held 5000 out: the index trims its buckets
        event = ShoppingEvent(TYPES[i % 5], "late", "Late", 0.0, {"activity": "Cart"})
        log.append(event, ts_ns=(800 + i) * SECOND)
    index.refresh()
    assert index.bucket(keys[0])[0] >= log.first_id > head  # its head was trimmed
    got += [i for window in windows for i in window]
    assert len(got) == len(set(got))
    assert [i for i in got if i >= log.first_id] == [i for i in expected if i >= log.first_id]


@pytest.mark.parametrize("block_size", [16, 16_384])
@pytest.mark.parametrize("backward", [False, True])
def test_read_gives_what_get_gives(block_size: int, backward: bool) -> None:
    """A bulk read of sorted ids (either way) gives each held event's log time and line, in
    the order asked, across blocks; ids that left the log or are not logged yet are left out."""
    log = EventLog(100, block_size=block_size)
    for i in range(250):
        event = ShoppingEvent(TYPES[i % 5], f"u{i}", f"User {i}", float(i), {"n": i})
        log.append(event, ts_ns=(i + 1) * SECOND)
    gone = list(range(100, 150, 7))  # every one of them left the log
    for ids in ([], [151, 160, 250], list(range(140, 260, 3)), [200], list(range(151, 251)), gone):
        asked = sorted(ids, reverse=backward)
        expected = [e for e in map(log.get, asked) if e is not None]
        stamps, lines, _ = log.read(asked)
        assert stamps == [e.ts_ns for e in expected]
        assert lines == [e.line for e in expected]


def test_a_selectors_streams_follow_streams_that_come_and_go() -> None:
    """The keys a selector picks are remembered between queries, yet a stream first seen later
    joins them and a stream whose events all left the log drops out."""
    log = EventLog(4096)
    index = StreamIndex(log)
    labeller = StreamLabeller(50)
    selector = parse('{type=~"cart_.*"}')
    assert isinstance(selector, LogQuery)

    def log_one(kind: str, activity: str) -> None:
        at = log.last_id + 1
        log.append(ShoppingEvent(kind, "u1", "Ann", 0.0, {"activity": activity}), at * SECOND)

    log_one("cart_add", "Cart")
    log_one("search", "Search")
    index.refresh()
    assert index.picked(selector.selector, labeller) == [("cart_add", "Cart", None)]
    log_one("cart_remove", "Cart")
    index.refresh()
    assert index.picked(selector.selector, labeller) == [
        ("cart_add", "Cart", None),
        ("cart_remove", "Cart", None),
    ]
    for _ in range(8192):  # the first events leave the ring; the index trims their streams
        log_one("cart_remove", "Cart")
    index.refresh()
    assert index.picked(selector.selector, labeller) == [("cart_remove", "Cart", None)]
    assert index.picked(None, labeller) == [("cart_remove", "Cart", None)]


@pytest.mark.parametrize("backward", [False, True])
def test_entries_leave_out_what_left_the_log_between_two_batches(backward: bool) -> None:
    """A query pauses between batches while new events push old ones out: what it returns are
    the asked events' own lines, in order, none twice, none read after it had left."""
    sources, _ = filled(400, 400, block_size=64)
    log = sources.log
    lines = {e.ts_ns: e.line for e in log.held(list(range(log.first_id, log.last_id + 1)))}
    asked = dict(lines)
    expr = parse('{type=~"cart_add|search"}')
    assert isinstance(expr, LogQuery)
    got: list[tuple[int, str]] = []
    added = 0
    for batch in entries(sources, expr, 0, 10**12, backward=backward, state_ns=-1, stats=Stats()):
        for ts, line, labels in batch:
            assert ts in lines  # held when read: the ring has not moved past it
            assert labels["type"] in ("cart_add", "search")
            got.append((ts, line))
        for _ in range(16):  # the ring moves on by a quarter block
            added += 1
            event = ShoppingEvent("search", "late", "Late", 0.0, {"activity": "Search"})
            logged = log.append(event, ts_ns=(400 + added) * SECOND)
            del lines[min(lines)]
            lines[logged.ts_ns] = logged.line
    assert got
    assert all(asked.get(ts) == line for ts, line in got)
    stamps = [ts for ts, _ in got]
    assert stamps == sorted(stamps, reverse=backward)
    assert len(set(stamps)) == len(stamps)
