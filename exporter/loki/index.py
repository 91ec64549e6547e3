"""An index of event-log ids by stream, kept up to date as queries need it.

A selector that picks a few streams (say `type=~"cart_.*"`) then visits only those streams'
events instead of the whole ring. Ids are appended in log order, so each list stays sorted.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import chain, islice
from typing import Final

from aiohttp import web

from exporter.eventlog import EventLog
from exporter.loki.streams import EventKey, StreamLabeller
from exporter.loki.syntax import StreamSelector

_PICKS: Final = 256
"""Selectors whose stream keys are remembered (dashboards repeat a few dozen queries)."""


class StreamIndex:
    """Event ids per stream key (type, activity, membership), built incrementally."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._ids: dict[EventKey, array[int]] = {}
        self._indexed = 0
        self._trimmed_below = 0
        self._picks: dict[tuple[StreamSelector | None, StreamLabeller], list[EventKey]] = {}
        """Each selector's stream keys, until a key comes or goes."""

    def refresh(self, limit: int | None = None) -> bool:
        """Index events logged since the last call (at most `limit` of them); forget ids that
        left the ring. True while more remain to index."""
        log = self.log
        ids = self._ids
        for logged in islice(log.after(self._indexed), limit):
            event = logged.event
            props = event.props
            key = (event.type, props.get("activity"), props.get("membership"))
            bucket = ids.get(key)
            if bucket is None:
                bucket = ids[key] = array("q")
                self._picks.clear()
            bucket.append(logged.id)
            self._indexed = logged.id
        self._indexed = max(self._indexed, log.first_id - 1)
        first = log.first_id
        # Trimming is O(streams); doing it once per half ring keeps it amortized.
        if first - self._trimmed_below > max(len(log), 4096) // 2:
            for key in list(ids):
                bucket = ids[key]
                cut = bisect_left(bucket, first)
                if cut == len(bucket):
                    del ids[key]
                    self._picks.clear()
                elif cut:
                    del bucket[:cut]
            self._trimmed_below = first
        return self._indexed < log.last_id

    def picked(self, selector: StreamSelector | None, labeller: StreamLabeller) -> list[EventKey]:
        """The stream keys whose labels the selector matches (every key for None), in the
        order streams were first seen. Remembered per selector: Grafana sends the same
        queries on every refresh, and matching each key's labels is a Python call per key."""
        memo = (selector, labeller)
        keys = self._picks.get(memo)
        if keys is None:
            keys = [
                key
                for key in self._ids
                if selector is None or selector.matches(labeller.for_key(key))
            ]
            if len(self._picks) >= _PICKS:
                self._picks.clear()
            self._picks[memo] = keys
        return keys

    def share(self, keys: list[EventKey]) -> tuple[int, int]:
        """(ids held under these keys, ids held overall)."""
        ids = self._ids
        return sum(len(ids[key]) for key in keys if key in ids), sum(map(len, ids.values()))

    def counts(self, first_id: int, last_id: int) -> dict[EventKey, int]:
        """Held events per stream key with ids in [first_id, last_id]."""
        first_id = max(first_id, self.log.first_id)
        out: dict[EventKey, int] = {}
        for key, bucket in self._ids.items():
            held = bisect_right(bucket, last_id) - bisect_left(bucket, first_id)
            if held > 0:
                out[key] = held
        return out

    def count(self, key: EventKey, first_id: int, last_id: int) -> int:
        """Held events of one stream key with ids in [first_id, last_id]."""
        bucket = self._ids.get(key)
        if bucket is None:
            return 0
        first_id = max(first_id, self.log.first_id)
        return max(bisect_right(bucket, last_id) - bisect_left(bucket, first_id), 0)

    def bucket(self, key: EventKey) -> array[int]:
        """The ids indexed under this stream key, ascending (some may have left the log)."""
        return self._ids.get(key) or array("q")

    def newest(self, key: EventKey, count: int) -> list[int]:
        """Ids of this stream's newest `count` held events, oldest first."""
        bucket = self._ids.get(key)
        if bucket is None:
            return []
        return [i for i in bucket[-count:] if i >= self.log.first_id]

    def windows(
        self, keys: list[EventKey], first_id: int, last_id: int, *, backward: bool, size: int
    ) -> Iterator[list[int]]:
        """The ids `ids` gives, a window of the id space at a time (each holding about `size`
        of them, in id order or reversed), so a reader that stops early (a query's limit
        reached among the newest) never merges the rest."""
        first_id, last_id = max(first_id, self.log.first_id), min(last_id, self.log.last_id)
        if first_id > last_id:
            return
        buckets = [bucket for key in keys if (bucket := self._ids.get(key))]
        wanted = sum(bisect_right(b, last_id) - bisect_left(b, first_id) for b in buckets)
        if wanted == 0:
            return
        # The id span that holds `size` of the wanted ids, were they evenly spread.
        width = max(1, (last_id - first_id + 1) * size // wanted)
        # Each window bisects the buckets afresh: between two, a refresh may trim their heads.
        low, high = (last_id + 1 - width, last_id + 1) if backward else (first_id, first_id + width)
        while True:
            low, high = max(low, first_id), min(high, last_id + 1)
            runs = [
                run
                for bucket in buckets
                if (run := bucket[bisect_left(bucket, low) : bisect_left(bucket, high)])
            ]
            if len(runs) == 1:  # one stream in this window: its ids are in order already
                yield runs[0].tolist()[::-1] if backward else runs[0].tolist()
            elif runs:
                yield sorted(chain.from_iterable(runs), reverse=backward)
            if (low if backward else high) == (first_id if backward else last_id + 1):
                return
            low, high = (low - width, low) if backward else (high, high + width)

    def ids(
        self, keys: list[EventKey], first_id: int, last_id: int, *, backward: bool
    ) -> list[int]:
        """Ids of these streams' events in [first_id, last_id], in id order (or reversed)."""
        first_id = max(first_id, self.log.first_id)
        runs = []
        for key in keys:
            bucket = self._ids.get(key)
            if bucket is None:
                continue
            lo = bisect_left(bucket, first_id)
            hi = bisect_right(bucket, last_id)
            if hi > lo:
                runs.append(bucket[lo:hi])
        # Sorting already sorted runs is a merge in C; cheaper than a Python heap merge.
        merged = sorted(chain.from_iterable(runs)) if len(runs) > 1 else list(chain(*runs))
        if backward:
            merged.reverse()
        return merged


INDEX = web.AppKey("loki_index", StreamIndex)
