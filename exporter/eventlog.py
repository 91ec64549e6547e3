"""The event log (shopping events bounded by age, memory and count) and the hub of live frames."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import compress, repeat
from operator import ne, neg, or_, sub
from typing import Any, TypeVar, cast

import orjson

from exporter.eventblock import Block
from exporter.events import ShoppingEvent
from exporter.linecache import Facets, LineCache, Row

ERASED = "(erased)"
_T = TypeVar("_T")


class LoggedEvent:
    """A shopping event as the log holds it: a unique increasing id and a nanosecond log time."""

    __slots__ = ("_line", "event", "id", "ts_ns")

    def __init__(self, event_id: int, ts_ns: int, event: ShoppingEvent) -> None:
        self.id = event_id
        self.ts_ns = ts_ns
        """When the log received it (strictly increasing with `id`, so both orders agree)."""
        self.event = event
        self._line: str | None = None

    @property
    def line(self) -> str:
        """The event as one JSON object: what SSE, WebSocket and Loki readers get.

        Rendered on first use, so events nobody reads cost nothing to serialise.
        """
        if self._line is None:
            self._line = render_line(self.event)
        return self._line

    def __eq__(self, other: object) -> bool:
        # The log rebuilds events when read: two reads of one event are equal, not identical.
        if not isinstance(other, LoggedEvent):
            return NotImplemented
        return (self.id, self.ts_ns, self.event) == (other.id, other.ts_ns, other.event)

    def __hash__(self) -> int:
        return hash((self.id, self.ts_ns))


_SECONDS: dict[float, str] = {}
"""The ISO date and time of whole seconds lately rendered: events of one second share it."""


def iso_millis(at: float) -> str:
    """`datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")`, a few times faster.

    The microseconds are rounded as CPython rounds them (half to even, on the fraction that
    `math.modf` splits off), then cut to milliseconds, as `isoformat` does.
    """
    fraction, whole = math.modf(at)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole += 1.0
        micros -= 1_000_000
    elif micros < 0:
        whole -= 1.0
        micros += 1_000_000
    prefix = _SECONDS.get(whole)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[whole] = datetime.fromtimestamp(whole, UTC).isoformat()[:19]
    return f"{prefix}.{micros // 1000:03d}+00:00"


def _positions(ids: Sequence[int], base: int) -> list[int]:
    """Positions in the block starting at `base` of these ids (a subtraction each, in C)."""
    return list(map(sub, ids, repeat(base)))


def _cached_at(cached: list[_T | None], ids: Sequence[int], base: int) -> list[_T | None]:
    """What a block's cache list holds for these (sorted) ids of the block starting at
    `base`; all None when the list stops short of them (the cache did not take the block,
    or not all of it yet). The positions are never held in a list of their own."""
    if max(ids[0], ids[-1]) - base < len(cached):
        return list(map(cached.__getitem__, map(sub, ids, repeat(base))))
    return [None] * len(ids)


def facets_of(event: ShoppingEvent) -> Facets:
    """What an event's stream is made of: its type, activity and membership."""
    props = event.props
    return event.type, props.get("activity"), props.get("membership")


def render_line(event: ShoppingEvent) -> str:
    """The JSON line for an event: time, type, shopper, bounded details and a human message."""
    body: dict[str, Any] = {
        "time": iso_millis(event.at),
        "type": event.type,
        "userId": event.user_id,
        "userName": event.user_name,
    }
    body.update(event.props)
    body["message"] = event.message
    return orjson.dumps(body).decode()


LINE_CACHE_BYTES = 64 * 2**20
"""The line cache of a log bounded by neither bytes nor count given otherwise."""


