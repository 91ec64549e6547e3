"""HistoryRing: the live page's series, sampled once a second for the last hour in fixed columns."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable
from typing import Any, Final

import orjson

from exporter.labels import OTHER
from exporter.store import ShopperStore

SECONDS: Final = 3600
"""Samples kept: one a second for an hour."""
MAX_ACTIVITIES: Final = 32
"""Activity columns kept at most; further activities are counted in `other`."""
MAX_RATE_GAP: Final = 10
"""Seconds between two samples beyond which a counter's rate is unknown rather than averaged."""

# Gauges are read as they are; the unit says what a value means (the page shows it in legends).
GAUGES: Final = {
    "activeShoppers": "shoppers",
    "activeCarts": "carts",
    "cartItems": "items",
    "totalCartValue": "dollars",
    "averageCartValue": "dollars",
    "averageSessionSeconds": "seconds",
    "ordersLastHour": "orders",
    "orderValueLastHour": "dollars",
    "cartAbandonmentRate": "ratio",
}
# Counters become their increase per second between two samples.
RATES: Final = {
    "eventsPerSecond": "events/s",
    "cartItemsAddedPerSecond": "items/s",
    "cartItemsRemovedPerSecond": "items/s",
    "productViewsPerSecond": "views/s",
    "searchesPerSecond": "searches/s",
    "pageViewsPerSecond": "page views/s",
    "ordersPerSecond": "orders/s",
}
UNITS: Final = {**GAUGES, **RATES, "activities": "shoppers"}
_NAN: Final = math.nan


def _column() -> array[float]:
    return array("d", [_NAN]) * SECONDS


def _gauges(store: ShopperStore, now: float) -> tuple[float, ...]:
    """The gauge values now, in GAUGES order (what /api/summary reports, without rounding)."""
    agg = store.aggregates
    orders = store.orders_recent.total(now)
    abandoned = store.abandonments_recent.total(now)
    finished = orders + abandoned
    return (
        agg.active,
        agg.carts,
        agg.cart_items,
        agg.cart_cents / 100,
        agg.cart_cents / 100 / agg.carts if agg.carts else 0.0,
        agg.session_ms / 1000 / agg.active if agg.active else 0.0,
        orders,
        store.order_value_recent.total(now),
        abandoned / finished if finished else 0.0,
    )


def _totals(store: ShopperStore) -> tuple[float, ...]:
    """The counters behind RATES, in RATES order."""
    c = store.counters
    return (
        sum(c.events.values()),
        c.cart_items_added,
        c.cart_items_removed,
        c.product_views,
        c.searches,
        c.page_views,
        c.orders,
    )


