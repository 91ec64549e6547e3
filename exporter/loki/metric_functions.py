"""Metric functions beyond plain folding: absent_over_time, rate over unwrap, rate_counter,
label_replace, sort/sort_desc and approx_topk, each over the step grid the evaluator uses."""

from __future__ import annotations

import math
from bisect import bisect_right

from exporter.loki.syntax import LabelReplace, StreamSelector
from exporter.loki.vectors import LabelsKey, StepValues, Vector


def absent_labels(selector: StreamSelector) -> LabelsKey:
    """The series absent_over_time reports: the selector's equality matchers, as Loki does."""
    pairs = {m.name: m.value for m in selector.matchers if m.op == "="}
    return tuple(sorted(pairs.items()))


def absent(
    stamps_by_series: list[list[int]], steps: list[int], range_ns: int, offset_ns: int
) -> StepValues:
    """1 at the steps where no series has a sample in (t - range, t], None elsewhere."""
    out: StepValues = []
    for t in steps:
        end = t - offset_ns
        present = False
        for stamps in stamps_by_series:
            if bisect_right(stamps, end) > bisect_right(stamps, end - range_ns):
                present = True
                break
        out.append(None if present else 1.0)
    return out


def counter_rate(
    stamps: list[int], values: list[float], lo: int, hi: int, window_start: int, window_end: int
) -> float | None:
    """Prometheus' extrapolated rate of a counter over the samples [lo, hi) (resets added back)."""
    if hi - lo < 2:
        return None
    increase = values[hi - 1] - values[lo]
    for i in range(lo + 1, hi):
        if values[i] < values[i - 1]:
            increase += values[i - 1]
    first_ns, last_ns = stamps[lo], stamps[hi - 1]
    sampled = (last_ns - first_ns) / 1e9
    if sampled <= 0:
        return None
    average_gap = sampled / (hi - lo - 1)
    to_start = (first_ns - window_start) / 1e9
    to_end = (window_end - last_ns) / 1e9
    threshold = average_gap * 1.1
    if increase > 0 and values[lo] >= 0:
        zero_at = sampled * (values[lo] / increase)
        to_start = min(to_start, zero_at)
    extended = sampled
    extended += to_start if to_start < threshold else average_gap / 2
    extended += to_end if to_end < threshold else average_gap / 2
    return increase * (extended / sampled) / ((window_end - window_start) / 1e9)


def replace_labels(vector: Vector, spec: LabelReplace) -> Vector:
    """Prometheus' label_replace: where `src` matches the regex (anchored), set `dst` to the
    expanded replacement (an empty result removes `dst`); other series pass unchanged."""
    out: dict[LabelsKey, StepValues] = {}
    for key, values in vector.series.items():
        labels = dict(key)
        found = spec.regex.groups(labels.get(spec.src, ""))
        if found is not None:
            value = _expand(spec.replacement, found, spec.regex.names)
            if value:
                labels[spec.dst] = value
            else:
                labels.pop(spec.dst, None)
        new_key = tuple(sorted(labels.items()))
        if new_key in out:
            raise ValueError("vector cannot contain metrics with the same labelset")
        out[new_key] = values
    return Vector(out, vector.order)


def _expand(template: str, groups: list[str | None], names: dict[str, int]) -> str:
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "$" or i + 1 >= len(template):
            out.append(ch)
            i += 1
            continue
        if template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if template[i + 1] == "{":
            end = template.find("}", i)
            name = template[i + 2 : end] if end > 0 else ""
            i = end + 1 if end > 0 else len(template)
        else:
            j = i + 1
            while j < len(template) and (template[j].isalnum() or template[j] == "_"):
                j += 1
            name = template[i + 1 : j]
            i = j
        index = int(name) if name.isdigit() else names.get(name, -1)
        if 0 <= index < len(groups):
            out.append(groups[index] or "")
    return "".join(out)


def rate_of_sum(values: list[float], lo: int, hi: int, range_ns: int) -> float:
    """`rate(… | unwrap x [r])`: the sum of the values per second of the range."""
    return math.fsum(values[lo:hi]) / (range_ns / 1e9)
