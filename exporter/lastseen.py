"""Shoppers in the order they were last seen, at two references per entry.

An entry is a shopper and the `received` time object it had when queued. A shopper seen again
gets a new time object (and a forgotten one a sentinel), so an older entry is recognised as stale
by identity and skipped, never searched for and removed from the middle: a queue costs two
references per entry where an ordered dict costs an entry, a node and a slot per shopper. Stale
entries are swept out once they outnumber the standing ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Final

from exporter.shopper import Shopper

SLACK: Final = 1024
"""Entries allowed beyond twice the standing ones before the queue is swept."""


class SeenQueue:
    """Shoppers for whom `keeps(shopper)` holds, oldest seen first (see the module docstring)."""

    __slots__ = ("_keeps", "_limit", "_seen", "_shoppers")

    def __init__(self, keeps: Callable[[Shopper], bool]) -> None:
        self._keeps = keeps
        self._shoppers: deque[Shopper] = deque()
        self._seen: deque[float] = deque()
        self._limit = SLACK

    def __len__(self) -> int:
        """Entries held, stale ones included."""
        return len(self._shoppers)

    def push(self, shopper: Shopper) -> None:
        """The shopper was seen at `shopper.received`: queue them at the back."""
        self._shoppers.append(shopper)
        self._seen.append(shopper.received)
        if len(self._shoppers) > self._limit:
            self.sweep()

    def _stands(self, shopper: Shopper, seen: float) -> bool:
        return seen is shopper.received and self._keeps(shopper)

    def front(self) -> Shopper | None:
        """The shopper seen least recently (stale entries in front are dropped)."""
        shoppers, seen = self._shoppers, self._seen
        while shoppers:
            if self._stands(shoppers[0], seen[0]):
                return shoppers[0]
            shoppers.popleft()
            seen.popleft()
        return None

    def newest(self) -> Iterator[Shopper]:
        """Standing shoppers, most recently seen first, each once. Nothing may change the
        queue while this is read."""
        listed: set[str] = set()
        for shopper, seen in zip(reversed(self._shoppers), reversed(self._seen), strict=True):
            if shopper.user_id not in listed and self._stands(shopper, seen):
                listed.add(shopper.user_id)
                yield shopper

    def sweep(self) -> None:
        """Drop every stale entry (and the repeats a shopper seen twice at once leaves)."""
        kept: dict[str, tuple[Shopper, float]] = {}
        for shopper, seen in zip(self._shoppers, self._seen, strict=True):
            if self._stands(shopper, seen):
                kept.pop(shopper.user_id, None)  # the later of two equal entries stays
                kept[shopper.user_id] = (shopper, seen)
        self._shoppers = deque(shopper for shopper, _ in kept.values())
        self._seen = deque(seen for _, seen in kept.values())
        self._limit = 2 * len(self._shoppers) + SLACK

    def clear(self) -> None:
        self._shoppers.clear()
        self._seen.clear()
        self._limit = SLACK
