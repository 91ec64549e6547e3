"""Explicit events move state like the real action; one action sent two ways counts once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from exporter.model import ShopperEventIn, ShopperUpdate
from exporter.settings import Settings
from exporter.store import ShopperStore

from support import http_request, iso, run_exporter, scraped, shopper

T0 = 1_800_000_000.0

# (event type, cumulative update field, counter attribute, Prometheus counter)
KINDS = [
    ("product_viewed", "productsViewed", "product_views", "shopper_product_views_total"),
    ("search", "searchesPerformed", "searches", "shopper_searches_total"),
    ("coupon_applied", "couponsApplied", "coupons_applied", "shopper_coupons_applied_total"),
]


def update(at: float, **fields: Any) -> ShopperUpdate:
    return ShopperUpdate.model_validate(shopper("s1", timestamp=iso(at), **fields))


def event(kind: str, at: float, **fields: Any) -> ShopperEventIn:
    return ShopperEventIn.model_validate(
        {"type": kind, "userId": "s1", "timestamp": iso(at), **fields}
    )


@pytest.fixture
def store() -> ShopperStore:
    return ShopperStore(Settings())


def counted(store: ShopperStore, counter: str) -> int:
    return int(getattr(store.counters, counter))


def events_of(store: ShopperStore, kind: str) -> int:
    return store.counters.events.get(kind, 0)


@pytest.mark.parametrize(("kind", "field", "counter"), [k[:3] for k in KINDS])
class TestCountedOnce:
    def test_event_only(self, store: ShopperStore, kind: str, field: str, counter: str) -> None:
        """Events alone count one each, in the counter and in the events."""
        store.apply(update(T0), T0)
        for n in range(3):
            assert isinstance(store.apply_event(event(kind, T0 + 1 + n), T0 + 1 + n), list)
        assert (counted(store, counter), events_of(store, kind)) == (3, 3)

    def test_update_only(self, store: ShopperStore, kind: str, field: str, counter: str) -> None:
        """Cumulative totals alone count by their increase."""
        store.apply(update(T0, **{field: 2}), T0)
        store.apply(update(T0 + 1, **{field: 5}), T0 + 1)
        assert (counted(store, counter), events_of(store, kind)) == (5, 2)

    def test_event_then_the_next_update_that_includes_it(
        self, store: ShopperStore, kind: str, field: str, counter: str
    ) -> None:
        """An event, then the next update whose total includes it: counted once; the update
        derives no second event."""
        store.apply(update(T0, **{field: 2}), T0)
        store.apply_event(event(kind, T0 + 1), T0 + 1)
        happened = store.apply(update(T0 + 2, **{field: 3}), T0 + 2)
        assert isinstance(happened, list)
        assert kind not in [e.type for e in happened]
        assert (counted(store, counter), events_of(store, kind)) == (3, 2)
        store.apply(update(T0 + 3, **{field: 4}), T0 + 3)  # a new action, reported by update
        assert counted(store, counter) == 4

    def test_update_then_the_same_action_as_a_late_event(
        self, store: ShopperStore, kind: str, field: str, counter: str
    ) -> None:
        """An event stamped before an update whose total holds it is a duplicate: ignored."""
        store.apply(update(T0, **{field: 1}), T0)
        store.apply(update(T0 + 5, **{field: 2}), T0 + 5)
        late = store.apply_event(event(kind, T0 + 3), T0 + 6)
        assert not isinstance(late, list)
        assert late.reason == "duplicate"
        assert field in late.message
        assert (counted(store, counter), events_of(store, kind)) == (2, 2)

    def test_an_event_after_the_update_is_a_new_action(
        self, store: ShopperStore, kind: str, field: str, counter: str
    ) -> None:
        """An event stamped after the stored update is not in its total: it counts."""
        store.apply(update(T0, **{field: 4}), T0)
        assert isinstance(store.apply_event(event(kind, T0 + 1), T0 + 1), list)
        assert counted(store, counter) == 5

    def test_updates_that_do_not_report_the_total_leave_events_counted(
        self, store: ShopperStore, kind: str, field: str, counter: str
    ) -> None:
        """A producer that reports this action only as events (its updates say 0) has every
        event counted, late ones too."""
        store.apply(update(T0), T0)
        store.apply_event(event(kind, T0 + 1), T0 + 1)
        store.apply(update(T0 + 2), T0 + 2)
        store.apply_event(event(kind, T0 + 1.5), T0 + 3)  # late, but no total holds it
        store.apply_event(event(kind, T0 + 4), T0 + 4)
        assert counted(store, counter) == 3

    def test_a_new_session_starts_the_rule_afresh(
        self, store: ShopperStore, kind: str, field: str, counter: str
    ) -> None:
        """After a restart (totals go down), the new session's totals count in full."""
        store.apply(update(T0, pageViews=10, **{field: 3}), T0)
        store.apply_event(event(kind, T0 + 1), T0 + 1)
        store.apply(update(T0 + 2, pageViews=1, **{field: 1}), T0 + 2)
        assert counted(store, counter) == 3 + 1 + 1


