"""Room under --max-shoppers: which shopper is forgotten first when the store is full.

Only offline shoppers make room, the one unseen the longest first. They are kept in two queues,
each in the order their shoppers were last seen, so finding that shopper costs O(1): those the
idle sweep took offline (the sweep takes them in last-seen order), and those that went offline,
or were seen while offline, on a record (seen at that moment, so each joins at the back).

A queue entry is the shopper and the `received` time object it had when queued; a shopper seen
again gets a new time object, so older entries are recognised as stale by identity and skipped
(nothing is removed from the middle). That costs two references per entry instead of a dict
entry per offline shopper; stale entries are swept out when they outnumber the tracked shoppers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from exporter.shopper import Shopper

_SLACK = 1024
"""Stale entries allowed beyond the tracked shoppers before the queues are compacted."""


class _Queue:
    """Offline shoppers with the time they were last seen when queued, oldest first."""

    __slots__ = ("seen", "shoppers")

    def __init__(self) -> None:
        self.shoppers: deque[Shopper] = deque()
        self.seen: deque[float] = deque()

    def __len__(self) -> int:
        return len(self.shoppers)

    def push(self, shopper: Shopper) -> None:
        self.shoppers.append(shopper)
        self.seen.append(shopper.received)

    def front(self, tracked: Mapping[str, Shopper]) -> Shopper | None:
        """The oldest entry still standing (stale ones in front are dropped)."""
        shoppers, seen = self.shoppers, self.seen
        while shoppers:
            shopper = shoppers[0]
            if _stands(shopper, seen[0], tracked):
                return shopper
            shoppers.popleft()
            seen.popleft()
        return None

    def compact(self, tracked: Mapping[str, Shopper]) -> None:
        kept = [
            (s, t) for s, t in zip(self.shoppers, self.seen, strict=True) if _stands(s, t, tracked)
        ]
        self.shoppers = deque(s for s, _ in kept)
        self.seen = deque(t for _, t in kept)


def _stands(shopper: Shopper, seen: float, tracked: Mapping[str, Shopper]) -> bool:
    """Whether an entry still describes its shopper: offline, tracked, not seen since."""
    return (
        seen is shopper.received and not shopper.online and tracked.get(shopper.user_id) is shopper
    )


class Capacity:
    """The cap on tracked shoppers, and the offline shoppers in the order they may be forgotten.

    `tracked` is the store's own map of shoppers (read, never changed here).
    """

    def __init__(self, limit: int, tracked: Mapping[str, Shopper]) -> None:
        self.limit = limit
        self.evicted = 0
        """Offline shoppers forgotten early to make room (a counter)."""
        self.refused = 0
        """New shoppers' records refused because every tracked shopper was online (a counter)."""
        self._tracked = tracked
        self._idled = _Queue()
        self._left = _Queue()

    def full(self, tracked: int) -> bool:
        """Whether `tracked` shoppers leave no room for another."""
        return tracked >= self.limit

    def left(self, shopper: Shopper) -> None:
        """The shopper is offline and was seen just now (at `shopper.received`)."""
        self._left.push(shopper)
        self._keep_small()

    def idled(self, shopper: Shopper) -> None:
        """The idle sweep took the shopper offline (or a snapshot holds them offline)."""
        self._idled.push(shopper)
        self._keep_small()

    def longest_unseen(self) -> Shopper | None:
        """The offline shopper seen least recently, if any."""
        idled = self._idled.front(self._tracked)
        left = self._left.front(self._tracked)
        if idled is None or (left is not None and left.received < idled.received):
            return left
        return idled

    def entries(self) -> int:
        """Queue entries held, stale ones included (bounded by the tracked shoppers)."""
        return len(self._idled) + len(self._left)

    def _keep_small(self) -> None:
        if self.entries() > 2 * len(self._tracked) + _SLACK:
            self._idled.compact(self._tracked)
            self._left.compact(self._tracked)
