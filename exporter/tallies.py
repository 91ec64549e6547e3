"""Tallies the store keeps: counters, histograms, sliding windows and online aggregates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

SESSION_BUCKETS: Final = (
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1200.0,
    1800.0,
    2700.0,
    3600.0,
    5400.0,
    7200.0,
)
ORDER_VALUE_BUCKETS: Final = (10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0)
FUNNEL_STAGES: Final = ("browsing", "cart", "checkout", "order")


class Histogram:
    """Cumulative buckets, a sum and a count: what Prometheus needs to compute quantiles."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.count += 1
        self.total += value

    def state(self) -> list[Any]:
        """[counts, count, total], for snapshots."""
        return [list(self.counts), self.count, self.total]

    def restore(self, state: list[Any]) -> None:
        counts, self.count, self.total = state
        if len(counts) == len(self.bounds):
            self.counts = [int(n) for n in counts]

    def buckets(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs ending with +Inf."""
        pairs = [(_le(b), c) for b, c in zip(self.bounds, self.counts, strict=True)]
        pairs.append(("+Inf", self.count))
        return pairs


def _le(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else str(bound)


class Recent:
    """Counts over a sliding window in fixed buckets (e.g. orders in the last hour by minute)."""

    __slots__ = ("_slots", "_stamps", "width")

    def __init__(self, buckets: int, width: float) -> None:
        self.width = width
        self._slots = [0.0] * buckets
        self._stamps = [-1] * buckets

    def add(self, now: float, amount: float = 1.0) -> None:
        tick = int(now // self.width)
        i = tick % len(self._slots)
        if self._stamps[i] != tick:
            self._stamps[i], self._slots[i] = tick, 0.0
        self._slots[i] += amount

    def state(self) -> list[list[float]]:
        """[values, stamps], for snapshots."""
        return [list(self._slots), [float(t) for t in self._stamps]]

    def restore(self, state: list[list[float]]) -> None:
        values, stamps = state
        if len(values) == len(self._slots) == len(stamps):
            self._slots = [float(v) for v in values]
            self._stamps = [int(t) for t in stamps]

    def total(self, now: float) -> float:
        oldest = int(now // self.width) - len(self._slots) + 1
        return sum(v for v, t in zip(self._slots, self._stamps, strict=True) if t >= oldest)


@dataclass(slots=True)
class Aggregates:
    """Sums over online shoppers, adjusted on every change."""

    active: int = 0
    carts: int = 0
    cart_items: int = 0
    cart_cents: int = 0
    session_ms: int = 0
    by_activity: dict[str, int] = field(default_factory=dict)
    by_membership: dict[str, int] = field(default_factory=dict)
    by_delivery_window: dict[str, int] = field(default_factory=dict)
    by_location: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Counters:
    """Monotonic totals since start: what Prometheus turns into rates."""

    page_views: int = 0
    clicks: int = 0
    product_views: int = 0
    searches: int = 0
    coupons_applied: int = 0
    cart_items_added: int = 0
    cart_items_removed: int = 0
    orders: int = 0
    order_value: float = 0.0
    abandonments: int = 0
    abandoned_value: float = 0.0
    sessions_started: int = 0
    sessions_ended: int = 0
    stale: int = 0
    duplicate: int = 0
    events: dict[str, int] = field(default_factory=dict)
    activity_seconds: dict[str, float] = field(default_factory=dict)
    funnel: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FUNNEL_STAGES, 0))
    session_duration: Histogram = field(default_factory=lambda: Histogram(SESSION_BUCKETS))
    order_value_hist: Histogram = field(default_factory=lambda: Histogram(ORDER_VALUE_BUCKETS))