class HistoryRing:
    """Per-second samples of the store's aggregates over the last hour.

    Every column is a preallocated array of SECONDS doubles indexed by `second % SECONDS`, so
    memory is fixed (about 1.4 MiB with every activity column in use) and a window is one or two
    slices. A second with no sample holds NaN, served as null.
    """

    def __init__(self, store: ShopperStore) -> None:
        self.store = store
        self._gauges = [_column() for _ in GAUGES]
        self._rates = [_column() for _ in RATES]
        self._activities: dict[str, array[float]] = {}
        self._busy: dict[str, int] = {}
        """The last second each activity had anyone in it."""
        self._encoded: dict[tuple[int, int | None], bytes] = {}
        self._stamps = array("q", [-1]) * SECONDS
        self._first: int | None = None
        self._last: int | None = None
        self._last_totals: tuple[float, ...] = ()

    def __len__(self) -> int:
        """Seconds held (sampled or gaps) from the first to the last sample, at most an hour."""
        if self._first is None or self._last is None:
            return 0
        return self._last - self._first + 1

    def nbytes(self) -> int:
        """Bytes held by the columns."""
        columns = [*self._gauges, *self._rates, *self._activities.values()]
        stamps = self._stamps.itemsize * len(self._stamps)
        return stamps + sum(col.itemsize * len(col) for col in columns)

    def sample(self, now: float) -> None:
        """Record the aggregates as of `now`; a repeat within the same second replaces it."""
        second = int(now)
        last = self._last
        if last is not None and second < last:
            self._reset()  # the clock went back: what we hold no longer lines up with it
            last = None
        if last is not None and second > last + 1:
            for gap in range(max(last + 1, second - SECONDS + 1), second):
                self._blank(gap)
        slot = second % SECONDS
        self._stamps[slot] = second
        for column, value in zip(self._gauges, _gauges(self.store, now), strict=True):
            column[slot] = value
        totals = _totals(self.store)
        previous = self._last_totals
        span = second - last if last is not None else 0
        for i, column in enumerate(self._rates):
            if previous and 0 < span <= MAX_RATE_GAP and totals[i] >= previous[i]:
                column[slot] = (totals[i] - previous[i]) / span
            elif previous and span == 0:
                pass  # same second again: keep the rate measured over the whole second
            else:
                column[slot] = _NAN  # first sample, long gap or a reset counter: no spike
        if span != 0 or not previous:
            self._last_totals = totals
        self._sample_activities(slot, second)
        if self._first is None:
            self._first = second
        self._last = second
        self._first = max(self._first, second - SECONDS + 1)

    def window(self, seconds: int) -> dict[str, Any]:
        """The last `seconds` (1 to SECONDS) as columns: times, then one list per series."""
        seconds = max(1, min(SECONDS, seconds))
        if self._first is None or self._last is None:
            return self._reply(seconds, [], {}, {})
        end = self._last
        start = max(self._first, end - seconds + 1)
        times = list(range(start, end + 1))
        named = zip((*GAUGES, *RATES), (*self._gauges, *self._rates), strict=True)
        series = {name: _slice(column, start, end) for name, column in named}
        # An activity nobody did in the window is left out.
        activities = {
            name: _slice(column, start, end)
            for name, column in self._activities.items()
            if self._busy.get(name, -1) >= start
        }
        return self._reply(seconds, times, series, activities)

    def window_json(self, seconds: int) -> bytes:
        """`window(seconds)` encoded; kept until the next sample, as every reader gets the same."""
        key = (seconds, self._last)
        cached = self._encoded.get(key)
        if cached is None:
            if len(self._encoded) >= 8:
                self._encoded.clear()
            cached = self._encoded[key] = orjson.dumps(self.window(seconds))
        return cached

    @staticmethod
    def _reply(
        seconds: int,
        times: list[int],
        series: dict[str, list[float]],
        activities: dict[str, list[float]],
    ) -> dict[str, Any]:
        return {
            "window": seconds,
            "interval": 1,
            "time": times,
            "series": series,
            "activities": activities,
            "units": UNITS,
        }

    def _sample_activities(self, slot: int, second: int) -> None:
        counts = self.store.aggregates.by_activity
        columns, busy = self._activities, self._busy
        for column in columns.values():
            column[slot] = 0.0
        for name, shoppers in counts.items():
            if shoppers <= 0:
                continue
            column_of = columns.get(name) or self._activity_column(name)
            column_of[slot] += shoppers
            folded = name if name in columns else OTHER
            busy[folded] = second

    def _activity_column(self, name: str) -> array[float]:
        """A column for a new activity: a free one, or `other` once all are taken."""
        columns = self._activities
        # One place stays for `other`, so folding an activity into it never fails.
        named = len(columns) - (OTHER in columns)
        if name != OTHER and named >= MAX_ACTIVITIES - 1:
            # Reuse a column that held nobody for the whole hour before folding into `other`.
            oldest = (self._last or 0) - SECONDS
            idle = next((n for n in columns if n != OTHER and self._busy.get(n, -1) < oldest), None)
            if idle is None:
                return columns.get(OTHER) or self._activity_column(OTHER)
            del columns[idle]
            self._busy.pop(idle, None)
        # Zero, not NaN, where samples exist: nobody did this activity before it appeared.
        column = array("d", (0.0 if stamp >= 0 else _NAN for stamp in self._stamps))
        columns[name] = column
        return column

    def _blank(self, second: int) -> None:
        slot = second % SECONDS
        self._stamps[slot] = second
        for column in (*self._gauges, *self._rates, *self._activities.values()):
            column[slot] = _NAN

    def _reset(self) -> None:
        self._stamps = array("q", [-1]) * SECONDS
        self._activities.clear()
        self._busy.clear()
        self._first = self._last = None
        self._last_totals = ()


def _slice(column: array[float], start: int, end: int) -> list[float]:
    """Values for the seconds start..end (at most SECONDS of them), oldest first."""
    a, b = start % SECONDS, end % SECONDS
    if a <= b and end - start < SECONDS:
        return column[a : b + 1].tolist()
    return column[a:].tolist() + column[: b + 1].tolist()


async def run_sampler(history: HistoryRing, clock: Callable[[], float] = time.time) -> None:
    """Sample once a second, just after each whole second, so every second gets one sample."""
    while True:
        await asyncio.sleep(1.0 - clock() % 1.0 + 0.005)
        history.sample(clock())
