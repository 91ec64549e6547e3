"""Evaluate parsed LogQL over the event log and the shopper store: streams, vectors, matrices."""

from __future__ import annotations

import heapq
import math
import statistics
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Final

from exporter.eventlog import EventLog
from exporter.loki import index_counts, metric_functions, screens
from exporter.loki.grammar import COMPARISONS, SET_OPS
from exporter.loki.index import StreamIndex
from exporter.loki.pacing import Pace
from exporter.loki.pipeline import ERROR_LABEL, Labels, Pipeline, SampleExtractor
from exporter.loki.screens import NumberScreen, Screen
from exporter.loki.streams import STREAM_LABEL_NAMES, EventKey, StreamLabeller, state_line
from exporter.loki.syntax import (
    BinaryOp,
    Grouping,
    LabelReplace,
    LogQuery,
    MetricExpr,
    NumberLiteral,
    RangeAggregation,
    StreamSelector,
    Unwrap,
    VectorAggregation,
    VectorLiteral,
)
from exporter.loki.vectors import (
    REDUCERS,
    LabelsKey,
    MatchingError,
    Scalar,
    StepValues,
    Value,
    Vector,
    arith,
    grouped_op,
    set_op,
    vector_op,
    with_scalar,
)
from exporter.store import ShopperStore

MAX_STEPS: Final = 11_000
MAX_SERIES: Final = 10_000
_SLICE: Final = 256
_REFRESH_SLICE: Final = 16 * _SLICE
_WINDOW_SLICES: Final = 8
"""Slices of a selector's ids merged at a time (see StreamIndex.windows)."""


class QueryError(ValueError):
    """A query that parsed but cannot run as asked (Loki answers these with 400)."""


def labels_key(labels: Labels) -> LabelsKey:
    return tuple(sorted(labels.items()))


@dataclass(slots=True)
class Sources:
    """What queries read: the event log, the shoppers, and the labeller of both streams."""

    log: EventLog
    store: ShopperStore
    labeller: StreamLabeller
    index: StreamIndex | None = None


@dataclass(slots=True)
class Stats:
    """Work done by one query, reported in Loki's `stats.summary` shape."""

    lines: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict[str, dict[str, float | int]]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return {
            "summary": {
                "bytesProcessedPerSecond": int(self.bytes / elapsed),
                "linesProcessedPerSecond": int(self.lines / elapsed),
                "totalBytesProcessed": self.bytes,
                "totalLinesProcessed": self.lines,
                "execTime": round(elapsed, 6),
            }
        }


Entry = tuple[int, str, Labels]
"""(timestamp ns, line, labels) of one log entry."""
Batch = list[Entry]
"""The entries of one slice of work: a query pauses between batches (see pacing)."""


def _event_batches(
    sources: Sources,
    selector: StreamSelector,
    start_ns: int,
    end_ns: int,
    *,
    backward: bool,
    keeps_line: Callable[[str], bool] | None,
    stats: Stats,
    screened: Sequence[Screen] = (),
    numbers: NumberScreen | None = None,
) -> Iterator[Batch]:
    """Events logged in [start_ns, end_ns) whose stream the selector picks, a slice at a time.

    Stream labels are shared dicts (one per label set), so they are never changed downstream.
    The line test runs first: it is a substring search, cheaper than working out the labels.
    """
    labeller, log = sources.labeller, sources.log
    # Stream labels are never empty, so {} marks a stream the selector refused.
    picked: dict[EventKey, Labels] = {}
    # The index catches up with what was logged since it was last used, a slice at a time.
    while sources.index is not None and sources.index.refresh(_REFRESH_SLICE):
        yield []
    # In slices, so the per-event work is list-wide calls in C (lines, sizes, the line test)
    # and only lines that pass reach the Python loop. The query may pause between slices, and
    # the ring may move on meanwhile: `read` looks the ids up now, leaving out those it lost.
    for some in _candidate_slices(sources, selector, start_ns, end_ns, backward=backward):
        if numbers is not None:
            # Events whose number fails the filter are not even read (nor counted as read).
            some = log.numbers_pass(some, *numbers)
        held, lines = log.lines(some)
        stats.lines += len(lines)
        stats.bytes += sum(map(len, lines))
        if screened:
            mask = list(screens.passing(lines, screened))
            held, lines = list(compress(held, mask)), list(compress(lines, mask))
        if keeps_line is not None:
            mask = list(map(keeps_line, lines))
            held, lines = list(compress(held, mask)), list(compress(lines, mask))
        # Log times and streams only for the lines that passed.
        stamps, facets = log.details(held)
        batch: Batch = []
        for ts_ns, line, key in zip(stamps, lines, facets, strict=True):
            labels = picked.get(key)
            if labels is None:
                stream = labeller.for_key(key)
                labels = picked[key] = stream if selector.matches(stream) else {}
            if labels:
                batch.append((ts_ns, line, labels))
        yield batch


