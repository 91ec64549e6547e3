"""Log queries over cached lines, substring screens and packed numbers return exactly what the
plain pipeline returns over every rendered line."""

from __future__ import annotations

import pytest

from exporter.eventlog import EventLog
from exporter.events import ShoppingEvent
from exporter.loki.evaluate import (
    QueryError,
    Sources,
    Stats,
    Streams,
    evaluate_metric,
    run_log_query,
)
from exporter.loki.index import StreamIndex
from exporter.loki.logql import LogQuery, parse
from exporter.loki.pacing import Pace, QueryGate
from exporter.loki.pipeline import Pipeline
from exporter.loki.sample import newest_lines
from exporter.loki.streams import StreamLabeller
from exporter.loki.volumes import stream_volumes
from exporter.settings import Settings
from exporter.store import ShopperStore

SECOND = 1_000_000_000
DETAILS: list[dict[str, object]] = [
    {"activity": "Cart", "membership": "Free", "cartValue": 150.25, "score": 150.25},
    {"activity": "Cart", "score": 99.999, "location": "Zürich, CH 🛒", "cartValue": 3},
    {"score": "150", "note": 'says "hi"\\ and \n newline \u0001 control', "cartValue": 0},
    {"score": True, "tags": ["a", "list"], "extra": {"nested": {"deep": 1}}},
    {"score": None, "type": "not the type", "time": "not the time", "message": "mine"},
    {"score": 2**62, "count": -0.0, "query": "東京 Austin \u2028 separator"},
    {"score": {"amount": 500}, "userName": "shadow", "items": 1e300},
    {"score": 100, "summary": "alert text", "activity": "", "membership": "Premium"},
    {"score": -1e-7, "deliveryWindow": "9–11", "reason": "timeout", "location": "Austin, TX"},
    {},
]
KINDS = ["cart_add", "search", "alert", "session_ended", "custom_kind", "order_completed"]
NAMES = ["Ann", 'Bo "Quote" \\', "Zoë 🙂", "\t tab", "名前"]


def sources(count: int, *, block_size: int, cache: int | None) -> Sources:
    """A log of awkward events (names to escape, odd details, shared keys) with its index."""
    log = EventLog(None, block_size=block_size, line_cache_bytes=cache)
    for i in range(count):
        details = dict(DETAILS[i % len(DETAILS)])
        at = 1_700_000_000 + i * 0.3337
        event = ShoppingEvent(KINDS[i % len(KINDS)], f"u{i % 9}", NAMES[i % 5], at, details)
        log.append(event, ts_ns=(i + 1) * SECOND)
    log.redact("u4")
    store = ShopperStore(Settings())
    return Sources(log, store, StreamLabeller(50), StreamIndex(log))


def pace() -> Pace:
    """A query's pace under the service's default limits."""
    return QueryGate(timeout=30.0, max_heavy=8).pace()


def plainly(src: Sources, query: LogQuery, limit: int, backward: bool) -> Streams:
    """The query run line by line: every event rebuilt, rendered, and put through the stages."""
    pipeline = Pipeline(query.stages)
    out = Streams()
    ids = list(range(src.log.first_id, src.log.last_id + 1))
    if backward:
        ids.reverse()
    for logged in src.log.held(ids):
        labels = src.labeller.for_event(logged)
        if not query.selector.matches(labels):
            continue
        result = pipeline.run(logged.ts_ns, logged.line, labels)
        if result is not None:
            out.add(logged.ts_ns, *result)
            if out.count >= limit:
                break
    return out


LOG_QUERIES = [
    '{job="shopper-events"} |= "Austin"',
    '{job="shopper-events"} |= "Zoë" or "名前"',
    '{job="shopper-events"} |= "\\\\\\""',
    '{job="shopper-events"} |= "(erased)" |= "Ann"',
    '{job="shopper-events"} |= "\\\\u0001"',
    '{type=~"cart_add|other"} |= "u3" | json | score > 100',
    '{job="shopper-events"} | json | score > 100',
    '{job="shopper-events"} | json | score <= 99.999',
    '{job="shopper-events"} | json | score != 100',
    '{job="shopper-events"} | json | score == 4611686018427387904',
    '{job="shopper-events"} | json | cartValue >= 150',
    '{job="shopper-events"} | json | type > 1',
    '{job="shopper-events"} | json | items > 10',
    '{job="shopper-events"} | json | score > 100 or score < 0',
    '{job="shopper-events"} | json | membership > 1',
]


