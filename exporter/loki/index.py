"""An index of event-log ids by stream, kept up to date as queries need it.

A selector that picks a few streams (say `type=~"cart_.*"`) then visits only those streams'
events instead of the whole ring. Ids are appended in log order, so each list stays sorted.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from itertools import chain, islice

from aiohttp import web

from exporter.eventlog import EventLog
from exporter.loki.streams import EventKey


class StreamIndex:
    """Event ids per stream key (type, activity, membership), built incrementally."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._ids: dict[EventKey, array[int]] = {}
        self._indexed = 0
        self._trimmed_below = 0

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
                elif cut:
                    del bucket[:cut]
            self._trimmed_below = first
        return self._indexed < log.last_id

    def share(self, wanted: Callable[[EventKey], bool]) -> tuple[list[EventKey], int, int]:
        """(keys a selector wants, ids held under them, ids held overall)."""
        keys, picked, total = [], 0, 0
        for key, bucket in self._ids.items():
            total += len(bucket)
            if wanted(key):
                keys.append(key)
                picked += len(bucket)
        return keys, picked, total

    def counts(self, first_id: int, last_id: int) -> dict[EventKey, int]:
        """Held events per stream key with ids in [first_id, last_id]."""
        first_id = max(first_id, self.log.first_id)
        out: dict[EventKey, int] = {}
        for key, bucket in self._ids.items():
            held = bisect_right(bucket, last_id) - bisect_left(bucket, first_id)
            if held > 0:
                out[key] = held
        return out

    def keys_in_order(self, keys: list[EventKey]) -> list[EventKey]:
        """These keys in the order `counts` gives them (the order streams were first seen)."""
        wanted = set(keys)
        return [key for key in self._ids if key in wanted]

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
                bucket[bisect_left(bucket, low) : bisect_left(bucket, high)] for bucket in buckets
            ]
            merged = sorted(chain.from_iterable(runs), reverse=backward)
            if merged:
                yield merged
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
