"""The event log (a bounded ring buffer of shopping events) and the hub that fans frames out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from exporter.events import ShoppingEvent

ERASED = "(erased)"


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


def render_line(event: ShoppingEvent) -> str:
    """The JSON line for an event: time, type, shopper, bounded details and a human message."""
    body: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.at, UTC).isoformat(timespec="milliseconds"),
        "type": event.type,
        "userId": event.user_id,
        "userName": event.user_name,
    }
    body.update(event.props)
    body["message"] = event.message
    return orjson.dumps(body).decode()


class EventLog:
    """The last `capacity` shopping events, addressable by id and searchable by time in O(log n)."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ring: list[LoggedEvent | None] = [None] * capacity
        self._next_id = 1
        self._last_ns = 0
        self._floor = 1
        """Lowest id ever held since start (above 1 after a restore from a snapshot)."""

    def __len__(self) -> int:
        return min(self._next_id - 1, self.capacity)

    @property
    def last_id(self) -> int:
        """Id of the newest event, 0 when nothing was logged yet."""
        return self._next_id - 1

    @property
    def first_id(self) -> int:
        """Id of the oldest event still held (last_id + 1 when empty)."""
        return max(self._floor, self._next_id - self.capacity)

    def append(self, event: ShoppingEvent, ts_ns: int | None = None) -> LoggedEvent:
        """Log an event; the log time is now unless given, and never goes backwards."""
        now = time.time_ns() if ts_ns is None else ts_ns
        self._last_ns = max(now, self._last_ns + 1)
        logged = LoggedEvent(self._next_id, self._last_ns, event)
        self._ring[self._next_id % self.capacity] = logged
        self._next_id += 1
        return logged

    def get(self, event_id: int) -> LoggedEvent | None:
        """The event with this id, if the buffer still holds it."""
        if not self.first_id <= event_id <= self.last_id:
            return None
        return self._ring[event_id % self.capacity]

    def held(self, ids: list[int]) -> Iterator[LoggedEvent]:
        """The events with these ids (sorted either way) that the buffer still holds, in order.

        For readers with many ids at once (a stream index): the bounds are checked at the two
        ends, and the lookups run in C. The buffer must not change while the iterator is in use
        (no await in between).
        """
        if not ids:
            return iter(())
        first, last = self.first_id, self.last_id
        if min(ids[0], ids[-1]) < first or max(ids[0], ids[-1]) > last:
            ids = [i for i in ids if first <= i <= last]
        # Ids between first_id and last_id are always filled.
        positions = map(self.capacity.__rmod__, ids)
        return cast("Iterator[LoggedEvent]", map(self._ring.__getitem__, positions))

    def redact(self, user_id: str) -> int:
        """Replace a shopper's identity in every held event (erasure); returns how many."""
        erased = 0
        for i in range(self.first_id, self.last_id + 1):
            logged = self._at(i)
            if logged.event.user_id != user_id:
                continue
            event = logged.event._replace(user_id=ERASED, user_name=ERASED)
            self._ring[i % self.capacity] = LoggedEvent(logged.id, logged.ts_ns, event)
            erased += 1
        return erased

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
            for e in self.after(0)
        ]
        return {"nextId": self._next_id, "lastNs": self._last_ns, "events": rows}

    def import_state(self, state: dict[str, Any]) -> None:
        """Load exported events into this (empty) log; ids and times carry on from them."""
        rows = state["events"][-self.capacity :]
        self._next_id = int(state["nextId"])
        self._last_ns = int(state["lastNs"])
        self._floor = int(rows[0][0]) if rows else self._next_id
        for event_id, ts_ns, kind, user_id, user_name, at, props in rows:
            event = ShoppingEvent(kind, user_id, user_name, float(at), dict(props))
            self._ring[int(event_id) % self.capacity] = LoggedEvent(
                int(event_id), int(ts_ns), event
            )

    def _at(self, event_id: int) -> LoggedEvent:
        logged = self._ring[event_id % self.capacity]
        assert logged is not None  # ids between first_id and last_id are always filled
        return logged

    def after(self, event_id: int) -> Iterator[LoggedEvent]:
        """Events with an id above `event_id`, oldest first (what a resuming reader missed)."""
        for i in range(max(event_id + 1, self.first_id), self.last_id + 1):
            yield self._at(i)

    def _first_id_at_or_after(self, ts_ns: int) -> int:
        lo, hi = self.first_id, self.last_id + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self._at(mid).ts_ns < ts_ns:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def between(
        self, start_ns: int, end_ns: int, *, backward: bool = False
    ) -> Iterator[LoggedEvent]:
        """Events logged in [start_ns, end_ns), oldest first or newest first."""
        lo = self._first_id_at_or_after(start_ns)
        hi = self._first_id_at_or_after(end_ns)
        ids = range(hi - 1, lo - 1, -1) if backward else range(lo, hi)
        for i in ids:
            yield self._at(i)


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
        for sub in list(self._subscribers):
            sub._catch_up()
            sub.closed = True
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
