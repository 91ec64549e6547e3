"""Ids of shoppers first seen, renamed or moved: what a search index has to (re)read."""

from __future__ import annotations

from typing import Final

SLACK: Final = 65_536
"""Entries held beyond a quarter of the tracked shoppers before a reader is presumed gone."""


class Introductions:
    """A feed the store fills and one reader drains (`take`), so the reader never walks every
    shopper to find the few whose id, name or location it has not seen yet. It holds ids, not
    shoppers, so a shopper forgotten before the reader comes is not kept alive by it. Bounded:
    past `SLACK` plus a quarter of the tracked shoppers, the entries are dropped and the next
    `take` says so, and the reader reads everything again."""

    __slots__ = ("_ids", "_lost")

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._lost = False

    def add(self, user_id: str, tracked: int) -> None:
        ids = self._ids
        ids.append(user_id)
        if len(ids) > SLACK + tracked // 4:
            ids.clear()
            self._lost = True

    def take(self) -> list[str] | None:
        """What came since the last take, oldest first; None when some were dropped."""
        if self._lost:
            self._lost = False
            self._ids = []
            return None
        taken, self._ids = self._ids, []
        return taken
