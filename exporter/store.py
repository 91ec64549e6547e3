"""ShopperStore: every shopper's current state, their sessions, and aggregates kept up to date.

Each update is folded into the shopper's state; what changed becomes shopping events and counter
increments. Aggregates over online shoppers are adjusted on every change (take the shopper's old
contribution out, put the new one in), so a scrape or a summary costs O(series), never O(shoppers).
"""

from __future__ import annotations

import math
import operator
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final

from exporter import events as ev
from exporter.events import ShoppingEvent
from exporter.labels import OTHER, UNKNOWN, LabelCap
from exporter.model import ShopperEventIn, ShopperUpdate, epoch
from exporter.settings import Settings

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
_BROWSING, _CART, _CHECKOUT, _ORDER = 1, 2, 4, 8
_STAGE_BITS: Final = dict(zip(FUNNEL_STAGES, (_BROWSING, _CART, _CHECKOUT, _ORDER), strict=True))
CHECKOUT_ACTIVITY: Final = "checkout"


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


_NO_TIME: Final[Mapping[str, float]] = {}
"""No minutes recorded: shared by every shopper without any, and never written to."""


class Shopper:
    """One shopper's state; slots only, and label-like strings shared through the label caps."""

    __slots__ = (
        "activity",
        "cart_open",
        "cart_value",
        "clicks",
        "coupons",
        "dashboards_viewed",
        "delivery_window",
        "events_triggered",
        "feature_time",
        "features_used",
        "fingerprint",
        "is_active",
        "items_in_cart",
        "last_action",
        "last_action_time",
        "last_order_at",
        "last_order_id",
        "location",
        "membership",
        "online",
        "page_views",
        "products_viewed",
        "queries_run",
        "received",
        "reports_created",
        "scroll_depth",
        "searches",
        "session_seconds",
        "session_started",
        "stages",
        "timestamp",
        "user_id",
        "user_name",
    )

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.user_name = user_id
        self.location = self.membership = self.delivery_window = self.activity = ""
        self.features_used: tuple[str, ...] = ()
        self.feature_time: Mapping[str, float] = _NO_TIME
        """Minutes per activity this session; never changed in place (replaced by each update),
        so live frames can hold it as a snapshot."""
        self.last_action = ""
        self.last_action_time: float | None = None
        self.timestamp = self.received = self.session_started = self.session_seconds = 0.0
        self.page_views = self.clicks = self.products_viewed = self.searches = self.coupons = 0
        self.events_triggered = self.queries_run = self.reports_created = self.dashboards_viewed = 0
        self.scroll_depth = 0.0
        self.cart_value = 0.0
        self.items_in_cart = 0
        self.is_active = self.online = self.cart_open = False
        self.stages = 0
        self.fingerprint = 0
        self.last_order_at = -math.inf
        self.last_order_id: str | None = None


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


_Share = tuple[str, str, str, str, int, int, int]
"""A shopper's part of the aggregates: activity, membership, window, location, session ms,
items, cart cents."""


def _cents(dollars: float) -> int:
    return round(dollars * 100)


_SECOND_TEXT: dict[int, str] = {}
"""ISO text of whole seconds already formatted: a shopper's view holds four times, mostly within
the same few seconds, and isoformat costs several times the lookup."""


def _iso(moment: float | None) -> str | None:
    """UTC ISO 8601 with milliseconds, as datetime.isoformat(timespec="milliseconds") gives."""
    if moment is None or not math.isfinite(moment):
        return None
    # Split and round the way datetime.fromtimestamp does (fraction to microseconds, half even).
    fraction, whole_seconds = math.modf(moment)
    micro = round(fraction * 1e6)
    whole = int(whole_seconds)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    prefix = _SECOND_TEXT.get(whole)
    if prefix is None:
        try:
            prefix = datetime.fromtimestamp(whole, UTC).isoformat()[:19]
        except (OverflowError, OSError, ValueError):
            return None
        if len(_SECOND_TEXT) >= 4096:
            _SECOND_TEXT.clear()
        _SECOND_TEXT[whole] = prefix
    return f"{prefix}.{micro // 1000:03d}+00:00"


