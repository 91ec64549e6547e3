"""count_over_time and rate over a bare selector, answered from the stream index.

When nothing but the selector decides which events count, the number of events per stream in
a window is two binary searches in that stream's id list: no line is read, rendered or
labelled. Ids grow with log time, so a window of time is a range of ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from exporter.loki.streams import EventKey, StreamLabeller
from exporter.loki.syntax import RangeAggregation
from exporter.loki.vectors import LabelsKey, StepValues

IdWindow = Callable[[int, int], tuple[int, int] | None]
"""(start_ns, end_ns) → ids of the first and last event logged in [start_ns, end_ns)."""


def answers(agg: RangeAggregation, reads_state: bool) -> bool:
    """Whether the index alone answers this range aggregation."""
    return agg.func in ("count_over_time", "rate") and not agg.query.stages and not reads_state


async def counts_by_step(
    agg: RangeAggregation,
    steps: list[int],
    keys: list[EventKey],
    labeller: StreamLabeller,
    window: IdWindow,
    count: Callable[[EventKey, int, int], int],
    tick: Callable[[], Awaitable[None]],
) -> tuple[dict[LabelsKey, StepValues], int]:
    """Series (by stream labels) with a count or rate per step, and the events counted."""
    series_of = {key: tuple(sorted(labeller.for_key(key).items())) for key in keys}
    out: dict[LabelsKey, StepValues] = {}
    seconds = agg.range_ns / 1e9
    counted = 0
    for i, t in enumerate(steps):
        end = t - agg.offset_ns
        ids = window(end - agg.range_ns + 1, end + 1)
        if ids is None:
            continue
        first_id, last_id = ids
        for key in keys:
            n = count(key, first_id, last_id)
            if n == 0:
                continue
            counted += n
            series = series_of[key]
            values = out.get(series)
            if values is None:
                values = out[series] = [None] * len(steps)
            values[i] = (values[i] or 0.0) + n
        if i % 16 == 15:
            await tick()
    if agg.func == "rate":
        for values in out.values():
            for i, v in enumerate(values):
                if v is not None:
                    values[i] = v / seconds
    return out, counted
