"""What a live subscriber (SSE or WebSocket) reads: on resume, the events it missed and the state
of every shopper changed since; then live frames."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Final

from exporter.eventlog import EventLog, Frame, Hub, event_frame

FRAME_KINDS = ("user_metric", "event", "summary")


class FilterError(ValueError):
    """A subscription asked for something that does not exist (an unknown frame type)."""


@dataclass(frozen=True, slots=True)
class FrameFilter:
    """Which frames a subscriber wants: by kind, and by shopper for shopper frames.

    `user` narrows event and user_metric frames to one shopper; summary frames are about the
    whole shop, so only `kinds` decides whether they are sent.
    """

    kinds: frozenset[str] = frozenset(FRAME_KINDS)
    user: str | None = None

    @classmethod
    def parse(cls, kinds: Iterable[str] | None, user: str | None) -> FrameFilter:
        """A filter from request values; raises FilterError for unknown kinds."""
        wanted = frozenset(FRAME_KINDS) if kinds is None else frozenset(kinds)
        unknown = sorted(wanted - set(FRAME_KINDS))
        if unknown:
            raise FilterError(
                f"unknown frame type(s) {', '.join(unknown)}; known: {', '.join(FRAME_KINDS)}"
            )
        if not wanted:
            raise FilterError("no frame type asked for")
        return cls(wanted, user or None)

    @property
    def everything(self) -> bool:
        return self.user is None and len(self.kinds) == len(FRAME_KINDS)

    def matches(self, frame: Frame) -> bool:
        if frame.kind not in self.kinds:
            return False
        return self.user is None or frame.user_id is None or frame.user_id == self.user


def split_kinds(value: str | None) -> list[str] | None:
    """`"event,summary"` → `["event", "summary"]`; absent or blank means every kind."""
    if value is None or not value.strip():
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_event_id(value: object) -> int | None:
    """A Last-Event-ID / lastEventId value; anything that is not a non-negative integer is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


StatesSince = Callable[[int], Iterator[Frame]]
"""user_metric frames of the shoppers changed at or after an event id, in order of change (made
as they are read: a reader away for long may have missed the changes of every shopper)."""
REPLAY_CHUNK: Final = 2000
"""Frames of a resume replay taken at once: a long replay goes out in pieces, as the reader's
connection drains, while the service goes on."""


class LiveFeed:
    """A subscriber's frames: on resume, what it missed; then live frames, without gap or
    duplicate.

    What it missed is the events logged after its last id and, from `states`, a user_metric
    frame with the current state of every shopper changed since, merged in order of change: a
    reader that was away ends with the same shopper table as one that stayed, even when the
    events it missed fell off the log. The hub subscription and the replay are taken in the same
    loop tick, so every change made later arrives live and every earlier one is in the replay.
    """

    def __init__(
        self,
        hub: Hub,
        log: EventLog,
        wanted: FrameFilter,
        last_event_id: int | None,
        max_backlog: int,
        states: StatesSince | None = None,
    ) -> None:
        self.wanted = wanted
        self._sub = hub.subscribe(max_backlog)
        self._replay: Iterator[Frame] | None = None
        self._skip_to = 0
        self.shared = False
        """Whether the last batch is exactly what every reader with this filter got from the
        hub in the same wake (so its encoding can be shared)."""
        # An id above anything logged comes from before a restart (ids start again at 1):
        # there is nothing to replay, and skipping would hide the new events.
        if last_event_id is not None and last_event_id <= log.last_id:
            # The log moves on as events arrive: its part is taken now. The log holds an hour,
            # so the replay is bounded as a live reader's backlog is: the newest `max_backlog`.
            events: list[Frame] = []
            if "event" in wanted.kinds:
                since = max(last_event_id, log.last_id - max_backlog)
                events = list(map(event_frame, log.after(since)))
            shoppers: Iterator[Frame] = iter(())
            if states is not None and "user_metric" in wanted.kinds:
                shoppers = states(last_event_id)
            # Both are in id order; a state follows the events of its id, as when live.
            merged = heapq.merge(events, shoppers, key=lambda f: (f.id, f.kind == "user_metric"))
            self._replay = filter(wanted.matches, merged)
            self._skip_to = log.last_id

    @property
    def closed(self) -> bool:
        """True once the hub shut down (service stopping) or the feed was closed."""
        return self._sub.closed

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def take(self) -> list[Frame]:
        """The frames waiting for this subscriber, without waiting (possibly none): the next
        piece of a resume replay while one lasts, then live frames."""
        self.shared = False
        if self._replay is not None:
            piece = list(islice(self._replay, REPLAY_CHUNK))
            if len(piece) < REPLAY_CHUNK:
                self._replay = None
            if piece:
                return piece
        return self._select(self._sub.pending())

    @property
    def replaying(self) -> bool:
        """Whether a resume replay is still being sent."""
        return self._replay is not None

    @property
    def waiting(self) -> bool:
        """Whether frames (replayed or live, before filtering) are waiting to be taken."""
        return self._replay is not None or self._sub.backlog > 0

    def _select(self, frames: list[Frame]) -> list[Frame]:
        self.shared = not self._skip_to
        if self._skip_to:
            frames = [f for f in frames if f.kind != "event" or f.id > self._skip_to]
            if frames and frames[-1].id > self._skip_to:
                self._skip_to = 0  # ids only grow: nothing older can follow
        if self.wanted.everything:
            return frames
        return [f for f in frames if self.wanted.matches(f)]

    def close(self) -> None:
        self._sub.close()
