"""Shoppers first seen, renamed or moved: what a search index has to (re)read, and nothing else."""

from __future__ import annotations

from typing import Final

from exporter.shopper import Shopper

SLACK: Final = 65_536
"""Entries held beyond a quarter of the tracked shoppers before a reader is presumed gone."""


class Introductions:
    """A feed the store fills and one reader drains (`take`), so the reader never walks every
    shopper to find the few whose id, name or location it has not seen yet. Bounded: past
    `SLACK` plus a quarter of the tracked shoppers, the entries are dropped and the next `take`
    says so, and the reader reads everything again."""

    __slots__ = ("_lost", "_shoppers")

    def __init__(self) -> None:
        self._shoppers: list[Shopper] = []
        self._lost = False

    def add(self, shopper: Shopper, tracked: int) -> None:
        shoppers = self._shoppers
        shoppers.append(shopper)
        if len(shoppers) > SLACK + tracked // 4:
            shoppers.clear()
            self._lost = True

    def take(self) -> list[Shopper] | None:
        """What came since the last take, oldest first; None when some were dropped."""
        if self._lost:
            self._lost = False
            self._shoppers = []
            return None
        taken, self._shoppers = self._shoppers, []
        return taken
