"""A run of logged events stored by column: a few bytes of arrays and a packed blob per event.

An event as Python objects (a tuple, a props dict, floats, boxed ints) costs most of a kilobyte;
the hour of events the log keeps would not fit. A block keeps each event as fixed-width columns
(log time, event time, and small indices into the block's own tables of types, shoppers and
props shapes, the keys of its details) plus the details' values packed as one JSON array in a
shared blob. Reading an event rebuilds it; writing never changes
what was written (erasure rewrites a table entry, not the events).
"""

from __future__ import annotations

import math
import sys
from array import array

import orjson

from exporter.events import ShoppingEvent

Shape = tuple[str, ...]
"""The props keys of an event, in order."""

_ROW_BYTES = 8 + 8 + 2 + 2 + 2 + 4
"""Column bytes of one event: log time, event time, type, shopper, shape, blob offset."""
_BLOCK_BYTES = 1024
"""What a block costs before its first event: its object, arrays, tables and blob headers."""
_TABLE_SLOT = 8
_LIMIT = 65_535
"""Distinct types, shoppers or shapes a block holds (the columns are 16-bit)."""


def _str_bytes(value: str) -> int:
    return sys.getsizeof(value) + _TABLE_SLOT


def _shape_bytes(shape: Shape) -> int:
    return sys.getsizeof(shape) + _TABLE_SLOT + sum(map(_str_bytes, shape))


