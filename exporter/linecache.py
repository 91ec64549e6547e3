"""Rendered lines of the event log's newest blocks, kept within a byte budget.

A held event is packed (exporter.eventblock); reading its line means rebuilding the event
and rendering it, ~15 µs. Log queries read the newest events again and again (Grafana
refreshes the same hour), so the lines they rendered are kept here, block by block, the
newest blocks first: a block older than every cached one is not admitted once the budget is
spent, and a newer one pushes the oldest out. What the cache holds is counted in the log's
own memory estimate. Events never change once written, except by erasure, which empties it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.eventblock import Block

Row = tuple[str, tuple[str, Any, Any]]
"""An event's line and its type, activity and membership (what its stream is made of)."""

_SLOT = 8
"""A pointer in a block's list of rows."""
_ROW = 64 + 8
"""A (line, facets) pair: the tuple and the facets' tuple header share of its slot."""


class _Rows:
    """One block's cached rows, by position (None: not rendered yet)."""

    __slots__ = ("facets", "nbytes", "numbers", "rows")

    def __init__(self) -> None:
        self.nbytes = 0
        self.numbers: dict[str, list[float]] = {}
        """Numeric details by name, by position (see Block.numbers)."""
        self.rows: list[Row | None] = []
        self.facets: dict[tuple[str, Any, Any], tuple[str, Any, Any]] = {}
        """Each distinct facets tuple once: a block's events share a few dozen."""


_FLOAT = 24
_NAMES = 4
"""Numeric details cached per block: queries filter on a few (cartValue, itemsInCart)."""
_NONE: list[Row | None] = []


class LineCache:
    """Rows of events by (block base, position), newest blocks first, within `budget` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.nbytes = 0
        self._blocks: dict[int, _Rows] = {}

    def get(self, base: int, position: int) -> Row | None:
        """The cached row of the event at `position` of the block starting at `base`."""
        cached = self._blocks.get(base)
        if cached is None or position >= len(cached.rows):
            return None
        return cached.rows[position]

    def rows(self, base: int) -> list[Row | None]:
        """The block's cached rows by position (empty when none; not to be changed)."""
        cached = self._blocks.get(base)
        return _NONE if cached is None else cached.rows

    def put(self, base: int, length: int, position: int, row: Row) -> Row:
        """Keep a rendered row (of a block holding `length` events) if its block is admitted
        and there is room; returns the row, its facets shared with the block's other rows."""
        cached = self._blocks.get(base)
        if cached is None:
            cached = self._admit(base)
            if cached is None:
                return row
        rows = cached.rows
        if position < len(rows):
            kept = rows[position]
            if kept is not None:
                return kept
        line, facets = row
        try:
            shared = cached.facets.get(facets)
            hashable = True
        except TypeError:  # odd details (a dict as activity) are not shared, just kept
            shared, hashable = None, False
        added = max(0, length - len(rows)) * _SLOT + _ROW + sys.getsizeof(line)
        if shared is None:
            added += sys.getsizeof(facets) + sum(map(sys.getsizeof, facets))
        if not self._room(base, added):
            return row
        if shared is None:
            shared = facets
            if hashable:
                cached.facets[facets] = facets
        if len(rows) < length:  # the open block grows: its list follows
            rows.extend([None] * (length - len(rows)))
        row = rows[position] = (line, shared)
        cached.nbytes += added
        self.nbytes += added
        return row

    def numbers(self, block: Block, name: str, start: int, stop: int) -> list[float]:
        """Detail `name` of the block's events at positions [start, stop) as floats (NaN: not
        a number). The whole block's column is kept with its rows when the block is admitted
        (an open block's column follows its growth); otherwise only the slice is read."""
        base = block.base
        cached = self._blocks.get(base)
        if cached is None:
            cached = self._admit(base)
        column = None if cached is None else cached.numbers.get(name)
        if cached is not None and column is None and len(cached.numbers) < _NAMES:
            column = cached.numbers[name] = []
        if cached is None or column is None:
            return block.numbers(name, start, stop)
        if len(column) < len(block):
            added = block.numbers(name, len(column), len(block))
            size = len(added) * (_SLOT + _FLOAT)
            if not self._room(base, size):
                return (column + added)[start:stop]
            column += added
            cached.nbytes += size
            self.nbytes += size
        return column[start:stop]

    def _admit(self, base: int) -> _Rows | None:
        """A new entry for this block, unless the budget is spent on newer blocks."""
        if self.nbytes >= self.budget and all(base < held for held in self._blocks):
            return None
        cached = self._blocks[base] = _Rows()
        return cached

    def _room(self, base: int, size: int) -> bool:
        """Make room for `size` more bytes of this block's by dropping older blocks; whether
        it fits."""
        while self.nbytes + size > self.budget:
            older = [held for held in self._blocks if held < base]
            if not older:
                return False
            self.forget(min(older))
        return True

    def forget(self, base: int) -> None:
        """Drop a block's rows (it left the log)."""
        cached = self._blocks.pop(base, None)
        if cached is not None:
            self.nbytes -= cached.nbytes

    def forget_below(self, base: int) -> None:
        """Drop the rows of every block starting below `base`."""
        for held in [held for held in self._blocks if held < base]:
            self.forget(held)

    def clear(self) -> None:
        """Drop everything (an erasure changed what lines say)."""
        self._blocks.clear()
        self.nbytes = 0