SCAN_SHARE: Final = 0.6
"""Above this share of the log, a plain scan beats visiting a selector's streams by id."""


def _candidate_slices(
    sources: Sources, selector: StreamSelector, start_ns: int, end_ns: int, *, backward: bool
) -> Iterator[Sequence[int]]:
    """Ids of the events in the time window that may belong to the selector's streams, in
    slices of `_SLICE`, made as they are asked for: a query that reaches its limit among the
    newest events never looks up the rest."""
    log, index = sources.log, sources.index
    first, last = log.span_ids(start_ns, end_ns)
    if first > last:
        return
    everything = range(last, first - 1, -1) if backward else range(first, last + 1)
    windows: Iterable[Sequence[int]] = (everything,)
    if index is not None:
        keys = index.picked(selector, sources.labeller)
        picked, total = index.share(keys)
        if picked < total * SCAN_SHARE:
            windows = index.windows(
                keys, first, last, backward=backward, size=_WINDOW_SLICES * _SLICE
            )
    for ids in windows:
        for at in range(0, len(ids), _SLICE):
            yield ids[at : at + _SLICE]


def _state_batches(
    sources: Sources,
    selector: StreamSelector,
    ts_ns: int,
    *,
    oldest_first: bool,
    keeps_line: Callable[[str], bool] | None,
    stats: Stats,
) -> Iterator[Batch]:
    """Each current shopper's state line, stamped `ts_ns`, if the selector picks the stream.

    Shoppers erased or forgotten while the query paused are left out.
    """
    store, labeller = sources.store, sources.labeller
    shoppers = store.newest(limit=len(store))
    if oldest_first:
        shoppers.reverse()
    for at in range(0, len(shoppers), _SLICE):
        batch: Batch = []
        for shopper in shoppers[at : at + _SLICE]:
            labels = labeller.for_shopper(shopper)
            if not selector.matches(labels) or store.get(shopper.user_id) is not shopper:
                continue
            line = state_line(store, shopper)
            stats.lines += 1
            stats.bytes += len(line)
            if keeps_line is None or keeps_line(line):
                batch.append((ts_ns, line, labels))
        yield batch


def _might_pick_state(selector: StreamSelector) -> bool:
    """Cheap pre-check: only selectors that accept job="shopper-state" read shoppers."""
    return all(m.matches("shopper-state") for m in selector.matchers if m.name == "job")


def entries(
    sources: Sources,
    query: LogQuery,
    start_ns: int,
    end_ns: int,
    *,
    backward: bool,
    state_ns: int,
    stats: Stats,
    keeps_line: Callable[[str], bool] | None = None,
    screened: Sequence[Screen] = (),
    numbers: NumberScreen | None = None,
) -> Iterator[Batch]:
    """Both streams' entries in [start_ns, end_ns), in time order (newest first if backward),
    in batches: the caller may pause between two (`await pace.tick()`)."""
    selector = query.selector
    events = _event_batches(
        sources,
        selector,
        start_ns,
        end_ns,
        backward=backward,
        keeps_line=keeps_line,
        stats=stats,
        screened=screened,
        numbers=numbers,
    )
    with_state = _might_pick_state(selector) and start_ns <= state_ns < end_ns
    if not with_state:
        yield from events
        return
    state = _state_batches(
        sources,
        selector,
        state_ns,
        oldest_first=not backward,
        keeps_line=keeps_line,
        stats=stats,
    )
    # Shoppers are stamped at the end of the range, so they are the newest entries.
    if backward:
        yield from state
        yield from events
    else:
        yield from events
        yield from state


