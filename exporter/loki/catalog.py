"""Which streams exist in a time range: for label names and values, series and index stats."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from exporter.loki.evaluate import Sources, labels_key
from exporter.loki.index import StreamIndex
from exporter.loki.pacing import Pace
from exporter.loki.pipeline import Labels
from exporter.loki.streams import EventKey
from exporter.loki.syntax import StreamSelector
from exporter.loki.vectors import LabelsKey

_SLICE: Final = 1024


@dataclass(slots=True)
class StreamTotals:
    """One stream in the range: its labels, entries and bytes."""

    labels: Labels
    entries: int = 0
    bytes: int = 0


async def streams_in_range(
    sources: Sources,
    selectors: list[StreamSelector],
    start_ns: int,
    end_ns: int,
    pace: Pace,
    *,
    with_bytes: bool = False,
) -> dict[LabelsKey, StreamTotals]:
    """Streams with entries in [start_ns, end_ns) that any selector picks (all when none).

    Entry counts come from the stream index; bytes (only when asked) need every line read.
    The shopper-state stream counts whenever there are shoppers: its entries are stamped at
    each query's end, so it always has something to show.
    """

    def picked(labels: Labels) -> bool:
        return not selectors or any(s.matches(labels) for s in selectors)

    found: dict[LabelsKey, StreamTotals] = {}
    labeller = sources.labeller
    index = sources.index
    if index is not None and not with_bytes:
        while index.refresh(_SLICE):
            await pace.tick()
        for key, held in _counts(sources, index, start_ns, end_ns).items():
            labels = labeller.for_key(key)
            if picked(labels):
                found.setdefault(labels_key(labels), StreamTotals(labels)).entries += held
    else:
        for _ in _scan(sources, picked, start_ns, end_ns, found):
            await pace.tick()
    store = sources.store
    for shopper in store.newest(limit=len(store)):
        labels = labeller.for_shopper(shopper)
        if picked(labels):
            totals = found.setdefault(labels_key(labels), StreamTotals(labels))
            totals.entries += 1
    return found


def _counts(
    sources: Sources, index: StreamIndex, start_ns: int, end_ns: int
) -> dict[EventKey, int]:
    log = sources.log
    first = next(log.between(start_ns, end_ns), None)
    last = next(log.between(start_ns, end_ns, backward=True), None)
    if first is None or last is None:
        return {}
    return index.counts(first.id, last.id)


def _scan(
    sources: Sources,
    picked: Callable[[Labels], bool],
    start_ns: int,
    end_ns: int,
    found: dict[LabelsKey, StreamTotals],
) -> Iterator[None]:
    """Count every event in range into `found`, pausing (a `yield`) after each slice; events
    that leave the ring during a pause are not counted."""
    by_event: dict[EventKey, StreamTotals | None] = {}
    labeller, log = sources.labeller, sources.log
    first = next(log.between(start_ns, end_ns), None)
    last = next(log.between(start_ns, end_ns, backward=True), None)
    if first is None or last is None:
        return
    for at in range(first.id, last.id + 1, _SLICE):
        yield
        for logged in log.held(list(range(at, min(at + _SLICE, last.id + 1)))):
            event = logged.event
            key = (event.type, event.props.get("activity"), event.props.get("membership"))
            totals = by_event.get(key)
            if totals is None:
                if key in by_event:
                    continue
                labels = labeller.for_key(key)
                if not picked(labels):
                    by_event[key] = None
                    continue
                totals = found.setdefault(labels_key(labels), StreamTotals(labels))
                by_event[key] = totals
            totals.entries += 1
            totals.bytes += len(logged.line)
