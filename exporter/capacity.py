"""Room under --max-shoppers: which shopper is forgotten first when the store is full.

Only offline shoppers make room, the one unseen the longest first. They are kept in two queues,
each in the order their shoppers were last seen, so finding that shopper costs O(1): those the
idle sweep took offline (the sweep takes them in last-seen order), and those that went offline,
or were seen while offline, on a record (seen at that moment, so each joins at the back).
"""

from __future__ import annotations

from collections import OrderedDict

from exporter.shopper import Shopper


class Capacity:
    """The cap on tracked shoppers, and the offline shoppers in the order they may be forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.evicted = 0
        """Offline shoppers forgotten early to make room (a counter)."""
        self.refused = 0
        """New shoppers' records refused because every tracked shopper was online (a counter)."""
        self._idled: OrderedDict[str, Shopper] = OrderedDict()
        self._left: OrderedDict[str, Shopper] = OrderedDict()

    def __len__(self) -> int:
        """Offline shoppers held."""
        return len(self._idled) + len(self._left)

    def full(self, tracked: int) -> bool:
        """Whether `tracked` shoppers leave no room for another."""
        return tracked >= self.limit

    def left(self, shopper: Shopper) -> None:
        """The shopper is offline and was seen just now."""
        user_id = shopper.user_id
        self._idled.pop(user_id, None)
        self._left[user_id] = shopper
        self._left.move_to_end(user_id)

    def idled(self, shopper: Shopper) -> None:
        """The idle sweep took the shopper offline (or a snapshot holds them offline)."""
        self._idled[shopper.user_id] = shopper

    def back(self, user_id: str) -> None:
        """The shopper is online again, or forgotten: no longer one to make room with."""
        if self._idled:
            self._idled.pop(user_id, None)
        if self._left:
            self._left.pop(user_id, None)

    def longest_unseen(self) -> Shopper | None:
        """The offline shopper seen least recently, if any."""
        idled = next(iter(self._idled.values()), None)
        left = next(iter(self._left.values()), None)
        if idled is None or (left is not None and left.received < idled.received):
            return left
        return idled

    def clear(self) -> None:
        self._idled.clear()
        self._left.clear()
