"""Values of metric queries (scalars and vectors) and the operations between them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from exporter.loki.pacing import Pace
from exporter.loki.syntax import VectorMatching

LabelsKey = tuple[tuple[str, str], ...]
StepValues = list[float | None]
"""One series: a value per evaluation step, None where the series has no sample."""


@dataclass(slots=True)
class Scalar:
    """A number per step."""

    values: list[float]


@dataclass(slots=True)
class Vector:
    """Series by label set, each with a value (or None) per step."""

    series: dict[LabelsKey, StepValues]
    order: str = ""
    """"asc"/"desc" after sort/sort_desc: an instant result lists series by value."""


class MatchingError(ValueError):
    """Two vectors that cannot be matched as asked (Loki answers 400)."""


Value = Scalar | Vector


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


def arith(op: str, bool_mode: bool) -> Callable[[float, float], float | None]:
    """(left, right) → result; None means "filtered out" for a comparison without bool."""
    if op in _ARITH:
        fn = _ARITH[op]
        return lambda a, b: fn(a, b)
    test = _COMPARE[op]
    if bool_mode:
        return lambda a, b: 1.0 if test(a, b) else 0.0
    return lambda a, b: a if test(a, b) else None


async def with_scalar(
    vector: Vector,
    scalars: list[float],
    apply: Callable[[float, float], float | None],
    pace: Pace,
    *,
    scalar_left: bool,
    keeps_sample: bool,
) -> Vector:
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
        await pace.tick()
    return Vector(out)


def _signature(key: LabelsKey, matching: VectorMatching | None) -> LabelsKey:
    if matching is None:
        return key
    if matching.on:
        return tuple((k, v) for k, v in key if k in matching.labels)
    return tuple((k, v) for k, v in key if k not in matching.labels)


async def vector_op(
    left: Vector,
    right: Vector,
    apply: Callable[[float, float], float | None],
    matching: VectorMatching | None,
    pace: Pace,
) -> Vector:
    """Two vectors, sample by sample where their label signatures match."""
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
        await pace.tick()
    return Vector(out)


async def grouped_op(
    left: Vector,
    right: Vector,
    apply: Callable[[float, float], float | None],
    matching: VectorMatching,
    pace: Pace,
) -> Vector:
    """`group_left` / `group_right`: each series of the "many" side meets the one series of the
    other side with its signature; it keeps its labels, plus the `include` labels of its match."""
    many_is_left = matching.card == "many-to-one"
    many, one = (left, right) if many_is_left else (right, left)
    partners: dict[LabelsKey, list[tuple[LabelsKey, StepValues]]] = {}
    for key, values in one.series.items():
        partners.setdefault(_signature(key, matching), []).append((key, values))
    steps = len(next(iter(many.series.values()), []))
    out: dict[LabelsKey, StepValues] = {}
    for key, values in many.series.items():
        found = partners.get(_signature(key, matching))
        if not found:
            continue
        for i, v in enumerate(values):
            if v is None:
                continue
            present = [(k, x) for k, p in found if (x := p[i]) is not None]
            if not present:
                continue
            if len(present) > 1:
                raise MatchingError(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                )
            one_key, other = present[0]
            result = apply(v, other) if many_is_left else apply(other, v)
            if result is None:
                continue
            labels = dict(key)
            one_labels = dict(one_key)
            for name in matching.include:
                if name in one_labels:
                    labels[name] = one_labels[name]
                else:
                    labels.pop(name, None)
            result_key = tuple(sorted(labels.items()))
            slot = out.setdefault(result_key, [None] * steps)
            if slot[i] is not None:
                raise MatchingError(
                    "multiple matches for labels: many-to-one matching must be explicit"
                )
            slot[i] = result
        await pace.tick()
    return Vector(out)


async def set_op(
    op: str, left: Vector, right: Vector, matching: VectorMatching | None, pace: Pace
) -> Vector:
    """`and`, `or`, `unless` between two vectors."""
    steps = len(next(iter(left.series.values()), next(iter(right.series.values()), [])))
    present: dict[LabelsKey, list[bool]] = {}
    for key, values in right.series.items():
        mask = present.setdefault(_signature(key, matching), [False] * steps)
        for i, v in enumerate(values):
            if v is not None:
                mask[i] = True
        await pace.tick()
    out: dict[LabelsKey, StepValues] = {}
    if op in ("and", "unless"):
        want = op == "and"
        for key, values in left.series.items():
            mask = present.get(_signature(key, matching), [False] * steps)
            out[key] = [
                v if (v is not None and mask[i] == want) else None for i, v in enumerate(values)
            ]
            await pace.tick()
        return Vector(out)
    left_present: dict[LabelsKey, list[bool]] = {}
    for key, values in left.series.items():
        out[key] = list(values)
        mask = left_present.setdefault(_signature(key, matching), [False] * steps)
        for i, v in enumerate(values):
            if v is not None:
                mask[i] = True
        await pace.tick()
    for key, values in right.series.items():
        mask = left_present.get(_signature(key, matching), [False] * steps)
        kept = [v if not mask[i] else None for i, v in enumerate(values)]
        if key in out:
            out[key] = [a if a is not None else b for a, b in zip(out[key], kept, strict=True)]
        else:
            out[key] = kept
        await pace.tick()
    return Vector(out)


def _stddev(values: list[float]) -> float:
    return statistics.pstdev(values)


def _stdvar(values: list[float]) -> float:
    return statistics.pvariance(values)


REDUCERS: Final[dict[str, Callable[[list[float]], float]]] = {
    "sum": math.fsum,
    "avg": lambda vs: math.fsum(vs) / len(vs),
    "min": min,
    "max": max,
    "count": lambda vs: float(len(vs)),
    "stddev": _stddev,
    "stdvar": _stdvar,
}
