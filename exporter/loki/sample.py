"""The newest lines a log query keeps, found through the stream index: Drilldown's samples."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Final

from exporter.loki.evaluate import Sources
from exporter.loki.logql import LogQuery
from exporter.loki.pacing import Pace
from exporter.loki.pipeline import Pipeline
from exporter.loki.streams import state_line

_SLICE: Final = 1024
OVERSAMPLE: Final = 4
"""Candidates per wanted line: a pipeline that drops more than this share gives fewer lines."""


async def newest_lines(
    sources: Sources, query: LogQuery, start_ns: int, end_ns: int, limit: int, pace: Pace
) -> list[str]:
    """Up to `limit` lines (after the pipeline) of the newest entries in [start, end).

    Each selected stream gives its newest candidates from the index (a bisection each, not a
    scan of the range), the candidates are merged newest first and run through the pipeline
    until `limit` lines pass. Shopper-state lines join when the selector picks them.
    """
    index = sources.index
    assert index is not None  # setup_loki makes one
    while index.refresh(_SLICE):
        await pace.tick()
    log, labeller, selector = sources.log, sources.labeller, query.selector
    pipeline = Pipeline(query.stages)
    first, last = log.span_ids(start_ns, end_ns)
    keys = index.picked(selector, labeller)
    want = limit * OVERSAMPLE
    window = want
    while True:
        # The newest ids of the selected streams lie in the last `window` ids of the range;
        # widen it until it holds enough of them or the whole range.
        floor = max(first, last - window + 1)
        candidates: list[int] = []
        for key in keys:
            bucket = index.bucket(key)
            candidates.extend(bucket[bisect_left(bucket, floor) : bisect_right(bucket, last)])
        if len(candidates) >= want or floor == first or first > last:
            break
        window *= 4
    candidates.sort(reverse=True)
    lines: list[str] = []
    stamps, read, facets = log.read(candidates[:want])
    if pipeline.keeps_lines:  # `| json` and the like: every line comes out as it went in
        lines = read[:limit]
        if len(lines) >= limit:
            return lines
        stamps, read, facets = [], [], []
    for n, (ts_ns, line, key) in enumerate(zip(stamps, read, facets, strict=True)):
        result = pipeline.run(ts_ns, line, labeller.for_key(key))
        if result is not None:
            lines.append(result[0])
            if len(lines) >= limit:
                return lines
        if n % _SLICE == _SLICE - 1:
            await pace.tick()
    store = sources.store
    state_ns = max(start_ns, end_ns - 1)
    for shopper in store.newest(limit=want):
        labels = labeller.for_shopper(shopper)
        if selector.matches(labels):
            if pipeline.keeps_lines:
                lines.append(state_line(store, shopper))
                if len(lines) >= limit:
                    break
                continue
            result = pipeline.run(state_ns, state_line(store, shopper), labels)
            if result is not None:
                lines.append(result[0])
                if len(lines) >= limit:
                    break
    return lines
