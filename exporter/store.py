"""ShopperStore: every shopper's current state, their sessions, and aggregates kept up to date.

Each update is folded into the shopper's state; what changed becomes shopping events and counter
increments. Aggregates over online shoppers are adjusted on every change (take the shopper's old
contribution out, put the new one in), so a scrape or a summary costs O(series), never O(shoppers).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from itertools import islice
from typing import Any, Final, NamedTuple

from exporter import events as ev
from exporter import outcomes, reported
from exporter.capacity import Capacity
from exporter.events import ShoppingEvent
from exporter.introductions import Introductions
from exporter.labels import OTHER, UNKNOWN, LabelCap
from exporter.lastseen import SeenQueue
from exporter.model import ShopperEventIn, ShopperUpdate, epoch
from exporter.orders import OrderRules
from exporter.outcomes import Unapplied
from exporter.settings import Settings
from exporter.shopper import NO_TIME
from exporter.shopper import Shopper as Shopper  # where readers of the store import it from
from exporter.skew import ClockSkew
from exporter.tallies import FUNNEL_STAGES, Aggregates, Counters, Recent
from exporter.views import glimpse, iso_time, view_of

_BROWSING, _CART, _CHECKOUT, _ORDER = 1, 2, 4, 8
_STAGE_BITS: Final = dict(zip(FUNNEL_STAGES, (_BROWSING, _CART, _CHECKOUT, _ORDER), strict=True))
CHECKOUT_ACTIVITY: Final = "checkout"
CHECKOUT_FEATURE: Final = "Checkout"
"""The activity an explicit checkout_started moves a shopper to, as the brief spells it."""


class StoreTables(NamedTuple):
    """A store's shoppers (by last arrival), the queue of online ones and its last-action cap."""

    shoppers: dict[str, Shopper]
    online: SeenQueue
    actions: LabelCap


_Share = tuple[str, str, str, str, int, int, int]
"""A shopper's part of the aggregates: activity, membership, window, location, session ms,
items, cart cents."""


def _cents(dollars: float) -> int:
    return round(dollars * 100)


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


def _is_online(shopper: Shopper) -> bool:
    return shopper.online


_ZERO = Shopper("")
"""A shopper with every count at zero: the baseline of a new session."""