class TestStateMoves:
    def test_order_completed_empties_and_closes_the_cart(self, store: ShopperStore) -> None:
        """The order empties the stored cart (items, value, gauges); the session then ends
        without an abandonment, and an update composed before the order does not refill it."""
        store.apply(update(T0, itemsInCart=3, cartValue=30), T0)
        store.apply_event(event("order_completed", T0 + 1, orderId="o1", orderValue=30), T0 + 1)
        state = store.get("s1")
        assert state is not None
        assert (state.items_in_cart, state.cart_value, state.cart_open) == (0, 0.0, False)
        assert (store.aggregates.carts, store.aggregates.cart_cents) == (0, 0)
        store.apply(update(T0 + 0.5, itemsInCart=3, cartValue=30, pageViews=1), T0 + 2)
        assert state.items_in_cart == 0
        assert store.counters.cart_items_added == 3
        store.apply(update(T0 + 3, isActive=False), T0 + 3)
        assert store.counters.abandonments == 0
        assert store.counters.cart_items_removed == 0

    def test_delivery_scheduled_sets_the_delivery_window(self, store: ShopperStore) -> None:
        """deliveryWindow follows the event, and so does the by-window gauge."""
        store.apply(update(T0, deliveryWindow="Today"), T0)
        store.apply_event(event("delivery_scheduled", T0 + 1, deliveryWindow="Tomorrow"), T0 + 1)
        state = store.get("s1")
        assert state is not None
        assert state.delivery_window == "Tomorrow"
        assert store.aggregates.by_delivery_window == {"Today": 0, "Tomorrow": 1}

    def test_checkout_started_moves_the_activity_and_the_funnel(self, store: ShopperStore) -> None:
        """The shopper's activity becomes Checkout and the funnel's checkout stage counts;
        the next update in Checkout derives no second checkout_started."""
        store.apply(update(T0, activeFeature="Cart", itemsInCart=1, cartValue=5), T0)
        store.apply_event(event("checkout_started", T0 + 1), T0 + 1)
        state = store.get("s1")
        assert state is not None
        assert state.activity == "Checkout"
        assert store.aggregates.by_activity == {"Cart": 0, "Checkout": 1}
        assert store.counters.funnel["checkout"] == 1
        happened = store.apply(
            update(T0 + 2, activeFeature="Checkout", itemsInCart=1, cartValue=5), T0 + 2
        )
        assert isinstance(happened, list)
        assert "checkout_started" not in [e.type for e in happened]
        assert store.counters.events["checkout_started"] == 1


@pytest.mark.integration
def test_pairs_count_once_on_the_wire(tmp_path: Path) -> None:
    """On a real exporter, each kind sent as an event and then in the next update's total
    moves its Prometheus counter and shopper_events_total by one."""
    with run_exporter(tmp_path) as proc:
        base, now = proc.base_url, time.time()
        http_request(base + "/api/metrics", shopper("s1", timestamp=iso(now)))
        events = [{"type": kind, "userId": "s1", "timestamp": iso(now + 0.5)} for kind, *_ in KINDS]
        assert http_request(base + "/api/events", events)[2]["accepted"] == 3
        totals = {field: 1 for _, field, _, _ in KINDS}
        reply = http_request(base + "/api/metrics", shopper("s1", timestamp=iso(now + 1), **totals))
        assert reply[2]["accepted"] == 1
        for kind, _, _, metric in KINDS:
            assert scraped(base, metric) == 1, metric
            assert scraped(base, "shopper_events_total", event=kind) == 1, kind
