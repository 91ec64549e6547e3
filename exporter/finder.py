"""ShopperFinder: any tracked shopper by a piece of their id, name or location; sorted, in pages."""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
import math
import operator
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from exporter.labels import UNKNOWN
from exporter.store import Shopper, ShopperStore

MAX_QUERY: Final = 200
"""Characters of a search; longer ones are refused (no name or id is longer)."""

SORTS: Final[dict[str, Callable[[Shopper], tuple[Any, ...]]]] = {
    "recent": operator.attrgetter("received", "user_id"),
    "cart": operator.attrgetter("cart_value", "user_id"),
    "session": operator.attrgetter("session_seconds", "user_id"),
}
"""Each sort is descending by its key, the id breaking ties, so a cursor names one place."""


class QueryError(ValueError):
    """A listing parameter that cannot be used; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ShopperQuery:
    """What a listing asks for: a search, filters, a sort, and where the page starts."""

    q: str = ""
    online: bool | None = None
    activity: str | None = None
    sort: str = "recent"
    limit: int = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        if len(self.q) > MAX_QUERY:
            raise QueryError("q", f"at most {MAX_QUERY} characters")
        if self.sort not in SORTS:
            raise QueryError("sort", f"one of {', '.join(SORTS)}")


@dataclass(slots=True)
class ShopperPage:
    """One page of shoppers, how many match in all, and the cursor of the next page."""

    shoppers: list[Shopper]
    total: int
    next_cursor: str | None


def encode_cursor(sort: str, key: tuple[Any, ...]) -> str:
    raw = orjson.dumps([sort, *key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(sort: str, cursor: str) -> tuple[Any, ...]:
    """The sort key a cursor stands for; QueryError when it is not one this sort made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise QueryError("cursor", "not a cursor this service gave out") from None
    if (
        not isinstance(parts, list)
        or len(parts) != 3
        or parts[0] != sort
        or not isinstance(parts[1], int | float)
        or isinstance(parts[1], bool)
        or not isinstance(parts[2], str)
    ):
        raise QueryError("cursor", f"not a cursor of sort={sort}")
    return float(parts[1]), parts[2]


