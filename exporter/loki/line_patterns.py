"""Patterns of the event lines, as Loki's pattern detection gives them: one per event shape."""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from exporter.eventlog import LoggedEvent
from exporter.loki.evaluate import Sources
from exporter.loki.logql import StreamSelector
from exporter.loki.pacing import Pace

VARIABLE: Final = "<_>"
_SLICE: Final = 2048

PatternKey = tuple[str, str]
"""(pattern, event type)."""


def pattern_of(logged: LoggedEvent) -> str:
    """The event's line with every value but its type replaced by `<_>`.

    The lines are JSON objects rendered from one template per event type and set of details,
    so that template is exactly what a pattern miner would converge on.
    """
    event = logged.event
    keys = ["time", "type", "userId", "userName", *event.props, "message"]
    parts = [f'"{key}":{VARIABLE}' if key != "type" else f'"type":"{event.type}"' for key in keys]
    return "{" + ",".join(parts) + "}"


async def pattern_samples(
    sources: Sources,
    selector: StreamSelector,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    pace: Pace,
) -> dict[PatternKey, dict[int, int]]:
    """For each pattern of the selected events logged in [start, end): count per step start."""
    index = sources.index
    assert index is not None  # setup_loki makes one
    while index.refresh(_SLICE):
        await pace.tick()
    labeller, log = sources.labeller, sources.log
    keys = index.picked(selector, labeller)
    first, last = log.span_ids(start_ns, end_ns)
    found: dict[PatternKey, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    if first > last or not keys:
        return found
    ids = index.ids(keys, first, last, backward=False)
    for n, logged in enumerate(log.held(ids)):
        bucket = start_ns + (logged.ts_ns - start_ns) // step_ns * step_ns
        found[(pattern_of(logged), logged.event.type)][bucket] += 1
        if n % _SLICE == 0:
            await pace.tick()
    return found