# ----- log queries ----------------------------------------------------------------------------


@dataclass(slots=True)
class Streams:
    """A log query's result: entries grouped by their final labels, in the asked order."""

    streams: dict[LabelsKey, tuple[Labels, list[tuple[int, str]]]] = field(default_factory=dict)
    count: int = 0
    _slots: dict[int, tuple[Labels, list[tuple[int, str]]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def add(self, ts: int, line: str, labels: Labels) -> None:
        key = labels_key(labels)
        slot = self.streams.get(key)
        if slot is None:
            slot = self.streams[key] = (labels, [])
        slot[1].append((ts, line))
        self.count += 1

    def add_all(self, batch: Batch, limit: int) -> None:
        """Take up to `limit` entries in all whose labels are shared stream dicts (as from
        `entries`): each label set's slot is found by the dict's identity, no sorting per entry.
        """
        slots = self._slots
        for ts, line, labels in batch:
            if self.count >= limit:
                return
            slot = slots.get(id(labels))
            if slot is None:
                # The slot keeps the dict alive, so its id is not reused by another.
                slot = slots[id(labels)] = self.streams.setdefault(labels_key(labels), (labels, []))
            slot[1].append((ts, line))
            self.count += 1


async def run_log_query(
    sources: Sources,
    query: LogQuery,
    start_ns: int,
    end_ns: int,
    *,
    limit: int,
    backward: bool,
    stats: Stats,
    pace: Pace,
) -> Streams:
    """The first `limit` entries in direction order that pass the pipeline."""
    pipeline = Pipeline(query.stages)
    out = Streams()
    if limit <= 0:
        return out
    # Shoppers are stamped just inside the end of the range (end is exclusive).
    state_ns = max(start_ns, end_ns - 1)
    batches = entries(
        sources,
        query,
        start_ns,
        end_ns,
        backward=backward,
        state_ns=state_ns,
        stats=stats,
        keeps_line=pipeline.scan_test(STREAM_LABEL_NAMES),
        screened=pipeline.scan_screens(STREAM_LABEL_NAMES),
        numbers=pipeline.number_screen(STREAM_LABEL_NAMES),
    )
    # Nothing but line filters: lines were filtered while scanning, only group by stream.
    plain = pipeline.only_line_tests
    for batch in batches:
        if plain:
            out.add_all(batch, limit)
        else:
            for ts, line, labels in batch:
                result = pipeline.run(ts, line, labels)
                if result is not None:
                    out.add(ts, *result)
                    if out.count >= limit:
                        break
                if time.monotonic() >= pace.turn_ends:  # a check per line: parsers cost more
                    await pace.tick()
        if out.count >= limit:
            break
        await pace.tick()
    return out


# ----- metric queries -------------------------------------------------------------------------


def _fold(values: list[float], func: str, param: float | None) -> float:
    match func:
        case "sum_over_time":
            return math.fsum(values)
        case "avg_over_time":
            return math.fsum(values) / len(values)
        case "min_over_time":
            return min(values)
        case "max_over_time":
            return max(values)
        case "first_over_time":
            return values[0]
        case "last_over_time":
            return values[-1]
        case "stddev_over_time":
            return statistics.pstdev(values)
        case "stdvar_over_time":
            return statistics.pvariance(values)
        case "quantile_over_time":
            return _quantile(param if param is not None else 0.5, values)
        case _:
            raise QueryError(f"unsupported function {func}")


def _quantile(q: float, values: list[float]) -> float:
    """Prometheus' quantile: linear interpolation between the closest ranks."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    weight = rank - low
    return ordered[low] * (1 - weight) + ordered[high] * weight


def _group_key(labels: LabelsKey, grouping: Grouping | None) -> LabelsKey:
    if grouping is None:
        return ()
    names = grouping.labels
    if grouping.without:
        return tuple((k, v) for k, v in labels if k not in names)
    return tuple((k, v) for k, v in labels if k in names)


def _format_error(labels: Labels) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    error = labels[ERROR_LABEL]
    return (
        f"pipeline error: '{error}' for series: '{{{inner}}}'. Use a label filter to skip it "
        f'on purpose (e.g. | {ERROR_LABEL}!="{error}"), or drop it with | drop {ERROR_LABEL}'
    )


class MetricEvaluator:
    """Evaluates a metric expression at start, start+step, …, end (Prometheus semantics).

    Each series, group or slice of samples is one slice of work: `pace.tick()` between them.
    """

    def __init__(self, sources: Sources, steps: list[int], stats: Stats, pace: Pace) -> None:
        if len(steps) > MAX_STEPS:
            raise QueryError(
                f"exceeded maximum resolution of {MAX_STEPS} points per timeseries; "
                "try a larger step"
            )
        self.sources = sources
        self.steps = steps
        self.stats = stats
        self.pace = pace

    async def evaluate(self, expr: MetricExpr) -> Value:
        if isinstance(expr, NumberLiteral):
            return Scalar([expr.value] * len(self.steps))
        if isinstance(expr, VectorLiteral):
            return Vector({(): [expr.value] * len(self.steps)})
        if isinstance(expr, RangeAggregation):
            return await self._range(expr)
        if isinstance(expr, VectorAggregation):
            return await self._aggregate(expr)
        if isinstance(expr, LabelReplace):
            inner = await self.evaluate(expr.expr)
            if isinstance(inner, Scalar):
                raise QueryError("label_replace needs a vector, not a scalar")
            try:
                return metric_functions.replace_labels(inner, expr)
            except ValueError as err:
                raise QueryError(str(err)) from None
        return await self._binary(expr)

    # range aggregations
    async def _samples(
        self, agg: RangeAggregation
    ) -> dict[LabelsKey, tuple[list[int], list[float]]]:
        steps = self.steps
        lookback_ns = agg.range_ns
        first_ns = steps[0] - agg.offset_ns - lookback_ns + 1
        last_ns = steps[-1] - agg.offset_ns + 1
        mode = "bytes" if agg.func.startswith("bytes") else "count"
        extractor = SampleExtractor(agg.query.stages, mode)
        series: dict[LabelsKey, tuple[list[int], list[float]]] = {}
        batches = entries(
            self.sources,
            agg.query,
            first_ns,
            last_ns,
            backward=False,
            state_ns=steps[-1] - agg.offset_ns,
            stats=self.stats,
            keeps_line=extractor.before.scan_test(STREAM_LABEL_NAMES),
            screened=extractor.before.scan_screens(STREAM_LABEL_NAMES),
            numbers=extractor.before.number_screen(STREAM_LABEL_NAMES),
        )
        keys: dict[int, tuple[Labels, LabelsKey]] = {}
        plain = extractor.passes_all
        for batch in batches:
            for ts, line, labels in batch:
                if plain:
                    value = float(len(line.encode())) if mode == "bytes" else 1.0
                    final = labels
                else:
                    if time.monotonic() >= self.pace.turn_ends:  # per line: parsers cost more
                        await self.pace.tick()
                    sample = extractor.extract(ts, line, labels)
                    if sample is None:
                        continue
                    value, final = sample
                if ERROR_LABEL in final:
                    raise QueryError(_format_error(final))
                # Stream labels are shared dicts: remember their key by identity (and keep
                # the dict alive with it, so the id is not reused).
                known = keys.get(id(final)) if final is labels else None
                if known is None:
                    key = labels_key(final)
                    if final is labels:
                        keys[id(final)] = (final, key)
                else:
                    key = known[1]
                if agg.grouping is not None:
                    key = _group_key(key, agg.grouping)
                slot = series.get(key)
                if slot is None:
                    if len(series) >= MAX_SERIES:
                        raise QueryError(f"maximum number of series ({MAX_SERIES}) reached")
                    slot = series[key] = ([], [])
                slot[0].append(ts)
                slot[1].append(value)
            await self.pace.tick()
        return series

    async def _indexed(self, agg: RangeAggregation) -> Vector | None:
        """The index's answer for a count or rate over a bare selector; None when it has none."""
        sources, index = self.sources, self.sources.index
        if index is None or not index_counts.answers(agg, _might_pick_state(agg.query.selector)):
            return None
        while index.refresh(_REFRESH_SLICE):
            await self.pace.tick()
        labeller, selector, log = sources.labeller, agg.query.selector, sources.log

        def window(start_ns: int, end_ns: int) -> tuple[int, int] | None:
            first, last = log.span_ids(start_ns, end_ns)
            return None if first > last else (first, last)

        keys = index.picked(selector, labeller)
        series, counted = await index_counts.counts_by_step(
            agg, self.steps, keys, labeller, window, index.count, self.pace.tick
        )
        self.stats.lines += counted
        return Vector(series)

    async def _range(self, agg: RangeAggregation) -> Vector:
        indexed = await self._indexed(agg)
        if indexed is not None:
            return indexed
        seconds = agg.range_ns / 1e9
        out: dict[LabelsKey, StepValues] = {}
        samples = await self._samples(agg)
        if agg.func == "absent_over_time":
            stamps_by_series = [stamps for stamps, _values in samples.values()]
            gaps = metric_functions.absent(
                stamps_by_series, self.steps, agg.range_ns, agg.offset_ns
            )
            if all(v is None for v in gaps):
                return Vector({})
            return Vector({metric_functions.absent_labels(agg.query.selector): gaps})
        func = agg.func
        if func == "rate" and any(isinstance(s, Unwrap) for s in agg.query.stages):
            func = "rate_unwrapped"
        for key, (stamps, values) in samples.items():
            per_step: StepValues = []
            prefix = [0.0]
            if func in ("count_over_time", "rate", "bytes_over_time", "bytes_rate"):
                for v in values:
                    prefix.append(prefix[-1] + v)
            for t in self.steps:
                end = t - agg.offset_ns
                lo = bisect_right(stamps, end - agg.range_ns)
                hi = bisect_right(stamps, end)
                if hi <= lo:
                    per_step.append(None)
                    continue
                match func:
                    case "rate_unwrapped":
                        per_step.append(metric_functions.rate_of_sum(values, lo, hi, agg.range_ns))
                    case "rate_counter":
                        per_step.append(
                            metric_functions.counter_rate(
                                stamps, values, lo, hi, end - agg.range_ns, end
                            )
                        )
                    case "count_over_time":
                        per_step.append(float(hi - lo))
                    case "rate":
                        per_step.append((hi - lo) / seconds)
                    case "bytes_over_time":
                        per_step.append(prefix[hi] - prefix[lo])
                    case "bytes_rate":
                        per_step.append((prefix[hi] - prefix[lo]) / seconds)
                    case _:
                        per_step.append(_fold(values[lo:hi], agg.func, agg.param))
            out[key] = per_step
            await self.pace.tick()
        return Vector(out)

    # vector aggregations
    async def _aggregate(self, agg: VectorAggregation) -> Vector:
        inner = await self.evaluate(agg.expr)
        if isinstance(inner, Scalar):
            raise QueryError(f"{agg.op} needs a vector, not a scalar")
        if agg.op in ("topk", "bottomk", "approx_topk"):
            assert isinstance(agg.param, NumberLiteral)
            return await self._top(inner, agg)
        if agg.op in ("sort", "sort_desc"):
            return Vector(inner.series, "asc" if agg.op == "sort" else "desc")
        groups: dict[LabelsKey, list[StepValues]] = {}
        for key, values in inner.series.items():
            groups.setdefault(_group_key(key, agg.grouping), []).append(values)
        out: dict[LabelsKey, StepValues] = {}
        reduce = REDUCERS[agg.op]
        for group, members in groups.items():
            per_step: StepValues = []
            for i in range(len(self.steps)):
                present = [v for m in members if (v := m[i]) is not None]
                per_step.append(reduce(present) if present else None)
                if i % _SLICE == 0:
                    await self.pace.tick()
            out[group] = per_step
        return Vector(out)

    async def _top(self, inner: Vector, agg: VectorAggregation) -> Vector:
        assert isinstance(agg.param, NumberLiteral)
        k = int(agg.param.value)
        if k < 1:
            return Vector({})
        pick = heapq.nsmallest if agg.op == "bottomk" else heapq.nlargest
        out: dict[LabelsKey, StepValues] = {key: [None] * len(self.steps) for key in inner.series}
        groups: dict[LabelsKey, list[LabelsKey]] = {}
        for key in inner.series:
            groups.setdefault(_group_key(key, agg.grouping), []).append(key)
        for members in groups.values():
            for i in range(len(self.steps)):
                present = [(v, m) for m in members if (v := inner.series[m][i]) is not None]
                for v, m in pick(k, present, key=lambda pair: pair[0]):
                    out[m][i] = v
                if i % _SLICE == 0:
                    await self.pace.tick()
        return Vector(
            {key: values for key, values in out.items() if any(v is not None for v in values)}
        )

    # binary operations
    async def _binary(self, expr: BinaryOp) -> Value:
        left = await self.evaluate(expr.left)
        right = await self.evaluate(expr.right)
        op = expr.op
        if op in SET_OPS:
            if not (isinstance(left, Vector) and isinstance(right, Vector)):
                raise QueryError(f"set operator {op!r} needs vectors on both sides")
            return await set_op(op, left, right, expr.matching, self.pace)
        apply = arith(op, expr.bool_mode)
        if isinstance(left, Scalar) and isinstance(right, Scalar):
            if op in COMPARISONS and not expr.bool_mode:
                raise QueryError("comparisons between scalars must use the bool modifier")
            values = [apply(a, b) for a, b in zip(left.values, right.values, strict=True)]
            return Scalar([0.0 if v is None else v for v in values])
        keeps = op in COMPARISONS and not expr.bool_mode
        if isinstance(left, Vector) and isinstance(right, Scalar):
            return await with_scalar(
                left, right.values, apply, self.pace, scalar_left=False, keeps_sample=keeps
            )
        if isinstance(left, Scalar) and isinstance(right, Vector):
            return await with_scalar(
                right, left.values, apply, self.pace, scalar_left=True, keeps_sample=keeps
            )
        assert isinstance(left, Vector)
        assert isinstance(right, Vector)
        if expr.matching is not None and expr.matching.card != "one-to-one":
            try:
                return await grouped_op(left, right, apply, expr.matching, self.pace)
            except MatchingError as err:
                raise QueryError(str(err)) from None
        return await vector_op(left, right, apply, expr.matching, self.pace)


async def evaluate_metric(
    sources: Sources, expr: MetricExpr, steps: list[int], stats: Stats, pace: Pace
) -> Value:
    """Evaluate a metric expression at each step (ns)."""
    return await MetricEvaluator(sources, steps, stats, pace).evaluate(expr)


def range_steps(start_ns: int, end_ns: int, step_ns: int) -> list[int]:
    """start, start+step, …, up to end inclusive; refuses more than MAX_STEPS points."""
    if step_ns <= 0:
        raise QueryError(
            "zero or negative query resolution step widths are not accepted; try a positive integer"
        )
    count = (end_ns - start_ns) // step_ns + 1
    if count > MAX_STEPS:
        raise QueryError(
            f"exceeded maximum resolution of {MAX_STEPS} points per timeseries; "
            "try decreasing the query resolution (?step=XX)"
        )
    return list(range(start_ns, end_ns + 1, step_ns))
