"""ShopperFinder: any tracked shopper by a piece of their id, name or location; sorted, in pages."""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import heapq
import operator
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Any, Final

import orjson

from exporter.introductions import Introductions
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


SEP: Final = "\x1f"
"""Between a line's id, name and location (the unit separator: never part of a search)."""

SLICE: Final = 5_000
"""Shoppers read between two turns of the loop while the index is rebuilt in the background."""


class _Lines:
    """Lines of `id SEP name SEP location SEP` lowercased, then the id in its own case when that
    differs (ids are case-sensitive), in one text; and where each line starts (one more entry:
    the end). A line holds no reference to anything, so a forgotten shopper's id goes with it."""

    __slots__ = ("starts", "text")

    def __init__(self, starts: array[int], text: str) -> None:
        self.starts = starts
        self.text = text

    def __len__(self) -> int:
        return len(self.starts) - 1

    def extend(self, more: _Lines) -> None:
        shift = len(self.text)
        self.starts.extend(start + shift for start in more.starts[1:])
        self.text += more.text

    def holders(self, needle: str) -> Iterator[str]:
        """Ids of the lines that contain `needle`, once per line."""
        text, starts = self.text, self.starts
        at = text.find(needle)
        while at >= 0:
            line = bisect.bisect_right(starts, at) - 1
            start, end = starts[line], starts[line + 1]
            cased = text.rfind(SEP, start, end) + 1
            yield text[cased : end - 1] if cased < end - 1 else text[start : text.find(SEP, start)]
            at = text.find(needle, end)


class _Builder:
    """Lines made a slice of shoppers at a time and joined once at the end."""

    def __init__(self) -> None:
        self.starts = array("q", [0])
        self.texts: list[str] = []
        self.size = 0

    def add(self, shoppers: Iterable[Shopper]) -> _Builder:
        lines = []
        for shopper in shoppers:
            user_id = shopper.user_id
            # Lowered field by field: a few characters change length when lowered.
            low = f"{user_id}{SEP}{shopper.user_name}{SEP}{shopper.location}{SEP}".lower()
            lines.append(f"{low}\n" if low.startswith(user_id) else f"{low}{user_id}\n")
        self.starts.extend(islice(accumulate(map(len, lines), initial=self.size), 1, None))
        text = "".join(lines)
        self.texts.append(text)
        self.size += len(text)
        return self

    def done(self) -> _Lines:
        return _Lines(self.starts, "".join(self.texts))


def _lines(shoppers: Iterable[Shopper] = ()) -> _Lines:
    return _Builder().add(shoppers).done()


class ShopperFinder:
    """A search index beside the store, so a search never walks every shopper's fields.

    Each shopper is a line of one lowercased text (id, name, location), searched at C speed and
    mapped back by offset: under 50 bytes a shopper. The store tells the index of new, renamed
    and moved shoppers (`store.introduced`); each gets a new line, read once a second into a
    small tail that joins the main text when it grows past a quarter of it. Lines left behind
    by a rename or by a shopper the store forgot are never trusted: every hit is checked against
    the shopper the store holds now. When they outnumber half the live lines (and after a
    restart), the text is rebuilt from the store, in slices between which the loop goes on.
    """

    def __init__(self, store: ShopperStore) -> None:
        self.store = store
        store.introduced = Introductions()
        self._main = _lines()
        self._tail = _lines()
        self._built = False
        self._building = False

    def __len__(self) -> int:
        """Lines held, live and left behind."""
        return len(self._main) + len(self._tail)

    def _due(self) -> bool:
        return not self._built or len(self) > len(self.store) * 3 // 2 + 1024

    def sync(self) -> None:
        """Take in shoppers added, renamed or moved since the last sync, all at once."""
        if self._building:
            return  # the background rebuild takes them in when it ends
        if self._due():
            self._start_rebuild()
            self._finish_rebuild(_Builder().add(self._from_store()))
        else:
            self._take_fresh()

    async def keep_up(self) -> None:
        """What the service runs once a second: `sync`, with a rebuild done a slice at a time."""
        if self._building:
            return
        if not self._due():
            self._take_fresh()
            return
        self._start_rebuild()
        shoppers, built = self._from_store(), _Builder()
        try:
            for start in range(0, len(shoppers), SLICE):
                built.add(shoppers[start : start + SLICE])
                await asyncio.sleep(0)
        except BaseException:
            self._building = False
            raise
        self._finish_rebuild(built)

    def _from_store(self) -> list[Shopper]:
        return self.store.newest(limit=len(self.store))

    def _start_rebuild(self) -> None:
        """From here on the feed holds every change the rebuild's reading may miss."""
        assert self.store.introduced is not None
        self.store.introduced.take()
        self._building = True

    def _finish_rebuild(self, built: _Builder) -> None:
        # The old text goes before the new one is joined: three texts are never held at once.
        self._main = self._tail = _lines()
        self._main = built.done()
        self._built, self._building = True, False
        self._take_fresh()

    def _take_fresh(self) -> None:
        assert self.store.introduced is not None
        fresh = self.store.introduced.take()
        if fresh is None:
            self._built = False  # some were dropped: read everything at the next sync
        elif fresh:
            get = self.store.get
            held = [s for s in map(get, dict.fromkeys(fresh)) if s is not None]
            self._tail.extend(_lines(held))
            if len(self._tail.text) > len(self._main.text) // 4:
                self._main.extend(self._tail)
                self._tail = _lines()

    def matching(self, q: str) -> list[Shopper]:
        """Shoppers whose id, name or location contains `q`, ignoring case (a plain substring)."""
        self.sync()
        needle = q.lower().replace("\n", " ").replace(SEP, " ")
        get = self.store.get
        seen: set[str] = set()
        found: list[Shopper] = []
        for lines in (self._main, self._tail):
            for user_id in lines.holders(needle):
                if user_id in seen:
                    continue
                seen.add(user_id)
                shopper = get(user_id)
                if shopper is not None and _mentions(shopper, needle):
                    found.append(shopper)
        return found

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


def _mentions(shopper: Shopper, needle: str) -> bool:
    """Whether the shopper as held now (not as a line once said) contains the needle."""
    return (
        needle in shopper.user_id.lower()
        or needle in shopper.user_name.lower()
        or needle in shopper.location.lower()
    )


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
