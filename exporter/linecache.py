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

Facets = tuple[str, Any, Any]
"""An event's type, activity and membership (what its stream is made of)."""
Row = tuple[str, Facets]
"""An event's line and its facets."""

_SLOT = 8
"""A pointer in one of a block's lists (lines, facets)."""


class _Rows:
    """One block's cached lines and facets, by position (None: not rendered yet). Two lists,
    not one of pairs: a scan reads every line but the facets of the few that pass, and a pair
    would be one more object to fetch from memory per line."""

    __slots__ = ("facets", "lines", "nbytes", "numbers", "shared")

    def __init__(self) -> None:
        self.nbytes = 0
        self.numbers: dict[str, list[float]] = {}
        """Numeric details by name, by position (see Block.numbers)."""
        self.lines: list[str | None] = []
        self.facets: list[Facets | None] = []
        self.shared: dict[Facets, Facets] = {}
        """Each distinct facets tuple once: a block's events share a few dozen."""


_FLOAT = 24
_NAMES = 4
"""Numeric details cached per block: queries filter on a few (cartValue, itemsInCart)."""
_NO_LINES: list[str | None] = []
_NO_FACETS: list[Facets | None] = []


class LineCache:
    """Lines of events by (block base, position), newest blocks first, within `budget` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.nbytes = 0
        self._blocks: dict[int, _Rows] = {}

    def get(self, base: int, position: int) -> Row | None:
        """The cached line and facets of the event at `position` of the block at `base`."""
        cached = self._blocks.get(base)
        if cached is None or position >= len(cached.lines):
            return None
        line = cached.lines[position]
        if line is None:
            return None
        facets = cached.facets[position]
        assert facets is not None  # set together with the line
        return line, facets

    def lines(self, base: int) -> list[str | None]:
        """The block's cached lines by position (empty when none; not to be changed)."""
        cached = self._blocks.get(base)
        return _NO_LINES if cached is None else cached.lines

    def facets(self, base: int) -> list[Facets | None]:
        """The block's cached facets by position, beside `lines` (not to be changed)."""
        cached = self._blocks.get(base)
        return _NO_FACETS if cached is None else cached.facets

    def put(self, base: int, length: int, position: int, row: Row) -> Row:
        """Keep a rendered row (of a block holding `length` events) if its block is admitted
        and there is room; returns the row, its facets shared with the block's other rows."""
        cached = self._blocks.get(base)
        if cached is None:
            cached = self._admit(base)
            if cached is None:
                return row
        lines = cached.lines
        if position < len(lines):
            kept = lines[position]
            if kept is not None:
                facets = cached.facets[position]
                assert facets is not None
                return kept, facets
        line, facets = row
        try:
            shared = cached.shared.get(facets)
            hashable = True
        except TypeError:  # odd details (a dict as activity) are not shared, just kept
            shared, hashable = None, False
        added = max(0, length - len(lines)) * 2 * _SLOT + sys.getsizeof(line)
        if shared is None:
            added += sys.getsizeof(facets) + sum(map(sys.getsizeof, facets))
        if not self._room(base, added):
            return row
        if shared is None:
            shared = facets
            if hashable:
                cached.shared[facets] = facets
        if len(lines) < length:  # the open block grows: its lists follow
            grow = length - len(lines)
            lines.extend([None] * grow)
            cached.facets.extend([None] * grow)
        lines[position] = line
        cached.facets[position] = shared
        cached.nbytes += added
        self.nbytes += added
        return line, shared

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
