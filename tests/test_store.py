"""ShopperStore: every rule of the store semantics, one behaviour per test."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from exporter import views
from exporter.events import ShoppingEvent
from exporter.model import ShopperEventIn, ShopperUpdate
from exporter.outcomes import Unapplied
from exporter.settings import Settings
from exporter.store import ShopperStore
from exporter.views import iso_time as view_time

T0 = 1_800_000_000.0


def update(at: float = T0, user: str = "s1", **fields: Any) -> ShopperUpdate:
    body: dict[str, Any] = {
        "userId": user,
        "userName": "Sarah Johnson",
        "timestamp": _iso(at),
        "isActive": True,
    }
    body.update(fields)
    return ShopperUpdate.model_validate(body)


def event(kind: str, at: float = T0, user: str = "s1", **fields: Any) -> ShopperEventIn:
    return ShopperEventIn.model_validate(
        {"type": kind, "userId": user, "timestamp": _iso(at), **fields}
    )


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def types(events: list[ShoppingEvent] | Unapplied) -> list[str]:
    assert isinstance(events, list), events
    return [e.type for e in events]


@pytest.fixture
def store() -> ShopperStore:
    return ShopperStore(Settings(active_window=300, retention=3600, label_cap=5))


class TestUpsert:
    def test_first_update_starts_a_session(self, store: ShopperStore) -> None:
        """A new shopper is tracked, online, and their session starts."""
        happened = store.apply(update(), T0)
        assert types(happened) == ["session_started"]
        assert len(store) == 1
        assert store.aggregates.active == 1
        assert store.counters.sessions_started == 1

    def test_same_user_id_updates_in_place(self, store: ShopperStore) -> None:
        """Sending the same userId again updates that shopper, not a new one."""
        store.apply(update(pageViews=1), T0)
        store.apply(update(T0 + 1, pageViews=5, userName="Sarah J."), T0 + 1)
        assert len(store) == 1
        shopper = store.get("s1")
        assert shopper is not None
        assert (shopper.page_views, shopper.user_name) == (5, "Sarah J.")

    def test_stale_update_is_ignored_and_counted(self, store: ShopperStore) -> None:
        """An update older than the stored one changes nothing; the reason names both times."""
        store.apply(update(T0 + 10, pageViews=9), T0)
        ignored = store.apply(update(T0, pageViews=1), T0 + 1)
        assert isinstance(ignored, Unapplied)
        assert (ignored.reason, ignored.at, ignored.stored) == ("stale", T0, T0 + 10)
        assert view_time(T0) in ignored.message
        assert view_time(T0 + 10) in ignored.message
        assert store.counters.stale == 1
        assert store.counters.page_views == 9

    def test_exact_duplicate_changes_nothing(self, store: ShopperStore) -> None:
        """Resending the same update is counted as a duplicate and has no effect."""
        store.apply(update(pageViews=3, itemsInCart=2), T0)
        ignored = store.apply(update(pageViews=3, itemsInCart=2), T0 + 1)
        assert isinstance(ignored, Unapplied)
        assert ignored.reason == "duplicate"
        assert store.counters.duplicate == 1
        assert store.counters.page_views == 3
        assert store.counters.cart_items_added == 2


class TestCumulativeFields:
    def test_positive_deltas_become_counters(self, store: ShopperStore) -> None:
        """Cumulative per-session fields count their increases."""
        store.apply(update(pageViews=10, productsViewed=4, searchesPerformed=1), T0)
        store.apply(update(T0 + 5, pageViews=14, productsViewed=7, searchesPerformed=3), T0 + 5)
        c = store.counters
        assert (c.page_views, c.product_views, c.searches) == (14, 7, 3)

    def test_decrease_means_a_new_session(self, store: ShopperStore) -> None:
        """A counter that goes down starts a new session and counts the new values in full."""
        store.apply(update(pageViews=10, sessionDuration=12), T0)
        happened = store.apply(update(T0 + 5, pageViews=2, sessionDuration=1), T0 + 5)
        assert types(happened)[:2] == ["session_ended", "session_started"]
        assert store.counters.page_views == 12
        assert store.counters.sessions_started == 2
        assert store.counters.session_duration.count == 1
        assert store.counters.session_duration.total == pytest.approx(720)

    def test_feature_time_becomes_activity_seconds(self, store: ShopperStore) -> None:
        """featureTime minutes become per-activity seconds, by increase."""
        store.apply(update(featureTime={"Browsing": 8, "Cart": 5}), T0)
        store.apply(update(T0 + 60, featureTime={"Browsing": 9, "Cart": 5}), T0 + 60)
        assert store.counters.activity_seconds == {"Browsing": 540, "Cart": 300}

    def test_progress_events(self, store: ShopperStore) -> None:
        """New product views, searches and coupons become events with their counts."""
        store.apply(update(), T0)
        happened = store.apply(
            update(T0 + 1, productsViewed=3, searchesPerformed=1, couponsApplied=1), T0 + 1
        )
        assert types(happened) == ["product_viewed", "search", "coupon_applied"]
        assert happened is not None
        assert happened[0].props["count"] == 3


class TestCart:
    def test_items_added_and_removed(self, store: ShopperStore) -> None:
        """itemsInCart changes become cart_add / cart_remove and item counters."""
        store.apply(update(itemsInCart=0), T0)
        added = store.apply(update(T0 + 1, itemsInCart=3, cartValue=30), T0 + 1)
        removed = store.apply(update(T0 + 2, itemsInCart=1, cartValue=10), T0 + 2)
        assert "cart_add" in types(added)
        assert "cart_remove" in types(removed)
        assert store.counters.cart_items_added == 3
        assert store.counters.cart_items_removed == 2
        assert (store.aggregates.carts, store.aggregates.cart_items) == (1, 1)
        assert store.aggregates.cart_cents == 1000

    def test_explicit_cart_event_is_not_counted_twice(self, store: ShopperStore) -> None:
        """An explicit cart_add moves the stored cart, so the next update does not recount it."""
        store.apply(update(itemsInCart=0), T0)
        store.apply_event(event("cart_add", T0 + 1, items=2, cartValue=20), T0 + 1)
        store.apply(update(T0 + 2, itemsInCart=2, cartValue=20), T0 + 2)
        assert store.counters.cart_items_added == 2


class TestOrders:
    def test_order_phrase_counts_once(self, store: ShopperStore) -> None:
        """An update whose lastAction says an order was placed is one order, however often sent."""
        store.apply(update(itemsInCart=3, cartValue=45.5), T0)
        placed = update(
            T0 + 1, itemsInCart=0, lastAction="Placed order", lastActionTime=_iso(T0 + 1)
        )
        happened = store.apply(placed, T0 + 1)
        store.apply(
            update(T0 + 2, itemsInCart=0, lastAction="Placed order", lastActionTime=_iso(T0 + 1)),
            T0 + 2,
        )
        assert "order_completed" in types(happened)
        assert "cart_remove" not in types(happened)
        assert store.counters.orders == 1
        assert store.counters.order_value == pytest.approx(45.5)
        assert store.counters.cart_items_removed == 0

    def test_phrases_are_configurable(self) -> None:
        """Custom order phrases replace the defaults."""
        store = ShopperStore(Settings(order_phrases=("bought it",)))
        store.apply(update(itemsInCart=1, cartValue=5), T0)
        store.apply(update(T0 + 1, lastAction="Placed order"), T0 + 1)
        store.apply(update(T0 + 2, lastAction="Bought it!"), T0 + 2)
        assert store.counters.orders == 1

    def test_explicit_event_and_phrase_are_one_order(self, store: ShopperStore) -> None:
        """An order_completed event and the "Placed order" update for it count once."""
        store.apply(update(itemsInCart=2, cartValue=20), T0)
        store.apply_event(event("order_completed", T0 + 1, orderId="o1", orderValue=20), T0 + 1)
        store.apply(
            update(T0 + 1, itemsInCart=0, lastAction="Placed order", lastActionTime=_iso(T0 + 1)),
            T0 + 2,
        )
        store.apply_event(event("order_completed", T0 + 1, orderId="o1", orderValue=20), T0 + 3)
        assert store.counters.orders == 1
        assert store.counters.cart_items_removed == 0

    def test_order_reaches_every_funnel_stage(self, store: ShopperStore) -> None:
        """A session that orders is counted once in each funnel stage."""
        store.apply(update(itemsInCart=1, cartValue=9), T0)
        store.apply(update(T0 + 1, itemsInCart=1, cartValue=9, activeFeature="Checkout"), T0 + 1)
        store.apply(update(T0 + 2, itemsInCart=0, lastAction="Placed order"), T0 + 2)
        store.apply(update(T0 + 3, itemsInCart=0, activeFeature="Checkout", pageViews=1), T0 + 3)
        assert store.counters.funnel == {"browsing": 1, "cart": 1, "checkout": 1, "order": 1}


class TestLifecycle:
    def test_is_active_false_ends_the_session(self, store: ShopperStore) -> None:
        """isActive false takes the shopper offline now and records the session length."""
        store.apply(update(sessionDuration=3), T0)
        happened = store.apply(update(T0 + 1, isActive=False, sessionDuration=4), T0 + 1)
        assert types(happened) == ["session_ended"]
        assert store.aggregates.active == 0
        assert len(store) == 1
        assert store.counters.session_duration.total == pytest.approx(240)

    def test_leaving_with_a_full_cart_is_an_abandonment(self, store: ShopperStore) -> None:
        """A session that ends with items and no order since they were added is abandoned."""
        store.apply(update(itemsInCart=2, cartValue=31.25), T0)
        happened = store.apply(
            update(T0 + 1, itemsInCart=2, cartValue=31.25, isActive=False), T0 + 1
        )
        assert types(happened) == ["session_ended", "cart_abandoned"]
        assert store.counters.abandonments == 1
        assert store.counters.abandoned_value == pytest.approx(31.25)

    def test_emptied_cart_is_not_abandoned(self, store: ShopperStore) -> None:
        """Removing every item before leaving is not an abandonment."""
        store.apply(update(itemsInCart=2, cartValue=10), T0)
        store.apply(update(T0 + 1, itemsInCart=0, cartValue=0), T0 + 1)
        store.apply(update(T0 + 2, isActive=False), T0 + 2)
        assert store.counters.abandonments == 0

    def test_idle_past_the_active_window(self, store: ShopperStore) -> None:
        """A shopper unseen for the active window goes offline; the session ends as idle."""
        store.apply(update(itemsInCart=1, cartValue=4), T0)
        assert store.expire(T0 + 299) == []
        happened = store.expire(T0 + 301)
        assert types(happened) == ["session_ended", "cart_abandoned"]
        assert happened[0].props["reason"] == "idle"
        assert store.aggregates.active == 0
        assert store.aggregates.carts == 0
        assert len(store) == 1

    def test_expiry_in_slices_ends_what_one_sweep_ends(self) -> None:
        """Sweeps of at most N sessions (and N forgotten shoppers) each, repeated while
        `expiry_due`, end the same sessions in the same order as one unbounded sweep."""
        stores = [ShopperStore(Settings()), ShopperStore(Settings())]
        for store in stores:
            for n in range(12):
                store.apply(update(T0 + n, user=f"s{n}", itemsInCart=1, cartValue=2), T0 + n)
            store.apply(update(T0 + 3000, user="late"), T0 + 3000)
        whole, sliced = stores
        expected = whole.expire(T0 + 3700)
        assert not whole.expiry_due(T0 + 3700)
        got: list[ShoppingEvent] = []
        slices = 0
        while True:
            got += sliced.expire(T0 + 3700, limit=5)
            slices += 1
            if not sliced.expiry_due(T0 + 3700):
                break
        assert slices == 3
        assert [(e.type, e.user_id) for e in got] == [(e.type, e.user_id) for e in expected]
        assert sliced.summary(T0 + 3700) == whole.summary(T0 + 3700)
        assert [s.user_id for s in sliced.newest(limit=100)] == ["late"]

    def test_coming_back_starts_a_new_session(self, store: ShopperStore) -> None:
        """An offline shopper who sends an active update starts a new session."""
        store.apply(update(pageViews=5), T0)
        store.expire(T0 + 400)
        happened = store.apply(update(T0 + 401, pageViews=6), T0 + 401)
        assert "session_started" in types(happened)
        assert store.counters.sessions_started == 2
        assert store.counters.page_views == 6

    def test_retention_forgets_shoppers(self, store: ShopperStore) -> None:
        """Shoppers unseen for the retention period are dropped entirely."""
        store.apply(update(user="a"), T0)
        store.apply(update(T0 + 1000, user="b"), T0 + 1000)
        store.expire(T0 + 3601)
        assert "a" not in store
        assert "b" in store
        assert store.aggregates.active == 0

    def test_erase(self, store: ShopperStore) -> None:
        """Erasing a shopper removes them and their share of the aggregates."""
        store.apply(update(itemsInCart=2, cartValue=10), T0)
        assert store.erase("s1")
        assert "s1" not in store
        assert store.aggregates.active == 0
        assert store.aggregates.cart_cents == 0
        assert not store.erase("s1")


class TestAggregates:
    def test_by_label_gauges_follow_changes(self, store: ShopperStore) -> None:
        """Per-activity and per-membership counts move as shoppers change."""
        store.apply(update(user="a", activeFeature="Cart", membershipType="Free"), T0)
        store.apply(update(user="b", activeFeature="Cart", membershipType="Premium"), T0)
        store.apply(
            update(T0 + 1, user="a", activeFeature="Checkout", membershipType="Free"), T0 + 1
        )
        agg = store.aggregates
        assert agg.by_activity == {"Cart": 1, "Checkout": 1}
        assert agg.by_membership == {"Free": 1, "Premium": 1}

    def test_label_cap_overflows_to_other(self, store: ShopperStore) -> None:
        """Past the cap, new label values become `other` and the overflow is counted."""
        for i in range(8):
            store.apply(update(user=f"u{i}", company=f"City {i}"), T0)
        assert set(store.aggregates.by_location) == {f"City {i}" for i in range(5)} | {"other"}
        assert store.aggregates.by_location["other"] == 3
        assert store.labels["location"].overflow == 3

    def test_summary_key_metrics(self, store: ShopperStore) -> None:
        """The summary carries every key metric of the brief."""
        store.apply(update(user="a", itemsInCart=2, cartValue=20, sessionDuration=10), T0)
        store.apply(update(user="b", activeFeature="Search", sessionDuration=20), T0)
        store.apply(
            update(T0 + 1, user="b", activeFeature="Search", lastAction="Placed order"), T0 + 1
        )
        store.apply(update(T0 + 1, user="a", isActive=False, itemsInCart=2, cartValue=20), T0 + 1)
        summary = store.summary(T0 + 2)
        assert summary["activeShoppers"] == 1
        assert summary["ordersLastHour"] == 1
        assert summary["abandonmentsLastHour"] == 1
        assert summary["cartAbandonmentRate"] == 0.5
        assert summary["averageSessionSeconds"] == 1201  # b: 20 min reported, then 1 s more
        assert summary["topActivities"][0]["activity"] == "Search"
        assert summary["ordersTotal"] == 1
        assert store.summary(T0 + 3700)["ordersLastHour"] == 0

    def test_aggregates_match_a_full_recount(self, store: ShopperStore) -> None:
        """After a mixed history, the incremental aggregates equal a count from scratch."""
        import random

        rng = random.Random(7)
        now = T0
        for step in range(2000):
            now += rng.uniform(0, 2)
            user = f"u{rng.randrange(40)}"
            store.apply(
                update(
                    now,
                    user=user,
                    itemsInCart=rng.randrange(5),
                    cartValue=round(rng.uniform(0, 99), 2),
                    isActive=rng.random() > 0.1,
                    activeFeature=rng.choice(["Cart", "Browsing", "Search"]),
                    pageViews=step,
                ),
                now,
            )
            if step % 100 == 0:
                store.expire(now)
        online = [s for s in store.newest(limit=1000) if s.online]
        agg = store.aggregates
        assert agg.active == len(online) == store.online_count()
        assert agg.carts == sum(1 for s in online if s.items_in_cart)
        assert agg.cart_items == sum(s.items_in_cart for s in online)
        assert agg.cart_cents == sum(round(s.cart_value * 100) for s in online if s.items_in_cart)
        assert sum(agg.by_activity.values()) == len(online)


def _isoformat(moment: float) -> str | None:
    try:
        return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


@given(st.floats(allow_nan=True, allow_infinity=True) | st.floats(1.6e9, 1.8e9))
@example(1.7e9 + 0.9999995)  # rounds up into the next second
@example(-0.0000004)  # just before the epoch
@example(253402300800.0)  # past year 9999
def test_view_times_match_isoformat(moment: float) -> None:
    """The cached formatter of view times gives exactly datetime's ISO text (or None)."""
    assert view_time(moment) == _isoformat(moment)


def test_the_cache_of_formatted_seconds_stops_at_its_bound() -> None:
    """After 10,000 distinct seconds the view's cache of formatted seconds holds at most 4,096
    (the soak's census showed it growing a second at a time), and times still format right."""
    start = 1_700_000_000
    for second in range(start, start + 10_000):
        view_time(second + 0.25)
        assert len(views._SECOND_TEXT) <= views.SECONDS_CACHED == 4096
    assert view_time(start + 9_999.5) == _isoformat(start + 9_999.5)