@pytest.mark.parametrize("query", LOG_QUERIES)
@pytest.mark.parametrize("backward", [True, False])
@pytest.mark.parametrize(("block_size", "cache"), [(16, None), (7, 3_000), (1000, 0)])
async def test_log_queries_match_the_plain_pipeline(
    query: str, backward: bool, block_size: int, cache: int | None
) -> None:
    """Entries, order and labels equal the plain pipeline's, cached or not, run twice."""
    src = sources(240, block_size=block_size, cache=cache)
    expr = parse(query)
    assert isinstance(expr, LogQuery)
    for limit in (1000, 7):
        expected = plainly(src, expr, limit, backward)
        for _ in range(2):
            got = await run_log_query(
                src, expr, 0, 10**12, limit=limit, backward=backward, stats=Stats(), pace=pace()
            )
            assert got.streams == expected.streams


METRICS = [
    ('sum by (type) (count_over_time({job="shopper-events"} | json | score > 100 [1m]))'),
    ('sum(count_over_time({job="shopper-events"} |= "Austin" | json | score < 200 [30s]))'),
    ('sum by (type) (count_over_time({type=~"cart_add|search"} | json | cartValue > 100 [1m]))'),
    ('sum by (type) (bytes_over_time({job="shopper-events"} |= "Zoë" [1m]))'),
]


@pytest.mark.parametrize("query", METRICS)
async def test_metric_queries_match_the_unfused_pipeline(query: str) -> None:
    """Counting with the fast paths equals counting with `| json | __error__=""` first, which
    keeps every (valid JSON) line and turns every fast path off."""
    src = sources(240, block_size=16, cache=None)
    steps = list(range(0, 250 * SECOND, 15 * SECOND))
    plain = query.replace("| json |", '| json | __error__="" |')
    if plain == query:
        plain = query.replace('|= "Zoë"', '|~ "Zoë"')
    fast = await outcome(src, query, steps)
    slow = await outcome(src, plain, steps)
    assert fast == slow
    assert fast


async def outcome(src: Sources, query: str, steps: list[int]) -> object:
    """The query's series, or the message of the error it fails with (a pipeline error)."""
    try:
        value = await evaluate_metric(src, parse(query), steps, Stats(), pace())  # type: ignore[arg-type]
    except QueryError as err:
        return str(err)
    return value.series  # type: ignore[union-attr]


@pytest.mark.parametrize("stages", ["| json", '| logfmt | drop level | label_format a="{{.b}}"'])
async def test_sampled_lines_skip_stages_that_keep_every_line(stages: str) -> None:
    """Drilldown's newest lines for `| json` (stages that keep each line as it is) equal those
    of the same query made to run its stages (`| __error__=""` keeps every line here too)."""
    src = sources(240, block_size=16, cache=None)
    for limit in (1000, 50):
        quick = parse(f'{{job="shopper-events"}} {stages}')
        slow = parse(f'{{job="shopper-events"}} {stages} | __error__=~".*"')
        assert isinstance(quick, LogQuery)
        assert isinstance(slow, LogQuery)
        assert Pipeline(quick.stages).keeps_lines
        assert not Pipeline(slow.stages).keeps_lines
        got = await newest_lines(src, quick, 0, 10**12, limit, pace())
        assert got == await newest_lines(src, slow, 0, 10**12, limit, pace())
        assert len(got) == min(limit, 240)


async def test_volumes_of_many_spans_count_every_event_once() -> None:
    """Per span, each stream's entries equal a count of the held events by their labels."""
    src = sources(500, block_size=16, cache=None)
    src.log.capacity = 450
    src.log.expire()
    spans = [(start, start + 37 * SECOND) for start in range(0, 520 * SECOND, 37 * SECOND)]
    spans.append((0, 1))
    volumes = await stream_volumes(src, parse('{job="shopper-events"}').selector, spans, pace())  # type: ignore[union-attr]
    for (start, end), found in zip(spans, volumes, strict=True):
        expected: dict[object, int] = {}
        for logged in src.log.held(list(range(1, 501))):
            if start <= logged.ts_ns < end:
                key = tuple(sorted(src.labeller.for_event(logged).items()))
                expected[key] = expected.get(key, 0) + 1
        assert {tuple(sorted(v.labels.items())): v.entries for v in found} == expected