def _given_or_stored(cart_value: float | None, shopper: Shopper | None) -> float:
    """The cart value an event names, else the shopper's last known one."""
    if cart_value is not None:
        return cart_value
    return shopper.cart_value if shopper is not None else 0.0


def _context(shopper: Shopper) -> dict[str, Any]:
    """The shopper details every event carries."""
    return {
        "location": shopper.location,
        "activity": shopper.activity,
        "membership": shopper.membership,
        "cartValue": round(shopper.cart_value, 2),
        "itemsInCart": shopper.items_in_cart,
    }


def _event(
    kind: str, shopper: Shopper, at: float, extra: dict[str, Any] | None = None
) -> ShoppingEvent:
    # A plain function with a dict, not a method with **kwargs: about one runs per update.
    props = _context(shopper)
    if extra:
        props.update(extra)
    return ShoppingEvent(kind, shopper.user_id, shopper.user_name, at, props)


def _went_down(old: Mapping[str, float], new: Mapping[str, float]) -> bool:
    """True when any of the old minutes is higher than (or missing from) the new."""
    # A loop, not any() over a generator: this runs on every update that has featureTime.
    for name, minutes in old.items():  # noqa: SIM110
        if new.get(name, 0.0) < minutes:
            return True
    return False


def _bump(table: dict[str, int], key: str, delta: int) -> None:
    table[key] = table.get(key, 0) + delta


_progress_fields = operator.itemgetter(
    "page_views",
    "click_count",
    "products_viewed",
    "searches_performed",
    "coupons_applied",
    "events_triggered",
    "queries_run",
    "session_duration",
    "feature_time",
    "reports_created",
    "dashboards_viewed",
)

_identity_fields = operator.itemgetter(
    "user_name",
    "company",
    "membership_type",
    "delivery_window",
    "active_feature",
    "features_used",
    "last_action",
    "scroll_depth",
    "last_action_time",
)

_fingerprint_fields = operator.itemgetter(
    "is_active",
    "page_views",
    "click_count",
    "items_in_cart",
    "cart_value",
    "active_feature",
    "last_action",
    "session_duration",
    "products_viewed",
    "searches_performed",
    "coupons_applied",
    "events_triggered",
    "user_name",
)
"""What tells a repeated update from a new one with the same timestamp; taken from the model's
field dict in C (pydantic attribute access costs several times a plain one)."""


def glimpse(shopper: Shopper) -> tuple[Any, ...]:
    """What a shopper's view shows, as a tuple. As good as a copy: every field holds a str,
    number, bool, None, tuple or a featureTime mapping that updates replace and never change in
    place, so a live frame can keep it and render the view at publish time later."""
    # Plain attribute reads, not operator.attrgetter: the interpreter specialises them for
    # slots, which takes half the time of attrgetter's generic lookups (taken per update).
    return (
        shopper.user_id,
        shopper.user_name,
        shopper.location,
        shopper.membership,
        shopper.delivery_window,
        shopper.activity,
        shopper.features_used,
        shopper.feature_time,
        shopper.online,
        shopper.is_active,
        shopper.session_seconds,
        shopper.session_started,
        shopper.cart_value,
        shopper.items_in_cart,
        shopper.page_views,
        shopper.clicks,
        shopper.scroll_depth,
        shopper.products_viewed,
        shopper.searches,
        shopper.coupons,
        shopper.events_triggered,
        shopper.last_action,
        shopper.last_action_time,
        shopper.timestamp,
        shopper.received,
    )


def view_of(glimpsed: tuple[Any, ...]) -> dict[str, Any]:
    """The public JSON form of a shopper from its `glimpse` (never an email: none is kept)."""
    (
        user_id,
        user_name,
        location,
        membership,
        delivery_window,
        activity,
        features_used,
        feature_time,
        online,
        is_active,
        session_seconds,
        session_started,
        cart_value,
        items_in_cart,
        page_views,
        clicks,
        scroll_depth,
        products_viewed,
        searches,
        coupons,
        events_triggered,
        last_action,
        last_action_time,
        timestamp,
        received,
    ) = glimpsed
    return {
        "userId": user_id,
        "userName": user_name,
        "location": location,
        "membershipType": membership,
        "deliveryWindow": delivery_window,
        "activeFeature": activity,
        "featuresUsed": list(features_used),
        "featureTime": dict(feature_time),
        "online": online,
        "isActive": is_active,
        "sessionSeconds": round(session_seconds, 1),
        "sessionStartedAt": _iso(session_started or None),
        "cartValue": round(cart_value, 2),
        "itemsInCart": items_in_cart,
        "pageViews": page_views,
        "clickCount": clicks,
        "scrollDepth": scroll_depth,
        "productsViewed": products_viewed,
        "searchesPerformed": searches,
        "couponsApplied": coupons,
        "eventsTriggered": events_triggered,
        "lastAction": last_action,
        "lastActionTime": _iso(last_action_time),
        "timestamp": _iso(timestamp),
        "lastSeen": _iso(received),
    }


