"""Evaluate parsed LogQL over the event log and the shopper store: streams, vectors, matrices."""

from __future__ import annotations

import heapq
import math
import statistics
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import compress, islice
from typing import Final

from exporter.eventlog import EventLog, LoggedEvent
from exporter.loki.index import StreamIndex
from exporter.loki.logql import (
    COMPARISONS,
    SET_OPS,
    BinaryOp,
    Grouping,
    LogQuery,
    MetricExpr,
    NumberLiteral,
    RangeAggregation,
    StreamSelector,
    VectorAggregation,
    VectorLiteral,
    VectorMatching,
)
from exporter.loki.pipeline import ERROR_LABEL, Labels, Pipeline, SampleExtractor
from exporter.loki.streams import EventKey, StreamLabeller, state_line, state_lines
from exporter.store import ShopperStore

MAX_STEPS: Final = 11_000
MAX_SERIES: Final = 10_000
QUERY_TIMEOUT: Final = 10.0
"""Seconds a query may run: evaluation shares the event loop with ingestion."""
_SLICE: Final = 256

LabelsKey = tuple[tuple[str, str], ...]
StepValues = list[float | None]
"""One series: a value per evaluation step, None where the series has no sample."""


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


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise QueryError(f"query timed out after {QUERY_TIMEOUT:g}s; narrow the query")


Entry = tuple[int, str, Labels]
"""(timestamp ns, line, labels) of one log entry."""


def _event_entries(
    sources: Sources,
    selector: StreamSelector,
    start_ns: int,
    end_ns: int,
    *,
    backward: bool,
    keeps_line: Callable[[str], bool] | None,
    stats: Stats,
    deadline: _Deadline,
) -> Iterator[Entry]:
    """Events logged in [start_ns, end_ns) whose stream the selector picks.

    Stream labels are shared dicts (one per label set), so they are never changed downstream.
    The line test runs first: it is a substring search, cheaper than working out the labels.
    """
    labeller = sources.labeller
    # Stream labels are never empty, so {} marks a stream the selector refused.
    picked: dict[EventKey, Labels] = {}
    candidates = _candidates(sources, selector, start_ns, end_ns, backward=backward)
    # In slices, so the per-event work is list-wide calls in C (lines, sizes, the line test)
    # and the deadline is checked once a slice; only lines that pass reach the Python loop.
    while chunk := list(islice(candidates, _SLICE)):
        deadline.check()
        lines = [logged.line for logged in chunk]
        stats.lines += len(lines)
        stats.bytes += sum(map(len, lines))
        kept: Iterator[tuple[LoggedEvent, str]] = zip(chunk, lines, strict=True)
        if keeps_line is not None:
            kept = compress(kept, map(keeps_line, lines))
        for logged, line in kept:
            event = logged.event
            props = event.props
            key = (event.type, props.get("activity"), props.get("membership"))
            labels = picked.get(key)
            if labels is None:
                stream = labeller.for_key(key)
                labels = picked[key] = stream if selector.matches(stream) else {}
            if labels:
                yield logged.ts_ns, line, labels


SCAN_SHARE: Final = 0.6
"""Above this share of the log, a plain scan beats visiting a selector's streams by id."""


def _candidates(
    sources: Sources, selector: StreamSelector, start_ns: int, end_ns: int, *, backward: bool
) -> Iterator[LoggedEvent]:
    """Events in the time window that may belong to the selector's streams, in time order."""
    log, index = sources.log, sources.index
    if index is None:
        return log.between(start_ns, end_ns, backward=backward)
    index.refresh()
    labeller = sources.labeller
    keys, picked, total = index.share(lambda key: selector.matches(labeller.for_key(key)))
    if picked >= total * SCAN_SHARE:
        return log.between(start_ns, end_ns, backward=backward)
    first = next(log.between(start_ns, end_ns), None)
    last = next(log.between(start_ns, end_ns, backward=True), None)
    if first is None or last is None:
        return iter(())
    return index.events(keys, first.id, last.id, backward=backward)


