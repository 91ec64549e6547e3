"""How much each stream logged in time spans, from the stream index: Drilldown's volumes."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import sub
from typing import Final

from aiohttp import web

from exporter.loki.evaluate import Sources, labels_key
from exporter.loki.logql import StreamSelector
from exporter.loki.pacing import Pace
from exporter.loki.pipeline import Labels
from exporter.loki.streams import EventKey, state_line
from exporter.loki.vectors import LabelsKey

_SLICE: Final = 1024
SAMPLE: Final = 16
"""Newest lines of a stream whose mean size stands for the size of all its lines."""


class LineSizes(dict[EventKey, int]):
    """Mean line size per stream key, sampled once (a stream's lines keep one template)."""


LINE_SIZES = web.AppKey("loki_line_sizes", LineSizes)


@dataclass(slots=True)
class Volume:
    """One stream in one span: its labels, entries, and bytes (entries x mean line size)."""

    labels: Labels
    entries: int = 0
    bytes: int = 0


async def stream_volumes(
    sources: Sources,
    selector: StreamSelector | None,
    spans: Sequence[tuple[int, int]],
    pace: Pace,
    *,
    sizes: LineSizes | None = None,
) -> list[list[Volume]]:
    """Per span [start, end), the streams the selector picks (all when None) with entries
    and, given `sizes` (a cache kept across calls), bytes.

    Entries are counted from the stream index, so the cost is per stream and span, not per
    event. Bytes are estimated: entries times the mean size of the stream's newest lines
    (rendering every line of an hour would cost what Loki's chunk sizes cost it nothing).
    The shopper-state stream counts in the last span: its entries are stamped at the end.
    """
    index = sources.index
    assert index is not None  # setup_loki makes one
    while index.refresh(_SLICE):
        await pace.tick()
    labeller, log = sources.labeller, sources.log

    def picked(labels: Labels) -> bool:
        return selector is None or selector.matches(labels)

    keys = index.picked(selector, labeller)
    sized = sizes is not None
    line_size = sizes if sizes is not None else LineSizes()
    for key in keys if sized else ():
        if key not in line_size:
            lines = [len(line.encode()) for line in log.read(index.newest(key, SAMPLE))[1]]
            if lines:
                line_size[key] = round(sum(lines) / len(lines))
    # Each stream's entries in every span at once: a bisection per span edge, in C.
    edges = [log.span_ids(start, end) for start, end in spans]
    firsts = [first for first, _ in edges]
    stops = [max(first, last + 1) for first, last in edges]
    streams: list[tuple[Labels, LabelsKey, int]] = []
    columns: list[list[int]] = []
    for key in keys:
        bucket = index.bucket(key)
        ends = map(bisect_left, repeat(bucket), stops)
        columns.append(list(map(sub, ends, map(bisect_left, repeat(bucket), firsts))))
        labels = labeller.for_key(key)
        streams.append((labels, labels_key(labels), line_size.get(key, 0)))
    out: list[list[Volume]] = []
    for counts in zip(*columns, strict=True) if columns else ([()] * len(spans)):
        found: dict[LabelsKey, Volume] = {}
        for (labels, group, size), held in compress(zip(streams, counts, strict=True), counts):
            volume = found.get(group)
            if volume is None:
                volume = found[group] = Volume(labels)
            volume.entries += held
            volume.bytes += held * size
        out.append(list(found.values()))
    await pace.tick()
    if out:
        _add_states(sources, picked, out[-1], sized)
    return out


def _add_states(
    sources: Sources, picked: Callable[[Labels], bool], volumes: list[Volume], sized: bool
) -> None:
    store, labeller = sources.store, sources.labeller
    found: dict[LabelsKey, Volume] = {}
    line_size: dict[LabelsKey, int] = {}
    for shopper in store.newest(limit=len(store)):
        labels = labeller.for_shopper(shopper)
        if not picked(labels):
            continue
        key = labels_key(labels)
        volume = found.get(key)
        if volume is None:
            volume = found[key] = Volume(labels)
            # One line per stream stands for the others: state lines differ little in size.
            line_size[key] = len(state_line(store, shopper).encode()) if sized else 0
        volume.entries += 1
    for key, volume in found.items():
        volume.bytes = volume.entries * line_size[key]
        volumes.append(volume)