class Block:
    """Events `base`, `base + 1`, … in columns; open for appends until sealed."""

    __slots__ = (
        "_kind_ix",
        "_shape_ix",
        "_user_ix",
        "at",
        "base",
        "blob",
        "kind_table",
        "kinds",
        "nbytes",
        "offsets",
        "shape_table",
        "shapes",
        "ts",
        "user_table",
        "users",
    )

    def __init__(self, base: int) -> None:
        self.base = base
        self.ts = array("q")
        self.at = array("d")
        self.kinds = array("H")
        self.users = array("H")
        self.shapes = array("H")
        self.offsets = array("I", [0])
        self.blob: bytes | bytearray = bytearray()
        self.kind_table: list[str] = []
        self.user_table: list[tuple[str, str]] = []
        self.shape_table: list[Shape] = []
        self._kind_ix: dict[str, int] | None = {}
        self._user_ix: dict[tuple[str, str], int] | None = {}
        self._shape_ix: dict[Shape, int] | None = {}
        self.nbytes = _BLOCK_BYTES
        """This block's estimated share of the process's memory (see `estimate`)."""

    @classmethod
    def sealed_from(
        cls,
        base: int,
        columns: tuple[array[int], array[float], array[int], array[int], array[int], array[int]],
        blob: bytes,
        tables: tuple[list[str], list[tuple[str, str]], list[Shape]],
    ) -> Block:
        """A sealed block from the parts `columns` and the tables gave (a snapshot's):
        (ts, at, kinds, users, shapes, offsets) and (kind, user, shape tables)."""
        block = cls(base)
        block.ts, block.at, block.kinds, block.users, block.shapes, block.offsets = columns
        block.blob = blob
        block.kind_table, block.user_table, block.shape_table = tables
        block._kind_ix = block._user_ix = block._shape_ix = None
        block.nbytes = block.estimate()
        return block

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def end(self) -> int:
        """The id after this block's last event."""
        return self.base + len(self.ts)

    @property
    def sealed(self) -> bool:
        return self._kind_ix is None

    def fits(self, event: ShoppingEvent) -> bool:
        """Whether the open block's tables have room for this event's new entries."""
        return (
            self._kind_ix is not None
            and len(self.kind_table) < _LIMIT
            and len(self.user_table) < _LIMIT
            and len(self.shape_table) < _LIMIT
        )

    def add(self, ts_ns: int, event: ShoppingEvent) -> int:
        """Append an event (the block must be open and `fits` it); the bytes it added."""
        kind_ix, user_ix, shape_ix = self._kind_ix, self._user_ix, self._shape_ix
        assert kind_ix is not None, "a sealed block takes no more events"
        assert user_ix is not None
        assert shape_ix is not None
        added = _ROW_BYTES
        kind = kind_ix.get(event.type)
        if kind is None:
            kind = kind_ix[event.type] = len(self.kind_table)
            self.kind_table.append(event.type)
            added += _str_bytes(event.type)
        who = (event.user_id, event.user_name)
        user = user_ix.get(who)
        if user is None:
            user = user_ix[who] = len(self.user_table)
            self.user_table.append(who)
            # The strings are usually the store's own (shared); counted anyway, to stay an
            # upper bound when the store has forgotten the shopper.
            added += 64 + _str_bytes(event.user_id) + _str_bytes(event.user_name)
        props = event.props
        shape_key = tuple(props)
        shape = shape_ix.get(shape_key)
        if shape is None:
            shape = shape_ix[shape_key] = len(self.shape_table)
            self.shape_table.append(shape_key)
            added += _shape_bytes(shape_key)
        # The values in one C call; the keys are the shape's.
        packed = orjson.dumps(list(props.values()))
        blob = self.blob
        assert isinstance(blob, bytearray)
        blob += packed
        added += len(packed)
        self.ts.append(ts_ns)
        self.at.append(event.at)
        self.kinds.append(kind)
        self.users.append(user)
        self.shapes.append(shape)
        self.offsets.append(len(blob))
        self.nbytes += added
        return added

    def seal(self) -> int:
        """Close the block to appends and drop what only appends needed; the bytes freed."""
        if self._kind_ix is None:
            return 0
        self._kind_ix = self._user_ix = self._shape_ix = None
        self.blob = bytes(self.blob)  # exact size, no room left for growth
        before = self.nbytes
        self.nbytes = self.estimate()
        return before - self.nbytes

    def estimate(self) -> int:
        """The block's size from its parts (arrays, blob, tables and their strings)."""
        size = _BLOCK_BYTES + len(self.blob)
        size += len(self.ts) * _ROW_BYTES
        size += sum(map(_str_bytes, self.kind_table))
        size += sum(64 + _str_bytes(a) + _str_bytes(b) for a, b in self.user_table)
        size += sum(map(_shape_bytes, self.shape_table))
        return size

    def event(self, position: int) -> ShoppingEvent:
        """The event at this position (0 = `base`), rebuilt from the columns."""
        shape = self.shape_table[self.shapes[position]]
        values = orjson.loads(self.blob[self.offsets[position] : self.offsets[position + 1]])
        props = dict(zip(shape, values, strict=True))
        user_id, user_name = self.user_table[self.users[position]]
        kind = self.kind_table[self.kinds[position]]
        return ShoppingEvent(kind, user_id, user_name, self.at[position], props)

    def numbers(self, name: str, start: int, stop: int) -> list[float]:
        """Detail `name` of the events at positions [start, stop) as floats: NaN where it is
        missing or not a JSON number (a string, a bool, an object, null)."""
        where = [shape.index(name) if name in shape else -1 for shape in self.shape_table]
        out: list[float] = []
        blob, offsets, shapes = self.blob, self.offsets, self.shapes
        nan = math.nan
        for position in range(start, stop):
            at = where[shapes[position]]
            if at < 0:
                out.append(nan)
                continue
            value = orjson.loads(blob[offsets[position] : offsets[position + 1]])[at]
            kind = type(value)
            out.append(float(value) if kind is float or kind is int else nan)
        return out

    def redact(self, user_id: str, since: int, erased: str) -> int:
        """Name this shopper `erased` in the block's events from id `since`; how many."""
        count = 0
        for ix, (uid, _name) in enumerate(self.user_table):
            if uid != user_id:
                continue
            who = self.user_table[ix]
            self.user_table[ix] = (erased, erased)
            if self._user_ix is not None:
                # The shopper's next event (if any) gets an entry of its own.
                self._user_ix.pop(who, None)
            skip = max(0, since - self.base)
            count += self.users[skip:].count(ix)
        return count