def _state_entries(
    sources: Sources,
    selector: StreamSelector,
    ts_ns: int,
    *,
    oldest_first: bool,
    keeps_line: Callable[[str], bool] | None,
    stats: Stats,
) -> Iterator[Entry]:
    """Each current shopper's state line, stamped `ts_ns`, if the selector picks the stream."""
    store = sources.store
    for labels, shopper in state_lines(store, sources.labeller, oldest_first=oldest_first):
        if not selector.matches(labels):
            continue
        line = state_line(store, shopper)
        stats.lines += 1
        stats.bytes += len(line)
        if keeps_line is None or keeps_line(line):
            yield ts_ns, line, labels


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
    deadline: _Deadline,
    keeps_line: Callable[[str], bool] | None = None,
) -> Iterator[Entry]:
    """Both streams' entries in [start_ns, end_ns), in time order (newest first if backward)."""
    selector = query.selector
    events = _event_entries(
        sources,
        selector,
        start_ns,
        end_ns,
        backward=backward,
        keeps_line=keeps_line,
        stats=stats,
        deadline=deadline,
    )
    with_state = _might_pick_state(selector) and start_ns <= state_ns < end_ns
    if not with_state:
        yield from events
        return
    state = _state_entries(
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

    def add(self, ts: int, line: str, labels: Labels) -> None:
        key = labels_key(labels)
        slot = self.streams.get(key)
        if slot is None:
            slot = self.streams[key] = (labels, [])
        slot[1].append((ts, line))
        self.count += 1

    def add_all(self, source: Iterator[Entry], limit: int) -> None:
        """Take up to `limit` entries whose labels are shared stream dicts (as from `entries`).

        Each label set's slot is found by the dict's identity: no sorting per entry.
        """
        slots: dict[int, list[tuple[int, str]]] = {}
        for ts, line, labels in source:
            values = slots.get(id(labels))
            if values is None:
                key = labels_key(labels)
                slot = self.streams.setdefault(key, (labels, []))
                values = slots[id(labels)] = slot[1]
            values.append((ts, line))
            self.count += 1
            if self.count >= limit:
                return


def run_log_query(
    sources: Sources,
    query: LogQuery,
    start_ns: int,
    end_ns: int,
    *,
    limit: int,
    backward: bool,
    stats: Stats,
) -> Streams:
    """The first `limit` entries in direction order that pass the pipeline."""
    deadline = _Deadline(QUERY_TIMEOUT)
    pipeline = Pipeline(query.stages)
    out = Streams()
    if limit <= 0:
        return out
    # Shoppers are stamped just inside the end of the range (end is exclusive).
    state_ns = max(start_ns, end_ns - 1)
    source = entries(
        sources,
        query,
        start_ns,
        end_ns,
        backward=backward,
        state_ns=state_ns,
        stats=stats,
        deadline=deadline,
        keeps_line=pipeline.line_test,
    )
    if pipeline.only_line_tests:
        # Nothing changes lines or labels: filter lines while scanning, group by stream.
        out.add_all(source, limit)
        return out
    for ts, line, labels in source:
        result = pipeline.run(ts, line, labels)
        if result is None:
            continue
        out.add(ts, *result)
        if out.count >= limit:
            break
    return out


# ----- metric queries -------------------------------------------------------------------------


@dataclass(slots=True)
class Scalar:
    values: list[float]


@dataclass(slots=True)
class Vector:
    """Series by label set, each with a value (or None) per step."""

    series: dict[LabelsKey, StepValues]


Value = Scalar | Vector


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
    """Evaluates a metric expression at start, start+step, …, end (Prometheus semantics)."""

    def __init__(self, sources: Sources, steps: list[int], stats: Stats) -> None:
        if len(steps) > MAX_STEPS:
            raise QueryError(
                f"exceeded maximum resolution of {MAX_STEPS} points per timeseries; "
                "try a larger step"
            )
        self.sources = sources
        self.steps = steps
        self.stats = stats
        self.deadline = _Deadline(QUERY_TIMEOUT)

    def evaluate(self, expr: MetricExpr) -> Value:
        if isinstance(expr, NumberLiteral):
            return Scalar([expr.value] * len(self.steps))
        if isinstance(expr, VectorLiteral):
            return Vector({(): [expr.value] * len(self.steps)})
        if isinstance(expr, RangeAggregation):
            return self._range(expr)
        if isinstance(expr, VectorAggregation):
            return self._aggregate(expr)
        return self._binary(expr)

    # range aggregations
    def _samples(self, agg: RangeAggregation) -> dict[LabelsKey, tuple[list[int], list[float]]]:
        steps = self.steps
        lookback_ns = agg.range_ns
        first_ns = steps[0] - agg.offset_ns - lookback_ns + 1
        last_ns = steps[-1] - agg.offset_ns + 1
        mode = "bytes" if agg.func.startswith("bytes") else "count"
        extractor = SampleExtractor(agg.query.stages, mode)
        series: dict[LabelsKey, tuple[list[int], list[float]]] = {}
        source = entries(
            self.sources,
            agg.query,
            first_ns,
            last_ns,
            backward=False,
            state_ns=steps[-1] - agg.offset_ns,
            stats=self.stats,
            deadline=self.deadline,
            keeps_line=extractor.before.line_test,
        )
        keys: dict[int, LabelsKey] = {}
        plain = extractor.passes_all
        for ts, line, labels in source:
            if plain:
                value = float(len(line.encode())) if mode == "bytes" else 1.0
                final = labels
            else:
                sample = extractor.extract(ts, line, labels)
                if sample is None:
                    continue
                value, final = sample
            if ERROR_LABEL in final:
                raise QueryError(_format_error(final))
            # Stream labels are shared dicts, so their key is worth remembering by identity.
            key = keys.get(id(final)) if final is labels else None
            if key is None:
                key = labels_key(final)
                if final is labels:
                    keys[id(final)] = key
            if agg.grouping is not None:
                key = _group_key(key, agg.grouping)
            slot = series.get(key)
            if slot is None:
                if len(series) >= MAX_SERIES:
                    raise QueryError(f"maximum number of series ({MAX_SERIES}) reached")
                slot = series[key] = ([], [])
            slot[0].append(ts)
            slot[1].append(value)
        return series

    def _range(self, agg: RangeAggregation) -> Vector:
        seconds = agg.range_ns / 1e9
        out: dict[LabelsKey, StepValues] = {}
        for key, (stamps, values) in self._samples(agg).items():
            per_step: StepValues = []
            prefix = [0.0]
            if agg.func in ("count_over_time", "rate", "bytes_over_time", "bytes_rate"):
                for v in values:
                    prefix.append(prefix[-1] + v)
            for t in self.steps:
                end = t - agg.offset_ns
                lo = bisect_right(stamps, end - agg.range_ns)
                hi = bisect_right(stamps, end)
                if hi <= lo:
                    per_step.append(None)
                    continue
                match agg.func:
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
        return Vector(out)

    # vector aggregations
    def _aggregate(self, agg: VectorAggregation) -> Vector:
        inner = self.evaluate(agg.expr)
        if isinstance(inner, Scalar):
            raise QueryError(f"{agg.op} needs a vector, not a scalar")
        if agg.op in ("topk", "bottomk"):
            assert isinstance(agg.param, NumberLiteral)
            return self._top(inner, agg)
        groups: dict[LabelsKey, list[LabelsKey]] = {}
        for key in inner.series:
            groups.setdefault(_group_key(key, agg.grouping), []).append(key)
        out: dict[LabelsKey, StepValues] = {}
        reduce = _REDUCERS[agg.op]
        for group, members in groups.items():
            per_step: StepValues = []
            for i in range(len(self.steps)):
                present = [v for m in members if (v := inner.series[m][i]) is not None]
                per_step.append(reduce(present) if present else None)
            out[group] = per_step
        return Vector(out)

    def _top(self, inner: Vector, agg: VectorAggregation) -> Vector:
        assert isinstance(agg.param, NumberLiteral)
        k = int(agg.param.value)
        if k < 1:
            return Vector({})
        pick = heapq.nlargest if agg.op == "topk" else heapq.nsmallest
        out: dict[LabelsKey, StepValues] = {key: [None] * len(self.steps) for key in inner.series}
        groups: dict[LabelsKey, list[LabelsKey]] = {}
        for key in inner.series:
            groups.setdefault(_group_key(key, agg.grouping), []).append(key)
        for members in groups.values():
            for i in range(len(self.steps)):
                present = [(v, m) for m in members if (v := inner.series[m][i]) is not None]
                for v, m in pick(k, present, key=lambda pair: pair[0]):
                    out[m][i] = v
        return Vector(
            {key: values for key, values in out.items() if any(v is not None for v in values)}
        )

    # binary operations
    def _binary(self, expr: BinaryOp) -> Value:
        left = self.evaluate(expr.left)
        right = self.evaluate(expr.right)
        op = expr.op
        if op in SET_OPS:
            if not (isinstance(left, Vector) and isinstance(right, Vector)):
                raise QueryError(f"set operator {op!r} needs vectors on both sides")
            return _set_op(op, left, right, expr.matching)
        apply = _arith(op, expr.bool_mode)
        if isinstance(left, Scalar) and isinstance(right, Scalar):
            if op in COMPARISONS and not expr.bool_mode:
                raise QueryError("comparisons between scalars must use the bool modifier")
            values = [apply(a, b) for a, b in zip(left.values, right.values, strict=True)]
            return Scalar([0.0 if v is None else v for v in values])
        keeps = op in COMPARISONS and not expr.bool_mode
        if isinstance(left, Vector) and isinstance(right, Scalar):
            return Vector(
                _with_scalar(left, right.values, apply, scalar_left=False, keeps_sample=keeps)
            )
        if isinstance(left, Scalar) and isinstance(right, Vector):
            return Vector(
                _with_scalar(right, left.values, apply, scalar_left=True, keeps_sample=keeps)
            )
        assert isinstance(left, Vector)
        assert isinstance(right, Vector)
        return _vector_op(left, right, apply, expr.matching)


def _safe_div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _safe_mod(a: float, b: float) -> float:
    if b == 0 or math.isinf(a):
        return math.nan
    return math.fmod(a, b)


def _safe_pow(a: float, b: float) -> float:
    try:
        return float(a**b) if not (a < 0 and not b.is_integer()) else math.nan
    except OverflowError:
        return math.inf
    except ZeroDivisionError:
        return math.inf


_ARITH: Final[dict[str, Callable[[float, float], float]]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _safe_div,
    "%": _safe_mod,
    "^": _safe_pow,
}
_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _arith(op: str, bool_mode: bool) -> Callable[[float, float], float | None]:
    """(left, right) → result; None means "filtered out" for a comparison without bool."""
    if op in _ARITH:
        fn = _ARITH[op]
        return lambda a, b: fn(a, b)
    test = _COMPARE[op]
    if bool_mode:
        return lambda a, b: 1.0 if test(a, b) else 0.0
    return lambda a, b: a if test(a, b) else None


def _with_scalar(
    vector: Vector,
    scalars: list[float],
    apply: Callable[[float, float], float | None],
    *,
    scalar_left: bool,
    keeps_sample: bool,
) -> dict[LabelsKey, StepValues]:
    """A vector against a scalar; a comparison filter keeps the vector's own sample."""
    out: dict[LabelsKey, StepValues] = {}
    for key, values in vector.series.items():
        per_step: StepValues = []
        for v, s in zip(values, scalars, strict=True):
            if v is None:
                per_step.append(None)
                continue
            result = apply(s, v) if scalar_left else apply(v, s)
            per_step.append(v if keeps_sample and result is not None else result)
        out[key] = per_step
    return out


def _signature(key: LabelsKey, matching: VectorMatching | None) -> LabelsKey:
    if matching is None:
        return key
    if matching.on:
        return tuple((k, v) for k, v in key if k in matching.labels)
    return tuple((k, v) for k, v in key if k not in matching.labels)


def _vector_op(
    left: Vector,
    right: Vector,
    apply: Callable[[float, float], float | None],
    matching: VectorMatching | None,
) -> Vector:
    by_signature: dict[LabelsKey, list[StepValues]] = {}
    for key, values in right.series.items():
        by_signature.setdefault(_signature(key, matching), []).append(values)
    out: dict[LabelsKey, StepValues] = {}
    for key, values in left.series.items():
        signature = _signature(key, matching)
        partners = by_signature.get(signature)
        if not partners:
            continue
        result_key = signature if matching is not None else key
        per_step: StepValues = []
        for i, v in enumerate(values):
            other = next((p[i] for p in partners if p[i] is not None), None)
            per_step.append(None if v is None or other is None else apply(v, other))
        if any(x is not None for x in per_step):
            existing = out.get(result_key)
            if existing is None:
                out[result_key] = per_step
            else:
                out[result_key] = [
                    a if a is not None else b for a, b in zip(existing, per_step, strict=True)
                ]
    return Vector(out)


def _set_op(op: str, left: Vector, right: Vector, matching: VectorMatching | None) -> Vector:
    steps = len(next(iter(left.series.values()), next(iter(right.series.values()), [])))
    present: dict[LabelsKey, list[bool]] = {}
    for key, values in right.series.items():
        mask = present.setdefault(_signature(key, matching), [False] * steps)
        for i, v in enumerate(values):
            if v is not None:
                mask[i] = True
    out: dict[LabelsKey, StepValues] = {}
    if op in ("and", "unless"):
        want = op == "and"
        for key, values in left.series.items():
            mask = present.get(_signature(key, matching), [False] * steps)
            out[key] = [
                v if (v is not None and mask[i] == want) else None for i, v in enumerate(values)
            ]
        return Vector(out)
    left_present: dict[LabelsKey, list[bool]] = {}
    for key, values in left.series.items():
        out[key] = list(values)
        mask = left_present.setdefault(_signature(key, matching), [False] * steps)
        for i, v in enumerate(values):
            if v is not None:
                mask[i] = True
    for key, values in right.series.items():
        mask = left_present.get(_signature(key, matching), [False] * steps)
        kept = [v if not mask[i] else None for i, v in enumerate(values)]
        if key in out:
            out[key] = [a if a is not None else b for a, b in zip(out[key], kept, strict=True)]
        else:
            out[key] = kept
    return Vector(out)


def _stddev(values: list[float]) -> float:
    return statistics.pstdev(values)


def _stdvar(values: list[float]) -> float:
    return statistics.pvariance(values)


_REDUCERS: Final[dict[str, Callable[[list[float]], float]]] = {
    "sum": math.fsum,
    "avg": lambda vs: math.fsum(vs) / len(vs),
    "min": min,
    "max": max,
    "count": lambda vs: float(len(vs)),
    "stddev": _stddev,
    "stdvar": _stdvar,
}


def evaluate_metric(sources: Sources, expr: MetricExpr, steps: list[int], stats: Stats) -> Value:
    """Evaluate a metric expression at each step (ns)."""
    return MetricEvaluator(sources, steps, stats).evaluate(expr)


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