class EventLog:
    """Shopping events addressable by id and searchable by time in O(log n), bounded three ways.

    Events leave oldest first when any bound is reached: older than `retention_ns`, more than
    `capacity` of them, or more than `max_bytes` by the log's own estimate of its memory. Held
    events are stored compactly (exporter.eventblock) and rebuilt when read; memory returns a
    block at a time, so the byte bound frees whole blocks (a block is sealed early once it
    holds an eighth of `max_bytes`, so one never holds much of it).
    """

    def __init__(
        self,
        capacity: int | None = 10_000,
        *,
        retention_ns: int | None = None,
        max_bytes: int | None = None,
        block_size: int = 16_384,
        clock: Callable[[], int] = time.time_ns,
        line_cache_bytes: int | None = None,
    ) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be at least 1")
        if retention_ns is not None and retention_ns <= 0:
            raise ValueError("retention must be above 0")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.capacity = capacity
        self.retention_ns = retention_ns
        self.max_bytes = max_bytes
        self.block_size = block_size
        self.clock = clock
        self._blocks: list[Block] = []
        self._bases: list[int] = []
        self._next_id = 1
        self._last_ns = 0
        self._first = 1
        """Lowest id held (last_id + 1 when empty)."""
        self._bytes = 0
        self.evicted = {"age": 0, "bytes": 0, "count": 0}
        """Events that left the log, by the bound that made them leave."""
        if line_cache_bytes is None:
            line_cache_bytes = LINE_CACHE_BYTES if max_bytes is None else max_bytes // 4
        self._lines = LineCache(line_cache_bytes)
        """Lines rendered lately (the newest blocks'), counted in `nbytes`."""

    def __len__(self) -> int:
        return self._next_id - self._first

    @property
    def last_id(self) -> int:
        """Id of the newest event, 0 when nothing was logged yet."""
        return self._next_id - 1

    @property
    def last_ns(self) -> int:
        """Log time of the newest event (0 when nothing was logged yet)."""
        return self._last_ns

    @property
    def first_id(self) -> int:
        """Id of the oldest event still held (last_id + 1 when empty)."""
        return self._first

    @property
    def nbytes(self) -> int:
        """The log's estimate of the memory its held events take (their cached lines too)."""
        return self._bytes + self._lines.nbytes

    def append(self, event: ShoppingEvent, ts_ns: int | None = None) -> LoggedEvent:
        """Log an event; the log time is now unless given, and never goes backwards."""
        now = self.clock() if ts_ns is None else ts_ns
        self._last_ns = max(now, self._last_ns + 1)
        logged = LoggedEvent(self._next_id, self._last_ns, event)
        self._store(logged.id, logged.ts_ns, event)
        self._next_id += 1
        self._enforce(now)
        return logged

    def _store(self, event_id: int, ts_ns: int, event: ShoppingEvent) -> None:
        blocks = self._blocks
        block = blocks[-1] if blocks else None
        if block is None or block.sealed or not block.fits(event):
            if block is not None:
                self._bytes -= block.seal()
            block = Block(event_id)
            blocks.append(block)
            self._bases.append(event_id)
            self._bytes += block.nbytes
        self._bytes += block.add(ts_ns, event)
        if len(block) >= self.block_size or (
            self.max_bytes is not None and block.nbytes * 8 >= self.max_bytes
        ):
            self._bytes -= block.seal()

    def expire(self, now_ns: int | None = None) -> int:
        """Let go of events past the retention (as of now); how many left."""
        return self._enforce(self.clock() if now_ns is None else now_ns)

    def _enforce(self, now_ns: int) -> int:
        before = self._first
        if self.capacity is not None and len(self) > self.capacity:
            self._drop_below(self._next_id - self.capacity, "count")
        if self.retention_ns is not None and len(self) > 0:
            oldest_kept = now_ns - self.retention_ns
            if self._ts(self._first) < oldest_kept:
                self._drop_below(self._first_id_at_or_after(oldest_kept), "age")
        if self.max_bytes is not None:
            while self.nbytes > self.max_bytes and len(self._blocks) > 1:
                self._drop_below(self._blocks[1].base, "bytes")
        return self._first - before

    def _drop_below(self, event_id: int, why: str) -> None:
        """Forget every event with an id below `event_id`; whole blocks free their memory."""
        event_id = min(event_id, self._next_id)
        if event_id <= self._first:
            return
        self.evicted[why] += event_id - self._first
        self._first = event_id
        blocks = self._blocks
        gone = 0
        while gone < len(blocks) and blocks[gone].end <= event_id and blocks[gone].sealed:
            self._bytes -= blocks[gone].nbytes
            gone += 1
        if gone:
            self._lines.forget_below(blocks[gone - 1].end)
            del blocks[:gone]
            del self._bases[:gone]

    def _block_of(self, event_id: int) -> Block:
        return self._blocks[bisect_right(self._bases, event_id) - 1]

    def _ts(self, event_id: int) -> int:
        block = self._block_of(event_id)
        return block.ts[event_id - block.base]

    def _at(self, event_id: int) -> LoggedEvent:
        """The held event with this id (it must lie between first_id and last_id)."""
        block = self._block_of(event_id)
        position = event_id - block.base
        return LoggedEvent(event_id, block.ts[position], block.event(position))

    def get(self, event_id: int) -> LoggedEvent | None:
        """The event with this id, if the log still holds it."""
        if not self.first_id <= event_id <= self.last_id:
            return None
        return self._at(event_id)

    def held(self, ids: list[int]) -> Iterator[LoggedEvent]:
        """The events with these ids (sorted either way) that the log still holds, in order.

        For readers with many ids at once (a stream index). The log must not change while
        the iterator is in use (no await in between).
        """
        first, last = self.first_id, self.last_id
        block: Block | None = None
        for event_id in ids:
            if not first <= event_id <= last:
                continue
            if block is None or not block.base <= event_id < block.end:
                block = self._block_of(event_id)
            position = event_id - block.base
            yield LoggedEvent(event_id, block.ts[position], block.event(position))

    def read(self, ids: Sequence[int]) -> tuple[list[int], list[str], list[Facets]]:
        """Log times, lines and facets of the held events with these ids (sorted either way),
        in their order."""
        held, lines = self.lines(ids)
        stamps, facets = self.details(held)
        return stamps, lines, facets

    def lines(self, ids: Sequence[int]) -> tuple[list[int], list[str]]:
        """The held ids among these (sorted either way) and their lines, in their order.

        What a log query's scan reads first: lines come from the cache of the newest blocks'
        lines, or are rendered and kept there; log times and facets (`details`) are read only
        for the lines its filters keep. A run of ids (a `range`, either way) is read a
        block-slice at a time.
        """
        if isinstance(ids, range) and ids.step in (1, -1):
            return self._run_lines(ids)
        pieces = [(piece, self._lines_of(block, piece)) for block, piece in self._by_block(ids)]
        if len(pieces) == 1:  # the usual slice, inside one block: no list copied
            piece, found = pieces[0]
            return piece if isinstance(piece, list) else list(piece), found
        held: list[int] = []
        lines: list[str] = []
        for piece, found in pieces:
            held += piece
            lines += found
        return held, lines

    def _lines_of(self, block: Block, ids: Sequence[int]) -> list[str]:
        """The lines of these ids of the block (sorted either way), rendered when not cached."""
        found = _cached_at(self._lines.lines(block.base), ids, block.base)
        if not all(found):  # some were not cached: only then are their positions needed
            self._fill(block, _positions(ids, block.base), found)
        return cast("list[str]", found)

    def details(self, ids: Sequence[int]) -> tuple[list[int], list[Facets]]:
        """Log times and facets of held events (ids sorted either way, as `lines` gave them)."""
        stamps: list[int] = []
        facets: list[Facets] = []
        for block, piece in self._by_block(ids):
            base = block.base
            stamps += map(block.ts.__getitem__, map(sub, piece, repeat(base)))
            found = _cached_at(self._lines.facets(base), piece, base)
            if not all(found):  # lines of a block the cache did not take
                positions = _positions(piece, base)
                for n, kept in enumerate(found):
                    if kept is None:
                        found[n] = facets_of(block.event(positions[n]))
            facets += cast("list[Facets]", found)
        return stamps, facets

    def _by_block(self, ids: Sequence[int]) -> Iterator[tuple[Block, Sequence[int]]]:
        """The held ids of a sorted list (either way), cut into runs that share a block."""
        first, last = self.first_id, self.last_id
        if not ids:
            return
        if not (first <= ids[0] <= last and first <= ids[-1] <= last):
            ids = [event_id for event_id in ids if first <= event_id <= last]
            if not ids:
                return
        block = self._block_of(ids[0])
        if block.base <= ids[-1] < block.end:  # the usual slice: all in one block
            yield block, ids
            return
        ascending = ids[0] < ids[-1]
        at = 0
        while at < len(ids):
            block = self._block_of(ids[at])
            if ascending:
                stop = bisect_left(ids, block.end, at)
            else:  # the first id below the block's base, in a descending list
                stop = bisect_left(ids, -block.base + 1, at, key=neg)
            yield block, ids[at:stop]
            at = stop

    def numbers_pass(
        self, ids: Sequence[int], name: str, keeps: Callable[[float, float], bool], limit: float
    ) -> list[int]:
        """The held ids among these (in their order) but those whose detail `name` is a JSON
        number failing `keeps(number, limit)`; a missing or non-numeric detail is kept."""
        held: list[int] = []
        values: list[float] = []
        if isinstance(ids, range) and ids.step in (1, -1):
            for block, start, stop in self._pieces(ids):
                piece = self._lines.numbers(block, name, start, stop)
                piece_ids = list(range(block.base + start, block.base + stop))
                if ids.step == -1:
                    piece.reverse()
                    piece_ids.reverse()
                held += piece_ids
                values += piece
        else:
            first, last = self.first_id, self.last_id
            held = [i for i in ids if first <= i <= last]
            column: list[float] = []
            base = end = 0
            for event_id in held:
                if not base <= event_id < end:
                    # The ids of this list that lie in the block, read as one slice.
                    current = self._block_of(event_id)
                    base, end = current.base, current.end
                    inside = [i - base for i in held if base <= i < end]
                    low, high = min(inside), max(inside) + 1
                    column = self._lines.numbers(current, name, low, high)
                    base_at = base + low
                values.append(column[event_id - base_at])
        # NaN (not a number) is never equal to itself: those ids are kept.
        verdicts = map(or_, map(ne, values, values), map(keeps, values, repeat(limit)))
        return list(compress(held, verdicts))

    def _pieces(self, ids: range) -> list[tuple[Block, int, int]]:
        """(block, start, stop) positions of the held ids of a run (step 1 or -1), in its
        order (each piece ascending)."""
        lo, hi = (ids.start, ids.stop) if ids.step == 1 else (ids.stop + 1, ids.start + 1)
        lo, hi = max(lo, self.first_id), min(hi, self._next_id)
        pieces: list[tuple[Block, int, int]] = []
        if lo >= hi:
            return pieces
        index = bisect_right(self._bases, lo) - 1
        for block in self._blocks[index:]:
            if block.base >= hi:
                break
            base = block.base
            pieces.append((block, max(lo, base) - base, min(hi, block.end) - base))
        if ids.step == -1:
            pieces.reverse()
        return pieces

    def _run_lines(self, ids: range) -> tuple[list[int], list[str]]:
        held: list[int] = []
        lines: list[str] = []
        for block, start, stop in self._pieces(ids):
            found = self._lines.lines(block.base)[start:stop]
            if len(found) < stop - start:
                found.extend([None] * (stop - start - len(found)))
            self._fill(block, range(start, stop), found)
            piece = range(block.base + start, block.base + stop)
            if ids.step == -1:
                piece = piece[::-1]
                found.reverse()
            held += piece
            lines += cast("list[str]", found)
        return held, lines

    def _fill(self, block: Block, positions: Sequence[int], lines: list[str | None]) -> None:
        """Render the lines the cache did not have (None), in place, keeping them if it can."""
        if all(lines):  # a line is never empty; truth is a quicker test than `None in`
            return
        for n, line in enumerate(lines):
            if line is None:
                lines[n] = self._row(block, positions[n])[0]

    def _row(self, block: Block, position: int) -> Row:
        """The cached row of an event, or its line rendered now (and kept if there is room)."""
        row = self._lines.get(block.base, position)
        if row is None:
            event = block.event(position)
            row = (render_line(event), facets_of(event))
            row = self._lines.put(block.base, len(block), position, row)
        return row

    def redact(self, user_id: str) -> int:
        """Replace a shopper's identity in every held event (erasure); returns how many."""
        self._lines.clear()  # rendered lines may name the shopper
        return sum(block.redact(user_id, self._first, ERASED) for block in self._blocks)

    def blocks(self) -> tuple[Block, ...]:
        """The blocks held, oldest first (the first may begin below `first_id`): for snapshots,
        which are written where the log does not change meanwhile."""
        return tuple(self._blocks)

    def adopt(self, blocks: Sequence[Block], first: int, next_id: int, last_ns: int) -> None:
        """Hold these blocks (from a snapshot; this log must be empty) with events from `first`
        on; ids and times carry on from `next_id` and `last_ns`. The bounds apply at once."""
        self._blocks = list(blocks)
        self._bases = [block.base for block in blocks]
        self._bytes = sum(block.nbytes for block in blocks)
        self._next_id = next_id
        self._last_ns = last_ns
        self._first = max(first, blocks[0].base) if blocks else next_id
        self._enforce(self.clock())

    def export_state(self) -> dict[str, Any]:
        """The held events as plain data, for snapshots."""
        rows = [
            [
                e.id,
                e.ts_ns,
                e.event.type,
                e.event.user_id,
                e.event.user_name,
                e.event.at,
                e.event.props,
            ]
            for e in self._walk(self._first, self._next_id)
        ]
        return {"nextId": self._next_id, "lastNs": self._last_ns, "events": rows}

    def import_state(self, state: dict[str, Any]) -> None:
        """Load exported events into this (empty) log; ids and times carry on from them.

        The bounds apply at once: events past the retention or beyond the other bounds leave.
        """
        rows = state["events"]
        if self.capacity is not None:
            rows = rows[-self.capacity :]
        next_id = int(state["nextId"])
        self._first = int(rows[0][0]) if rows else next_id
        for event_id, ts_ns, kind, user_id, user_name, at, props in rows:
            event = ShoppingEvent(kind, user_id, user_name, float(at), dict(props))
            self._store(int(event_id), int(ts_ns), event)
            self._next_id = int(event_id) + 1
            if self.max_bytes is not None and self._bytes > self.max_bytes:
                self._enforce(self.clock())
        self._next_id = next_id
        self._last_ns = int(state["lastNs"])
        self._enforce(self.clock())

    def _walk(self, lo: int, hi: int) -> Iterator[LoggedEvent]:
        """Held events with ids in [lo, hi), oldest first."""
        lo = max(lo, self._first)
        if lo >= hi:
            return
        index = bisect_right(self._bases, lo) - 1
        for block in self._blocks[index:]:
            if block.base >= hi:
                break
            ts, base = block.ts, block.base
            for position in range(max(lo, base) - base, min(hi, block.end) - base):
                yield LoggedEvent(base + position, ts[position], block.event(position))

    def after(self, event_id: int) -> Iterator[LoggedEvent]:
        """Events with an id above `event_id`, oldest first (what a resuming reader missed)."""
        self.expire()
        return self._walk(event_id + 1, self._next_id)

    def _first_id_at_or_after(self, ts_ns: int) -> int:
        """The id of the first held event logged at or after `ts_ns` (last_id + 1 if none)."""
        blocks = self._blocks
        lo, hi = 0, len(blocks)
        while lo < hi:  # the last block whose first event is before ts_ns
            mid = (lo + hi) // 2
            if blocks[mid].ts[0] < ts_ns:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return self._first
        block = blocks[lo - 1]
        found = block.base + bisect_left(block.ts, ts_ns)
        return max(found, self._first)

    def between(
        self, start_ns: int, end_ns: int, *, backward: bool = False
    ) -> Iterator[LoggedEvent]:
        """Events logged in [start_ns, end_ns), oldest first or newest first."""
        self.expire()
        lo = self._first_id_at_or_after(start_ns)
        hi = self._first_id_at_or_after(end_ns)
        return self._walk_back(lo, hi) if backward else self._walk(lo, hi)

    def _walk_back(self, lo: int, hi: int) -> Iterator[LoggedEvent]:
        """Held events with ids in [lo, hi), newest first."""
        lo = max(lo, self._first)
        if lo >= hi:
            return
        index = bisect_right(self._bases, hi - 1) - 1
        for block in reversed(self._blocks[: index + 1]):
            if block.end <= lo:
                break
            ts, base = block.ts, block.base
            for position in range(min(hi, block.end) - base - 1, max(lo, base) - base - 1, -1):
                yield LoggedEvent(base + position, ts[position], block.event(position))

    def span_ids(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """(first, last) ids of the held events logged in [start_ns, end_ns)."""
        self.expire()
        return self._first_id_at_or_after(start_ns), self._first_id_at_or_after(end_ns) - 1


class Frame:
    """A live message: `kind` is event, user_metric or summary; `id` the event-log position.

    `data` (its JSON) is either given or rendered from `source` by `render` when first read,
    then kept: frames nobody reads, such as those falling off a stalled reader's backlog, are
    never serialised. What bodies publish are seeds of frames (`Published`), made Frames by
    the hub when first read.
    """

    __slots__ = ("_data", "_encoded", "_render", "_source", "id", "kind", "user_id")

    def __init__(
        self,
        kind: str,
        id: int,
        data: str | None = None,
        user_id: str | None = None,
        source: Any = None,
        render: Callable[[Any], str] | None = None,
    ) -> None:
        if data is None and render is None:
            raise ValueError("a frame needs its data or a way to render it")
        self.kind = kind
        self.id = id
        self.user_id = user_id
        self._data = data
        self._source = source
        self._render = render
        self._encoded: dict[str, bytes] | None = None

    @property
    def data(self) -> str:
        """The frame's JSON, rendered on first read (from what was captured at publish)."""
        data = self._data
        if data is None:
            assert self._render is not None  # __init__ requires one of the two
            data = self._data = self._render(self._source)
            self._source = self._render = None  # the snapshot is no longer needed
        return data

    def encoded(self, wire: str, encode: Callable[[Frame], bytes]) -> bytes:
        """The frame's bytes on `wire` (SSE, WebSocket), encoded on first use and kept: one
        frame goes to many readers."""
        cache = self._encoded
        if cache is None:
            cache = self._encoded = {}
        found = cache.get(wire)
        if found is None:
            found = cache[wire] = encode(self)
        return found

    def __repr__(self) -> str:
        return f"Frame({self.kind!r}, {self.id!r}, user_id={self.user_id!r})"


def _event_data(logged: LoggedEvent) -> str:
    return f'{{"id":{logged.id},{logged.line[1:]}'


FrameSeed = tuple[str, int, "str | None", Any, Callable[[Any], str]]
"""A frame as published: (kind, id, user_id, source, render). Frames are published for every
update while anyone listens and most are never read (a stalled reader's), so what is published
is a plain tuple, quick to make and to collect; the hub makes the Frame when one is first read."""

Published = Frame | FrameSeed | LoggedEvent
"""What the hub holds: a frame, a seed of one, or a logged event (its own seed)."""


def event_frame(logged: LoggedEvent) -> Frame:
    """The live frame of a logged event; its JSON is rendered when a reader first takes it."""
    return Frame("event", logged.id, None, logged.event.user_id, logged, _event_data)


class Subscription:
    """A reader of the hub with a bounded backlog: fall behind and the oldest frames are dropped."""

    def __init__(self, hub: Hub, cursor: int, max_backlog: int) -> None:
        self._hub = hub
        self._cursor = cursor
        self.max_backlog = max_backlog
        self._dropped = 0
        self.closed = False

    @property
    def backlog(self) -> int:
        """Frames published, not yet read and still readable (at most `max_backlog`)."""
        return min(self._hub.published - self._cursor, self.max_backlog)

    @property
    def overflow(self) -> int:
        """Frames already lost by a reader that is behind, though it has not read since."""
        return max(0, self._hub.published - self._cursor - self.max_backlog)

    @property
    def dropped(self) -> int:
        """Frames this reader lost; counted as they fall off, not when it reads again."""
        return self._dropped + self.overflow

    def _catch_up(self) -> None:
        lost = self.overflow
        if lost:
            self._cursor += lost
            self._dropped += lost
            self._hub._dropped += lost

    def pending(self) -> list[Frame]:
        """Frames waiting for this reader, without waiting; marks them read."""
        self._catch_up()
        frames = self._hub._slice(self._cursor)
        self._cursor = self._hub.published
        return frames

    async def next_batch(self, wait: float | None = None) -> list[Frame]:
        """Wait up to `wait` s for a frame (or close), then return every frame waiting."""
        if self._cursor == self._hub.published and not self.closed:
            waiter = self._hub._ensure_waiter()
            try:
                await asyncio.wait_for(asyncio.shield(waiter), wait)
            except TimeoutError:
                return []
        return self.pending()

    def close(self) -> None:
        """Stop reading; the hub forgets this reader (what it had lost stays counted)."""
        self._catch_up()
        self.closed = True
        self._hub._subscribers.discard(self)


class Hub:
    """Fans live frames out to any number of readers; publishing is O(1) and never waits.

    Frames sit in one shared ring; each reader holds only a cursor, so a stalled reader costs
    nothing until it reads again, and then loses what fell off its bounded backlog (counted).
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._ring: list[Published | None] = [None] * capacity
        self._framed = 0
        """Published positions below this hold Frames (seeds above it are made Frames when
        first read)."""
        self.published = 0
        self._dropped = 0
        self._subscribers: set[Subscription] = set()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    @property
    def subscribers(self) -> int:
        """How many readers are attached now."""
        return len(self._subscribers)

    @property
    def dropped_frames(self) -> int:
        """Frames lost by readers that fell behind, including stalled readers that have not
        read since (so a reader stuck on a dead connection shows up at once)."""
        return self._dropped + sum(sub.overflow for sub in self._subscribers)

    def subscribe(self, max_backlog: int | None = None) -> Subscription:
        """A new reader that starts at the next frame published."""
        backlog = self.capacity if max_backlog is None else min(max_backlog, self.capacity)
        sub = Subscription(self, self.published, backlog)
        self._subscribers.add(sub)
        return sub

    def _ensure_waiter(self) -> asyncio.Future[None]:
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def publish(self, frame: Frame) -> None:
        """Add a frame and wake every waiting reader."""
        self._ring[self.published % self.capacity] = frame
        self.published += 1
        self._wake()

    def publish_many(self, frames: Sequence[Published]) -> None:
        """Add frames in order (all that one body made), waking readers once."""
        capacity = self.capacity
        if len(frames) > capacity:
            # Only the newest fit; the others are lost to every reader, and counted so.
            self.published += len(frames) - capacity
            frames = frames[-capacity:]
        start = self.published % capacity
        end = start + len(frames)
        if end <= capacity:
            self._ring[start:end] = frames
        else:
            fits = capacity - start
            self._ring[start:] = frames[:fits]
            self._ring[: end - capacity] = frames[fits:]
        self.published += len(frames)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            # Readers make the next waiter when they wait: none is made per frame.
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def changed(self, wait: float | None = None) -> None:
        """Wait up to `wait` seconds for the next frame (or the shutdown), without reading:
        for a writer that serves many readers in one pass."""
        if self.closed:
            return
        waiter = self._ensure_waiter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), wait)

    def close_all(self) -> None:
        """Wake every reader for the last time (shutdown)."""
        self.closed = True
        for subscription in list(self._subscribers):
            subscription._catch_up()
            subscription.closed = True
        self._subscribers.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _slice(self, cursor: int) -> list[Frame]:
        # List slices, not a loop: every reader takes its slice on every wake.
        if self._framed < self.published:
            self._make_frames()
        start, end = cursor % self.capacity, self.published % self.capacity
        if cursor == self.published:
            frames: list[Published | None] = []
        elif start < end:
            frames = self._ring[start:end]
        else:
            frames = self._ring[start:] + self._ring[:end]
        return cast("list[Frame]", frames)  # published positions are always filled, and framed

    def _make_frames(self) -> None:
        """Make Frames of what was published since the last read, once for all readers."""
        ring, capacity = self._ring, self.capacity
        for position in range(max(self._framed, self.published - capacity), self.published):
            entry = ring[position % capacity]
            if type(entry) is LoggedEvent:
                ring[position % capacity] = event_frame(entry)
            elif type(entry) is tuple:
                kind, frame_id, user_id, source, render = entry
                ring[position % capacity] = Frame(kind, frame_id, None, user_id, source, render)
        self._framed = self.published