class ShopperStore:
    """Shopper state keyed by `userId`, with sessions, orders, abandonment and live aggregates.

    Every method takes `now` (seconds since the epoch, the service's clock) so that lifecycle
    windows are measured by when updates arrive, not by the producers' clocks.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.orders = OrderRules(settings.order_phrases)
        # Both orders are by last arrival, so expiry only ever looks at the front. A plain dict
        # keeps its order too; a shopper seen again is taken out and put back at the end.
        self._shoppers: dict[str, Shopper] = {}
        self._online = SeenQueue(_is_online)
        self.capacity = Capacity(settings.max_shoppers)
        self._skew = ClockSkew(settings.max_clock_skew)
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
        self.introduced: Introductions | None = None
        """Set by a search index that wants to hear of new, renamed and moved shoppers."""

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
        source = self._online.newest() if online_only else reversed(self._shoppers.values())
        return list(islice(source, limit))

    def online_count(self) -> int:
        return self.aggregates.active

    # ----- writing -----------------------------------------------------------------------

    def apply(
        self, update: ShopperUpdate, now: float, at: float | None = None
    ) -> list[ShoppingEvent] | Unapplied:
        """Fold one update in: the events it implies, or why it changed nothing.

        `at` is the update's time in epoch seconds, if the caller has it already.
        """
        if at is None:
            at = epoch(update.timestamp)
        fingerprint = hash(_fingerprint_fields(update.__dict__))
        shopper = self._shoppers.get(update.user_id)
        if shopper is not None:
            if at < shopper.timestamp and self._skew.trusted(shopper.timestamp, now):
                self.counters.stale += 1
                return outcomes.stale(at, shopper.timestamp)
            # (A stored time beyond the clock-skew limit came from before that rule: it yields.)
            if at == shopper.timestamp and fingerprint == shopper.fingerprint:
                self.counters.duplicate += 1
                return outcomes.duplicate("the same update (timestamp and content) again")
            held = self._share(shopper)
            self._shoppers[update.user_id] = self._shoppers.pop(update.user_id)  # to the end
            first_sight = False
        else:
            if self.capacity.full(len(self._shoppers)) and not self._make_room():
                self.capacity.refused += 1
                return outcomes.no_room(self.capacity.limit)
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
        name, place = shopper.user_name, shopper.location
        self._set_identity(shopper, update, at)
        if self.introduced is not None and (
            first_sight or shopper.user_name != name or shopper.location is not place
        ):
            self.introduced.add(shopper.user_id, len(self._shoppers))
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
            self._online.push(shopper)
        else:
            self.capacity.left(shopper)
        self._move_share(held, self._share(shopper))
        if out:
            # Inline of _count: every derived event has a known type.
            events = self.counters.events
            for item in out:
                events[item.type] = events.get(item.type, 0) + 1
            self.events_recent.add(now, len(out))
        return out

    def apply_event(
        self, event: ShopperEventIn, now: float, at: float | None = None
    ) -> list[ShoppingEvent] | Unapplied:
        """Record an explicit event; it moves the shopper's state as the action itself would.

        Orders, abandonments and cart moves count like derived ones. An order already counted,
        or an action an update already reported, is a duplicate: nothing changes.
        """
        if at is None:
            at = epoch(event.timestamp)
        shopper = self._shoppers.get(event.user_id)
        kind = event.type
        if kind == ev.ORDER_COMPLETED and not self.orders.is_new(shopper, at, event.order_id):
            self.counters.duplicate += 1
            return outcomes.duplicate("this order was counted already")
        if kind in reported.KINDS:
            if shopper is not None and not reported.take_event(shopper, kind, at):
                self.counters.duplicate += 1
                field = reported.FIELDS[reported.KINDS[kind]]
                return outcomes.duplicate(f"already counted: an update's {field} included it")
            self._count_reported(kind)
        props: dict[str, Any] = {}
        if shopper is not None:
            props.update(_context(shopper))
        for key, value in event.model_dump(
            by_alias=True, exclude_none=True, exclude={"type", "user_id", "timestamp", "user_name"}
        ).items():
            props[key] = value
        name = event.user_name or (shopper.user_name if shopper else event.user_id)
        happened = ShoppingEvent(kind, event.user_id, name, at, props)
        follow: list[ShoppingEvent] = []
        if shopper is not None:
            self._seen(shopper, now)
            self._withdraw(shopper)
        if kind == ev.ORDER_COMPLETED:
            value = event.order_value
            if value is None:
                value = _given_or_stored(event.cart_value, shopper)
            self._count_order(shopper, value, at, now, event.order_id)
            if shopper is not None:
                # The cart was bought: nothing is left in it to add, remove or abandon.
                shopper.items_in_cart, shopper.cart_value = 0, 0.0
        elif kind == ev.CART_ABANDONED:
            self._count_abandonment(_given_or_stored(event.cart_value, shopper), now)
            if shopper is not None:
                shopper.cart_open = False
        elif kind in (ev.CART_ADD, ev.CART_REMOVE):
            self._apply_cart_event(shopper, event)
        elif shopper is None:
            pass
        elif kind == ev.CHECKOUT_STARTED:
            shopper.activity = self.labels["activity"](event.activity or CHECKOUT_FEATURE)
            self._reach(shopper, _CHECKOUT)
        elif kind == ev.DELIVERY_SCHEDULED and event.delivery_window:
            shopper.delivery_window = self.labels["delivery_window"](event.delivery_window)
        elif kind == ev.SESSION_ENDED and shopper.online:
            self._end_session(shopper, event.reason or "ended", at, follow, announce=False)
            self.capacity.left(shopper)
        if shopper is not None:
            self._deposit(shopper)
        happened_all = [happened, *follow]
        self._count(happened_all, now)
        self.last_update = now
        return happened_all

    def _seen(self, shopper: Shopper, now: float) -> None:
        """An explicit event of a tracked shopper: seen now, like an update would be."""
        user_id = shopper.user_id
        shopper.received = now
        self._shoppers[user_id] = self._shoppers.pop(user_id)  # to the end
        if shopper.online:
            self._online.push(shopper)
        else:
            self.capacity.left(shopper)

    def _count_reported(self, kind: str) -> None:
        c = self.counters
        if kind == ev.PRODUCT_VIEWED:
            c.product_views += 1
        elif kind == ev.SEARCH:
            c.searches += 1
        else:
            c.coupons_applied += 1

    def changed_since(self, changed: int) -> list[Shopper]:
        """Shoppers whose `changed` is at least this, in the order they changed."""
        found: list[Shopper] = []
        shoppers = self._shoppers
        # Every change moves its shopper to the back and raises `changed`: read from the back.
        for shopper in reversed(shoppers.values()):
            if shopper.changed < changed:
                break
            found.append(shopper)
        found.reverse()
        return found

    def erase(self, user_id: str) -> bool:
        """Forget a shopper entirely (no session end, no abandonment: the data is gone)."""
        shopper = self._shoppers.pop(user_id, None)
        if shopper is None:
            return False
        self._withdraw(shopper)
        # Gone: a time of its own makes every queue entry of this shopper stale.
        shopper.online, shopper.received = False, -math.inf
        return True

    def _make_room(self) -> bool:
        """Forget the offline shopper unseen the longest; False when every shopper is online."""
        victim = self.capacity.longest_unseen()
        if victim is None:
            return False
        self.erase(victim.user_id)
        self.capacity.evicted += 1
        return True

    def expire(self, now: float, limit: int | None = None) -> list[ShoppingEvent]:
        """End sessions idle past the active window; forget shoppers unseen for the retention
        (at most `limit` of each, the longest unseen first; `expiry_due` says if more wait)."""
        out: list[ShoppingEvent] = []
        idle_before = now - self.settings.active_window
        ended = 0
        while (shopper := self._online.front()) is not None and shopper.received < idle_before:
            if ended == limit:
                break
            self._withdraw(shopper)
            self._end_session(shopper, "idle", shopper.timestamp, out)
            self.capacity.idled(shopper)
            ended += 1
        forget_before = now - self.settings.retention
        gone: list[str] = []
        for user_id, shopper in self._shoppers.items():  # oldest first; one pass, then erase
            if shopper.received >= forget_before or len(gone) == limit:
                break
            gone.append(user_id)
        for user_id in gone:
            self.erase(user_id)
        self._count(out, now)
        return out

    def expiry_due(self, now: float) -> bool:
        """Whether a session is idle past the active window or a shopper unseen past the
        retention (what `expire` would act on)."""
        front = self._online.front()
        if front is not None and front.received < now - self.settings.active_window:
            return True
        oldest = next(iter(self._shoppers.values()), None)
        return oldest is not None and oldest.received < now - self.settings.retention

    # ----- snapshots ------------------------------------------------------------------------

    def tables(self) -> StoreTables:
        """What snapshots read, and fill in an empty store: the shoppers and the online ones by
        last arrival, and the last-action cap (the other state is public)."""
        return StoreTables(self._shoppers, self._online, self._actions)

    def recount(self) -> None:
        """Rebuild the aggregates from the online shoppers (after a restore that had none)."""
        self.aggregates = Aggregates()
        for shopper in self._shoppers.values():
            if shopper.online:
                self._deposit(shopper)

    def fit(self) -> None:
        """Forget shoppers beyond --max-shoppers, offline ones unseen longest first, then the
        oldest (a snapshot from a run with a higher --max-shoppers keeps the latest seen)."""
        while self._shoppers and self.capacity.full(len(self._shoppers) - 1):
            if not self._make_room():
                self.erase(next(iter(self._shoppers)))

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
            new_time: Mapping[str, float] = NO_TIME
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
        tally = old.reported
        if tally is None or restarted:
            old.reported = None
            progress = (
                products - base.products_viewed,
                searches - base.searches,
                coupons - base.coupons,
            )
        else:
            progress, old.reported = reported.beyond_events(
                tally, reported.by_updates(old), (products, searches, coupons)
            )
        c = self.counters
        c.page_views += page_views - base.page_views
        c.clicks += clicks - base.clicks
        c.product_views += progress[0]
        c.searches += progress[1]
        c.coupons_applied += progress[2]
        if new_time is not old_time or restarted:
            seconds = c.activity_seconds
            old_base = NO_TIME if restarted else old_time
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
        ordered = self.orders.from_action(shopper, update, action, action_changed, before_at)
        old_value = shopper.cart_value
        if ordered or at > shopper.last_order_at:
            self._follow_cart(shopper, update, at, before_at, ordered, out)
        # else: the update was composed before an order counted already, which emptied the cart.

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

    def _follow_cart(
        self,
        shopper: Shopper,
        update: ShopperUpdate,
        at: float,
        before_at: float,
        ordered: bool,
        out: list[ShoppingEvent],
    ) -> None:
        """itemsInCart changes become cart_add / cart_remove (bought items are not removals)."""
        old_items = shopper.items_in_cart
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
            self.orders.remember(shopper, at, order_id)
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
        if event.items_in_cart is not None:
            shopper.items_in_cart = event.items_in_cart
        else:
            shopper.items_in_cart = max(0, shopper.items_in_cart + (items if adding else -items))
        if event.cart_value is not None:
            shopper.cart_value = event.cart_value
        if adding:
            shopper.cart_open = True
            self._reach(shopper, _CART)

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
        shopper.online = False  # its entry in the online queue is stale from now on

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
            "time": iso_time(now),
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
