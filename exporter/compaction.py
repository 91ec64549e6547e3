"""The shopper map copied compact before CPython doubles its table under churn.

Every insertion into a dict takes a new entry; a deletion, or a shopper moved to the end, leaves
a hole that only a resize reclaims. When the entries run out CPython resizes to fit three times
the shoppers held, so a map held at N shoppers while others come and go (new shoppers past
--max-shoppers, each update moving its shopper to the end) settles at a table twice the one a
copy of it gets (which fits one and a half times N): at 200,000 shoppers 15.4 MB instead of 7.7.
So once a second the map is copied in place, compact, when the insertions since the last copy
(at most the records received) could use up its room within `MARGIN` seconds at the latest
rate. A copy of N shoppers every (room - margin) insertions is a few milliseconds at 200,000.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Final

MARGIN: Final = 4.0
"""Turns of the latest intake the table must still have room for, or it is copied now."""
MIN_ROOM: Final = 1024
"""Entries a fresh copy must leave free for copying to be worth it."""


def room_after_copy(held: int) -> int:
    """Insertions a compact copy of a dict of `held` entries takes before CPython resizes it
    (its rule from 3.11 on: a table of the next power of two from 1.5 times held, two thirds
    usable; a wrong guess only moves when the copy happens)."""
    size = max(8, 1 << max(0, (held * 3 + 1) // 2 - 1).bit_length())
    return size * 2 // 3 - held


class MapCompactor:
    """Keeps one dict compact (`tend` once a second), given how many records came in so far."""

    def __init__(self, table: dict[Any, Any], intake: Callable[[], int]) -> None:
        self.table = table
        self.intake = intake
        self.copies = 0
        self._room = room_after_copy(len(table))
        self._since = self._last = intake()
        self._size = sys.getsizeof(table)

    def tend(self) -> bool:
        """Copy the table compact if its room may run out soon; whether it did."""
        taken, table = self.intake(), self.table
        rate, self._last = taken - self._last, taken
        if sys.getsizeof(table) != self._size:
            # Resized since (insertions not counted as intake, or a guess off): start over.
            self._mark(taken)
            return False
        if taken - self._since + MARGIN * rate < self._room:
            return False
        if room_after_copy(len(table)) < max(MIN_ROOM, MARGIN * rate):
            self._mark(taken)  # a copy would fill up at once: let CPython grow it
            return False
        compact = dict(table)  # sized for what it holds, without the holes
        table.clear()
        table.update(compact)  # takes the compact table as it is (same order)
        self.copies += 1
        self._mark(taken)
        return True

    def _mark(self, taken: int) -> None:
        self._room = room_after_copy(len(self.table))
        self._since = taken
        self._size = sys.getsizeof(self.table)