_ZERO = Shopper("")
"""A shopper with every count at zero: the baseline of a new session."""


class ShopperStore:
    """Shopper state keyed by `userId`, with sessions, orders, abandonment and live aggregates.

    Every method takes `now` (seconds since the epoch, the service's clock) so that lifecycle
    windows are measured by when updates arrive, not by the producers' clocks.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # One regex instead of a loop over phrases: it runs on every update's lastAction.
        self._order_phrase = re.compile("|".join(map(re.escape, settings.order_phrases)) or "(?!)")
        # Both orders are by last arrival, so expiry only ever looks at the front.
        self._shoppers: OrderedDict[str, Shopper] = OrderedDict()
        self._online: OrderedDict[str, Shopper] = OrderedDict()
        self.aggregates = Aggregates()
        self.counters = Counters()
        cap = settings.label_cap
        self.labels = {
            name: LabelCap(name, cap)
            for name in ("activity", "membership", "delivery_window", "location")
        }
        self._actions = LabelCap("last_action", 4 * cap)
        self.orders_recent = Recent(60, 60.0)
        self.order_value_recent = Recent(60, 60.0)
        self.abandonments_recent = Recent(60, 60.0)
        self.events_recent = Recent(60, 1.0)
        self.last_update: float | None = None

    # ----- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._shoppers)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._shoppers

    def get(self, user_id: str) -> Shopper | None:
        """The shopper with this id, if tracked."""
        return self._shoppers.get(user_id)

    def newest(self, *, online_only: bool = False, limit: int = 100) -> list[Shopper]:
        """Shoppers by most recent update first."""
        source = self._online if online_only else self._shoppers
        return list(islice(reversed(source.values()), limit))

    def online_count(self) -> int:
        return len(self._online)

    # ----- writing -----------------------------------------------------------------------

    def apply(self, update: ShopperUpdate, now: float) -> list[ShoppingEvent] | None:
        """Fold one update in; the events it implies, or None when it was stale or a duplicate."""
        at = epoch(update.timestamp)
        fingerprint = hash(_fingerprint_fields(update.__dict__))
        shopper = self._shoppers.get(update.user_id)
        if shopper is not None:
            if at < shopper.timestamp:
                self.counters.stale += 1
                return None
            if at == shopper.timestamp and fingerprint == shopper.fingerprint:
                self.counters.duplicate += 1
                return None
            held = self._share(shopper)
            self._shoppers.move_to_end(update.user_id)
            first_sight = False
        else:
            shopper = Shopper(update.user_id)
            self._shoppers[update.user_id] = shopper
            held = None
            first_sight = True

        out: list[ShoppingEvent] = []
        before_at, before_action, before_activity = (
            shopper.timestamp,
            shopper.last_action.lower(),
            shopper.activity,
        )
        self._set_identity(shopper, update, at)
        shopper.fingerprint = fingerprint
        shopper.timestamp = at
        shopper.received = now
        self.last_update = now

        restarted, progress = self._count_progress(shopper, update, first_sight)
        if restarted and shopper.online:
            self._end_session(shopper, "new_session", at, out)
        if update.is_active and not shopper.online:
            self._start_session(shopper, update, at, out)

        self._follow_actions(
            shopper, update, at, before_at, before_action, before_activity, progress, out
        )
        shopper.is_active = update.is_active
        shopper.session_seconds = self._session_seconds(shopper, update, at)
        if shopper.online and not update.is_active:
            self._end_session(shopper, "signed_out", at, out)
        if shopper.online:
            self._online[shopper.user_id] = shopper
            self._online.move_to_end(shopper.user_id)
        self._move_share(held, self._share(shopper))
        if out:
            # Inline of _count: every derived event has a known type.
            events = self.counters.events
            for item in out:
                events[item.type] = events.get(item.type, 0) + 1
            self.events_recent.add(now, len(out))
        return out

    def apply_event(self, event: ShopperEventIn, now: float) -> list[ShoppingEvent]:
        """Record an explicit event; orders, abandonments and cart moves count like derived ones."""
        at = epoch(event.timestamp)
        shopper = self._shoppers.get(event.user_id)
        props: dict[str, Any] = {}
        if shopper is not None:
            props.update(_context(shopper))
        for key, value in event.model_dump(
            by_alias=True, exclude_none=True, exclude={"type", "user_id", "timestamp", "user_name"}
        ).items():
            props[key] = value
        name = event.user_name or (shopper.user_name if shopper else event.user_id)
        happened = ShoppingEvent(event.type, event.user_id, name, at, props)
        follow: list[ShoppingEvent] = []
        kind = event.type
        if kind == ev.ORDER_COMPLETED:
            if self._is_new_order(shopper, at, event.order_id):
                value = event.order_value
                if value is None:
                    value = _given_or_stored(event.cart_value, shopper)
                self._count_order(shopper, value, at, now, event.order_id)
        elif kind == ev.CART_ABANDONED:
            self._count_abandonment(_given_or_stored(event.cart_value, shopper), now)
            if shopper is not None:
                shopper.cart_open = False
        elif kind in (ev.CART_ADD, ev.CART_REMOVE):
            self._apply_cart_event(shopper, event)
        elif kind == ev.CHECKOUT_STARTED and shopper is not None:
            self._reach(shopper, _CHECKOUT)
        elif kind == ev.SESSION_ENDED and shopper is not None and shopper.online:
            self._withdraw(shopper)
            self._end_session(shopper, event.reason or "ended", at, follow, announce=False)
            self._deposit(shopper)
        happened_all = [happened, *follow]
        self._count(happened_all, now)
        self.last_update = now
        return happened_all

    def erase(self, user_id: str) -> bool:
        """Forget a shopper entirely (no session end, no abandonment: the data is gone)."""
        shopper = self._shoppers.pop(user_id, None)
        if shopper is None:
            return False
        self._withdraw(shopper)
        self._online.pop(user_id, None)
        return True

    def expire(self, now: float) -> list[ShoppingEvent]:
        """End sessions idle past the active window; forget shoppers unseen for the retention."""
        out: list[ShoppingEvent] = []
        idle_before = now - self.settings.active_window
        while self._online:
            shopper = next(iter(self._online.values()))
            if shopper.received >= idle_before:
                break
            self._withdraw(shopper)
            self._end_session(shopper, "idle", shopper.timestamp, out)
            self._deposit(shopper)
        forget_before = now - self.settings.retention
        while self._shoppers:
            shopper = next(iter(self._shoppers.values()))
            if shopper.received >= forget_before:
                break
            self.erase(shopper.user_id)
        self._count(out, now)
        return out

    # ----- snapshots ------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as plain JSON-able data."""
        fields = Shopper.__slots__
        rows = []
        for shopper in self._shoppers.values():
            row = [getattr(shopper, f) for f in fields]
            rows.append(row)
        c = self.counters
        return {
            "fields": list(fields),
            "shoppers": rows,
            "counters": {
                name: getattr(c, name)
                for name in c.__dataclass_fields__
                if name not in ("session_duration", "order_value_hist")
            },
            "histograms": {
                "session_duration": c.session_duration.state(),
                "order_value": c.order_value_hist.state(),
            },
            "recent": {
                "orders": self.orders_recent.state(),
                "order_value": self.order_value_recent.state(),
                "abandonments": self.abandonments_recent.state(),
                "events": self.events_recent.state(),
            },
            "labels": {name: cap.values() for name, cap in self.labels.items()},
            "overflow": {name: cap.overflow for name, cap in self.labels.items()},
            "lastUpdate": self.last_update,
        }

    def import_state(self, state: dict[str, Any]) -> None:
        """Replace this (empty) store's contents with an exported state."""
        for name, values in state.get("labels", {}).items():
            cap = self.labels.get(name)
            if cap is not None:
                for value in values:
                    cap(value)
                cap.overflow = int(state.get("overflow", {}).get(name, 0))
        fields = state["fields"]
        for row in state["shoppers"]:
            shopper = Shopper("")
            for name, value in zip(fields, row, strict=True):
                if name in Shopper.__slots__:
                    setattr(shopper, name, value)
            shopper.features_used = self.labels["activity"].many(shopper.features_used)
            # Older snapshots hold [name, minutes] pairs, newer ones an object: dict() takes both.
            shopper.feature_time = dict(shopper.feature_time)
            if shopper.last_order_at is None:  # JSON has no -inf
                shopper.last_order_at = -math.inf
            self._shoppers[shopper.user_id] = shopper
            if shopper.online:
                self._online[shopper.user_id] = shopper
                self._deposit(shopper)
        c = self.counters
        for name, value in state.get("counters", {}).items():
            if hasattr(c, name):
                setattr(c, name, value)
        c.funnel = {stage: int(c.funnel.get(stage, 0)) for stage in FUNNEL_STAGES}
        hist = state.get("histograms", {})
        if "session_duration" in hist:
            c.session_duration.restore(hist["session_duration"])
        if "order_value" in hist:
            c.order_value_hist.restore(hist["order_value"])
        recent = state.get("recent", {})
        for key, window in (
            ("orders", self.orders_recent),
            ("order_value", self.order_value_recent),
            ("abandonments", self.abandonments_recent),
            ("events", self.events_recent),
        ):
            if key in recent:
                window.restore(recent[key])
        self.last_update = state.get("lastUpdate")

    # ----- the rules -----------------------------------------------------------------------

    def _set_identity(self, shopper: Shopper, update: ShopperUpdate, at: float) -> None:
        labels = self.labels
        (
            shopper.user_name,
            location,
            membership,
            window,
            active,
            features,
            action,
            shopper.scroll_depth,
            action_time,
        ) = _identity_fields(update.__dict__)
        # Most updates repeat the stored values; only a change goes through the label caps.
        if location != shopper.location:
            shopper.location = labels["location"](location)
        if membership != shopper.membership:
            shopper.membership = labels["membership"](membership)
        if window != shopper.delivery_window:
            shopper.delivery_window = labels["delivery_window"](window)
        activity = labels["activity"]
        if active != shopper.activity:
            shopper.activity = activity(active)
        if features != shopper.features_used:
            shopper.features_used = activity.many(features)
        if action != shopper.last_action:
            shopper.last_action = self._actions(action) if action else ""
        if action_time is None:
            shopper.last_action_time = None
        else:
            acted = epoch(action_time)
            # Most updates act at their own timestamp: share that float rather than keep a twin.
            shopper.last_action_time = at if acted == at else acted

    def _count_progress(
        self, shopper: Shopper, update: ShopperUpdate, first_sight: bool
    ) -> tuple[bool, tuple[int, int, int]]:
        """Turn cumulative per-session fields into counter increments.

        A decrease in any of them means the producer started a new session from zero, so the new
        values count in full. Returns whether a new session began, and the new product views,
        searches and coupons (for the events).
        """
        old = shopper
        # One C call reads every field (pydantic attribute access is several times slower than
        # a plain one), and the rules are spelled out rather than looped over: this runs for
        # every update.
        (
            page_views,
            clicks,
            products,
            searches,
            coupons,
            triggered,
            queries,
            minutes,
            feature_time,
            reports,
            dashboards,
        ) = _progress_fields(update.__dict__)
        old_time = old.feature_time
        if not feature_time:
            new_time: Mapping[str, float] = _NO_TIME
        elif feature_time == old_time:
            new_time = old_time
        else:
            new_time = self.labels["activity"].keyed(feature_time)
        restarted = not first_sight and (
            page_views < old.page_views
            or clicks < old.clicks
            or products < old.products_viewed
            or searches < old.searches
            or coupons < old.coupons
            or triggered < old.events_triggered
            or queries < old.queries_run
            or (old_time is not new_time and _went_down(old_time, new_time))
            or (minutes is not None and minutes * 60 + 1e-6 < old.session_seconds)
        )
        base = _ZERO if restarted else old
        progress = (
            products - base.products_viewed,
            searches - base.searches,
            coupons - base.coupons,
        )
        c = self.counters
        c.page_views += page_views - base.page_views
        c.clicks += clicks - base.clicks
        c.product_views += progress[0]
        c.searches += progress[1]
        c.coupons_applied += progress[2]
        if new_time is not old_time or restarted:
            seconds = c.activity_seconds
            old_base = _NO_TIME if restarted else old_time
            for name, spent in new_time.items():
                delta = spent - old_base.get(name, 0.0)
                if delta > 0:
                    seconds[name] = seconds.get(name, 0.0) + delta * 60
        old.page_views, old.clicks = page_views, clicks
        old.products_viewed, old.searches = products, searches
        old.coupons, old.events_triggered = coupons, triggered
        old.queries_run, old.reports_created = queries, reports
        old.dashboards_viewed = dashboards
        old.feature_time = new_time
        return restarted, progress

    def _follow_actions(
        self,
        shopper: Shopper,
        update: ShopperUpdate,
        at: float,
        before_at: float,
        before_action: str,
        before_activity: str,
        progress: tuple[int, int, int],
        out: list[ShoppingEvent],
    ) -> None:
        """Cart changes, checkout, orders, delivery scheduling, searches and product views."""
        viewed, searched, couponed = progress
        if viewed > 0:
            out.append(_event(ev.PRODUCT_VIEWED, shopper, at, {"count": viewed}))
        if searched > 0:
            out.append(_event(ev.SEARCH, shopper, at, {"count": searched}))
        if couponed > 0:
            out.append(_event(ev.COUPON_APPLIED, shopper, at, {"count": couponed}))

        action = update.last_action.lower()
        action_changed = action != before_action
        ordered = self._order_from_action(shopper, update, action, action_changed, before_at)
        old_items, old_value = shopper.items_in_cart, shopper.cart_value
        shopper.items_in_cart, shopper.cart_value = update.items_in_cart, update.cart_value
        diff = update.items_in_cart - old_items
        if diff > 0:
            self.counters.cart_items_added += diff
            shopper.cart_open = True
            self._reach(shopper, _CART)
            out.append(_event(ev.CART_ADD, shopper, at, {"items": diff}))
        elif diff < 0 and not (ordered or shopper.last_order_at > before_at):
            # Items that left the cart with an order since the last update were bought, not removed.
            self.counters.cart_items_removed += -diff
            out.append(_event(ev.CART_REMOVE, shopper, at, {"items": -diff}))
        if update.items_in_cart == 0:
            shopper.cart_open = False

        entering_checkout = shopper.activity.lower() == CHECKOUT_ACTIVITY and (
            before_activity != shopper.activity
        )
        if entering_checkout or (action_changed and "checkout" in action and not ordered):
            if not shopper.stages & _CHECKOUT:
                out.append(_event(ev.CHECKOUT_STARTED, shopper, at))
            self._reach(shopper, _CHECKOUT)
        if ordered:
            value = update.cart_value if update.cart_value > 0 else old_value
            self._count_order(shopper, value, at, shopper.received, None)
            out.append(_event(ev.ORDER_COMPLETED, shopper, at, {"orderValue": round(value, 2)}))
        if action_changed and not ordered and "deliver" in action:
            out.append(
                _event(
                    ev.DELIVERY_SCHEDULED, shopper, at, {"deliveryWindow": shopper.delivery_window}
                )
            )

    def _order_from_action(
        self,
        shopper: Shopper,
        update: ShopperUpdate,
        action: str,
        action_changed: bool,
        previous_at: float,
    ) -> bool:
        if not action or self._order_phrase.search(action) is None:
            return False
        if shopper.last_order_at > previous_at:
            return False  # an explicit order_completed arrived since the last update: same order
        if update.last_action_time is not None:
            return epoch(update.last_action_time) > shopper.last_order_at
        return action_changed

    def _is_new_order(self, shopper: Shopper | None, at: float, order_id: str | None) -> bool:
        if shopper is None:
            return True
        # Same id, or not after the last counted order (e.g. the "Placed order" update already
        # counted it): the same order.
        if order_id is not None and order_id == shopper.last_order_id:
            return False
        return at > shopper.last_order_at

    def _count_order(
        self, shopper: Shopper | None, value: float, at: float, now: float, order_id: str | None
    ) -> None:
        c = self.counters
        c.orders += 1
        c.order_value += value
        c.order_value_hist.observe(value)
        self.orders_recent.add(now)
        self.order_value_recent.add(now, value)
        if shopper is not None:
            shopper.last_order_at = max(at, shopper.last_order_at)
            shopper.last_order_id = order_id
            shopper.cart_open = False
            self._reach(shopper, _ORDER)

    def _count_abandonment(self, value: float, now: float) -> None:
        self.counters.abandonments += 1
        self.counters.abandoned_value += value
        self.abandonments_recent.add(now)

    def _apply_cart_event(self, shopper: Shopper | None, event: ShopperEventIn) -> None:
        items = event.items if event.items is not None else 1
        adding = event.type == ev.CART_ADD
        if adding:
            self.counters.cart_items_added += items
        else:
            self.counters.cart_items_removed += items
        if shopper is None:
            return
        # Move the stored cart too, so the next update's itemsInCart is not counted again.
        self._withdraw(shopper)
        if event.items_in_cart is not None:
            shopper.items_in_cart = event.items_in_cart
        else:
            shopper.items_in_cart = max(0, shopper.items_in_cart + (items if adding else -items))
        if event.cart_value is not None:
            shopper.cart_value = event.cart_value
        if adding:
            shopper.cart_open = True
            self._reach(shopper, _CART)
        self._deposit(shopper)

    def _start_session(
        self, shopper: Shopper, update: ShopperUpdate, at: float, out: list[ShoppingEvent]
    ) -> None:
        minutes = update.session_duration
        shopper.session_started = at - minutes * 60 if minutes else at
        shopper.online = True
        shopper.stages = 0
        self.counters.sessions_started += 1
        self._reach(shopper, _BROWSING)
        if shopper.items_in_cart > 0 or update.items_in_cart > 0:
            shopper.cart_open = shopper.cart_open or update.items_in_cart > 0
        out.append(_event(ev.SESSION_STARTED, shopper, at))

    def _end_session(
        self,
        shopper: Shopper,
        reason: str,
        at: float,
        out: list[ShoppingEvent],
        *,
        announce: bool = True,
    ) -> None:
        """Close the session; a cart left full with no order since items were added is abandoned."""
        self.counters.sessions_ended += 1
        self.counters.session_duration.observe(max(0.0, shopper.session_seconds))
        if announce:
            out.append(
                _event(
                    ev.SESSION_ENDED,
                    shopper,
                    at,
                    {"reason": reason, "sessionSeconds": round(shopper.session_seconds, 1)},
                )
            )
        if shopper.items_in_cart > 0 and shopper.cart_open:
            self._count_abandonment(shopper.cart_value, shopper.received)
            out.append(_event(ev.CART_ABANDONED, shopper, at, {"items": shopper.items_in_cart}))
            shopper.cart_open = False
        shopper.online = False
        self._online.pop(shopper.user_id, None)

    def _session_seconds(self, shopper: Shopper, update: ShopperUpdate, at: float) -> float:
        if update.session_duration is not None:
            return update.session_duration * 60
        return max(0.0, at - shopper.session_started) if shopper.session_started else 0.0

    def _reach(self, shopper: Shopper, stage: int) -> None:
        """Count a funnel stage once per session."""
        if shopper.stages & stage:
            return
        shopper.stages |= stage
        for name, bit in _STAGE_BITS.items():
            if bit == stage:
                self.counters.funnel[name] += 1

    # ----- aggregates ----------------------------------------------------------------------

    def _withdraw(self, shopper: Shopper) -> None:
        self._add_share(self._share(shopper), -1)

    def _deposit(self, shopper: Shopper) -> None:
        self._add_share(self._share(shopper), 1)

    @staticmethod
    def _share(shopper: Shopper) -> _Share | None:
        """What a shopper adds to the aggregates (None when offline: nothing)."""
        if not shopper.online:
            return None
        items = shopper.items_in_cart
        return (
            shopper.activity or UNKNOWN,
            shopper.membership or UNKNOWN,
            shopper.delivery_window or UNKNOWN,
            shopper.location or UNKNOWN,
            round(shopper.session_seconds * 1000),
            items,
            _cents(shopper.cart_value) if items > 0 else 0,
        )

    def _add_share(self, share: _Share | None, sign: int) -> None:
        if share is None:
            return
        agg = self.aggregates
        agg.active += sign
        activity, membership, window, location, session_ms, items, cents = share
        _bump(agg.by_activity, activity, sign)
        _bump(agg.by_membership, membership, sign)
        _bump(agg.by_delivery_window, window, sign)
        _bump(agg.by_location, location, sign)
        agg.session_ms += sign * session_ms
        if items > 0:
            agg.carts += sign
            agg.cart_items += sign * items
            agg.cart_cents += sign * cents

    def _move_share(self, old: _Share | None, new: _Share | None) -> None:
        """Replace a shopper's old share by the new one, touching only what changed."""
        if old == new:
            return
        if old is None or new is None:
            self._add_share(old, -1)
            self._add_share(new, 1)
            return
        agg = self.aggregates
        tables = (agg.by_activity, agg.by_membership, agg.by_delivery_window, agg.by_location)
        for table, was, now in zip(tables, old[:4], new[:4], strict=True):
            if was != now:
                _bump(table, was, -1)
                _bump(table, now, 1)
        agg.session_ms += new[4] - old[4]
        agg.carts += (new[5] > 0) - (old[5] > 0)
        agg.cart_items += new[5] - old[5]
        agg.cart_cents += new[6] - old[6]

    # ----- events ---------------------------------------------------------------------------

    def count_events(self, happened: list[ShoppingEvent], now: float) -> None:
        """Count events that change no shopper (plain log lines pushed through Loki)."""
        self._count(happened, now)

    def _count(self, happened: list[ShoppingEvent], now: float) -> None:
        events = self.counters.events
        for item in happened:
            label = item.type if item.type in ev.KNOWN_TYPES else OTHER
            events[label] = events.get(label, 0) + 1
        if happened:
            self.events_recent.add(now, len(happened))

    # ----- views ----------------------------------------------------------------------------

    def view(self, shopper: Shopper) -> dict[str, Any]:
        """The public JSON form of a shopper (never an email: the store never had one)."""
        return view_of(glimpse(shopper))

    def summary(self, now: float) -> dict[str, Any]:
        """The key metrics of the brief; O(label values), independent of the number of shoppers."""
        agg, c = self.aggregates, self.counters
        active = agg.active
        orders_hour = int(self.orders_recent.total(now))
        abandoned_hour = int(self.abandonments_recent.total(now))
        finished = orders_hour + abandoned_hour
        distribution = sorted(
            ((name, n) for name, n in agg.by_activity.items() if n > 0),
            key=lambda pair: (-pair[1], pair[0]),
        )
        activities = [
            {"activity": name, "shoppers": n, "share": round(n / active, 4) if active else 0.0}
            for name, n in distribution
        ]
        return {
            "time": _iso(now),
            "activeShoppers": active,
            "trackedShoppers": len(self._shoppers),
            "activeCarts": agg.carts,
            "cartItems": agg.cart_items,
            "totalCartValue": agg.cart_cents / 100,
            "averageCartValue": round(agg.cart_cents / 100 / agg.carts, 2) if agg.carts else 0.0,
            "ordersLastHour": orders_hour,
            "orderValueLastHour": round(self.order_value_recent.total(now), 2),
            "abandonmentsLastHour": abandoned_hour,
            "cartAbandonmentRate": round(abandoned_hour / finished, 4) if finished else 0.0,
            "averageSessionSeconds": round(agg.session_ms / 1000 / active, 1) if active else 0.0,
            "productViews": c.product_views,
            "searches": c.searches,
            "pageViews": c.page_views,
            "ordersTotal": c.orders,
            "cartItemsAdded": c.cart_items_added,
            "cartItemsRemoved": c.cart_items_removed,
            "eventsPerSecond": round(self.events_recent.total(now) / 60, 2),
            "eventsTotal": sum(c.events.values()),
            "activityDistribution": activities,
            "topActivities": activities[:5],
            "activitySeconds": {k: round(v, 1) for k, v in c.activity_seconds.items()},
            "funnel": dict(c.funnel),
        }