class ShopperFinder:
    """A search index beside the store, so a search never walks every shopper's fields.

    Ids sit in one lowercased text, searched at C speed and mapped back by offset; names and
    locations repeat across shoppers, so each distinct one is kept once with the ids bearing it.
    Recency comes only from `store.newest` (the shopper map, which the store keeps in order of
    last arrival, or the online shoppers' last-seen queue), so the index catches up by reading
    only the shoppers updated since it last looked (newest first, until an older one). Shoppers
    the store forgot (expired, erased, or evicted under --max-shoppers) are dropped when met, and
    swept out when they pile up.
    """

    def __init__(self, store: ShopperStore) -> None:
        self.store = store
        self._since = -math.inf
        self._clear()

    def _clear(self) -> None:
        self._ids: list[str] = []
        self._lower_ids: list[str] = []
        self._offsets = array("q")
        self._id_text = ""
        self._named: dict[str, tuple[str, str]] = {}
        self._names: dict[str, set[str]] = {}
        self._places: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._named)

    def sync(self) -> None:
        """Take in shoppers added, renamed or moved since the last sync."""
        store = self.store
        newest = store.last_update
        if newest is not None and newest < self._since:
            self._since = -math.inf  # the clock went back: read everything again
        if len(self._ids) > len(store) + max(1000, len(store) // 4):
            self._clear()  # many forgotten shoppers: start again from the store
            self._since = -math.inf
        named = self._named
        added: list[str] = []
        for shopper in _updated_since(store, self._since):
            user_id = shopper.user_id
            key = (shopper.user_name.lower(), shopper.location.lower())
            was = named.get(user_id)
            if was == key:
                continue
            if was is None:
                added.append(user_id)
            else:
                self._names[was[0]].discard(user_id)
                self._places[was[1]].discard(user_id)
            named[user_id] = key
            self._names.setdefault(key[0], set()).add(user_id)
            self._places.setdefault(key[1], set()).add(user_id)
        if added:
            self._append_ids(added)
        if newest is not None:
            self._since = newest

    def _append_ids(self, added: list[str]) -> None:
        lowered = [user_id.lower() for user_id in added]
        start = len(self._id_text)
        for text in lowered:
            self._offsets.append(start)
            start += len(text) + 1
        self._ids += added
        self._lower_ids += lowered
        self._id_text += "\n".join(lowered) + "\n"

    def matching(self, q: str) -> list[Shopper]:
        """Shoppers whose id, name or location contains `q`, ignoring case (a plain substring)."""
        self.sync()
        needle = q.lower().replace("\n", " ")
        found = set(self._id_matches(needle))
        for table in (self._names, self._places):
            for text, user_ids in table.items():
                if needle in text:
                    found |= user_ids
        # Ids of shoppers the store has forgotten since are left behind here.
        return [s for s in map(self.store.get, found) if s is not None]

    def _id_matches(self, needle: str) -> list[str]:
        text = self._id_text
        hits = text.count(needle)
        if hits == 0:
            return []
        if hits > len(self._ids) // 8:
            # Most ids match: one pass over them costs less than a find per match.
            return [i for i, low in zip(self._ids, self._lower_ids, strict=True) if needle in low]
        ids, offsets, out = self._ids, self._offsets, []
        end = len(text)
        at = text.find(needle)
        while at >= 0:
            i = bisect.bisect_right(offsets, at) - 1
            out.append(ids[i])
            after = offsets[i + 1] if i + 1 < len(offsets) else end
            at = text.find(needle, after)
        return out

    def page(self, query: ShopperQuery) -> ShopperPage:
        """The shoppers a query selects, one page of them in its sort order."""
        if not query.q.strip() and query.sort == "recent":
            fast = self._recent_page(query)
            if fast is not None:
                return fast
        if query.q.strip():
            candidates: Iterable[Shopper] = self.matching(query.q.strip())
        else:
            store = self.store
            candidates = store.newest(online_only=query.online is True, limit=len(store))
        chosen = _filtered(candidates, query)
        key = SORTS[query.sort]
        rest = chosen
        if query.cursor:
            after = decode_cursor(query.sort, query.cursor)
            rest = [s for s in chosen if key(s) < after]
        return _page_of(rest, len(chosen), query)

    def _recent_page(self, query: ShopperQuery) -> ShopperPage | None:
        """Newest first without a search: read from the store's newest end, count from its
        aggregates (None when the count needs every shopper: an activity among all)."""
        store = self.store
        total = self._count(query)
        if total is None:
            return None
        key = SORTS["recent"]
        after = decode_cursor("recent", query.cursor) if query.cursor else None
        want = query.limit + 1
        reading = 2 * want + 64
        while True:
            batch = store.newest(online_only=query.online is True, limit=reading)
            chosen = _filtered(batch, query)
            if after is not None:
                chosen = [s for s in chosen if key(s) < after]
            if len(batch) < reading:
                return _page_of(chosen, total, query)
            # Shoppers not read yet arrived no later than the last one read: those that
            # arrived strictly later are surely ahead of them (ties are ordered by id).
            boundary = batch[-1].received
            sure = [s for s in chosen if s.received > boundary]
            if len(sure) >= want:
                return _page_of(sure, total, query)
            reading *= 4

    def _count(self, query: ShopperQuery) -> int | None:
        store = self.store
        online = store.online_count()
        if query.activity is None:
            return {None: len(store), True: online, False: len(store) - online}[query.online]
        if query.online is not True:
            return None
        wanted = query.activity.lower()
        by_activity = store.aggregates.by_activity
        return sum(n for name, n in by_activity.items() if name.lower() == wanted)


def _page_of(rest: list[Shopper], total: int, query: ShopperQuery) -> ShopperPage:
    key = SORTS[query.sort]
    top = heapq.nlargest(query.limit + 1, rest, key=key)
    more = len(top) > query.limit
    shown = top[: query.limit]
    cursor = encode_cursor(query.sort, key(shown[-1])) if more and shown else None
    return ShopperPage(shown, total, cursor)


def _updated_since(store: ShopperStore, since: float) -> list[Shopper]:
    """Shoppers whose last update arrived after `since`, newest first."""
    want = 256
    while True:
        batch = store.newest(limit=want)
        if len(batch) < want or batch[-1].received <= since:
            return [s for s in batch if s.received > since]
        want *= 4


def _filtered(candidates: Iterable[Shopper], query: ShopperQuery) -> list[Shopper]:
    """The candidates that pass the query's online and activity filters (its search aside)."""
    online, activity = query.online, query.activity
    chosen = candidates if online is None else (s for s in candidates if s.online is online)
    if activity is not None:
        wanted = activity.lower()
        if wanted == UNKNOWN:
            chosen = (s for s in chosen if s.activity.lower() in ("", UNKNOWN))
        else:
            chosen = (s for s in chosen if s.activity.lower() == wanted)
    return chosen if isinstance(chosen, list) else list(chosen)
