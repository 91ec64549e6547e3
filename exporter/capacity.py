"""Room under --max-shoppers: which shopper is forgotten first when the store is full.

Only offline shoppers make room, the one unseen the longest first. They wait in two queues, each
in the order their shoppers were last seen, so finding that shopper costs O(1): those the idle
sweep took offline (the sweep takes them in last-seen order), and those that went offline, or
were seen while offline, on a record (seen at that moment, so each joins at the back).
"""

from __future__ import annotations

from exporter.lastseen import SeenQueue
from exporter.shopper import Shopper


def _offline(shopper: Shopper) -> bool:
    return not shopper.online


class Capacity:
    """The cap on tracked shoppers, and the offline shoppers in the order they may be forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.evicted = 0
        """Offline shoppers forgotten early to make room (a counter)."""
        self.refused = 0
        """New shoppers' records refused because every tracked shopper was online (a counter)."""
        self._idled = SeenQueue(_offline)
        self._left = SeenQueue(_offline)

    def full(self, tracked: int) -> bool:
        """Whether `tracked` shoppers leave no room for another."""
        return tracked >= self.limit

    def left(self, shopper: Shopper) -> None:
        """The shopper is offline and was seen just now (at `shopper.received`)."""
        self._left.push(shopper)

    def idled(self, shopper: Shopper) -> None:
        """The idle sweep took the shopper offline (or a snapshot holds them offline)."""
        self._idled.push(shopper)

    def longest_unseen(self) -> Shopper | None:
        """The offline shopper seen least recently, if any (forgotten ones are stale entries:
        the store gives them a `received` of their own)."""
        idled = self._idled.front()
        left = self._left.front()
        if idled is None or (left is not None and left.received < idled.received):
            return left
        return idled

    def entries(self) -> int:
        """Queue entries held, stale ones included (about twice the offline shoppers at most)."""
        return len(self._idled) + len(self._left)
