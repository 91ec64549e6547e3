"""One order is one order everywhere: counted, logged, streamed and listed once, however sent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from exporter.model import ShopperEventIn, ShopperUpdate
from exporter.orders import KEPT_IDS, PHRASE_ORDER, OrderRules
from exporter.settings import Settings
from exporter.shopper import Shopper
from exporter.store import ShopperStore

from support import SseClient, http_request, iso, run_exporter, scraped, shopper

T0 = 1_800_000_000.0


def order(at: float, order_id: str | None = None, user: str = "s1") -> ShopperEventIn:
    body: dict[str, Any] = {"type": "order_completed", "userId": user, "timestamp": iso(at)}
    if order_id is not None:
        body["orderId"] = order_id
    return ShopperEventIn.model_validate(body)


def update(at: float, **fields: Any) -> ShopperUpdate:
    return ShopperUpdate.model_validate(shopper("s1", timestamp=iso(at), **fields))


class TestOrderRules:
    def test_an_id_counted_before_is_the_same_order(self) -> None:
        """An order id already counted is no new order, whatever its time."""
        rules, one = OrderRules(()), Shopper("s1")
        assert rules.is_new(one, T0, "o1")
        rules.remember(one, T0, "o1")
        assert not rules.is_new(one, T0 + 100, "o1")
        assert rules.is_new(one, T0 - 100, "o2")  # another order, only reported late

    def test_an_event_names_the_phrase_order_it_repeats(self) -> None:
        """An id'd event not newer than a phrase order is that order: it takes the id."""
        rules, one = OrderRules(()), Shopper("s1")
        rules.remember(one, T0, None)
        assert one.order_ids == (PHRASE_ORDER,)
        assert not rules.is_new(one, T0, "o1")
        assert one.order_ids == ("o1",)
        assert not rules.is_new(one, T0 + 5, "o1")
        assert rules.is_new(one, T0 + 5, "o2")

    def test_without_an_id_only_a_newer_order_is_new(self) -> None:
        """An event without an id is new only when newer than the last counted order."""
        rules, one = OrderRules(()), Shopper("s1")
        rules.remember(one, T0, "o1")
        assert not rules.is_new(one, T0, None)
        assert rules.is_new(one, T0 + 1, None)

    def test_a_bounded_number_of_ids_is_kept(self) -> None:
        """Each shopper keeps the ids of their last few orders only."""
        rules, one = OrderRules(()), Shopper("s1")
        for n in range(KEPT_IDS + 5):
            rules.remember(one, T0 + n, f"o{n}")
        assert len(one.order_ids) == KEPT_IDS
        assert one.order_ids[-1] == f"o{KEPT_IDS + 4}"


@pytest.fixture
def store() -> ShopperStore:
    return ShopperStore(Settings())


class TestStore:
    def test_a_repeated_order_event_changes_nothing(self, store: ShopperStore) -> None:
        """The second order_completed with the same orderId is a duplicate: no order, no event."""
        store.apply(update(T0, itemsInCart=2, cartValue=20), T0)
        assert isinstance(store.apply_event(order(T0 + 1, "o1"), T0 + 1), list)
        again = store.apply_event(order(T0 + 2, "o1"), T0 + 2)
        assert not isinstance(again, list)
        assert again.reason == "duplicate"
        assert store.counters.orders == 1
        assert store.counters.events["order_completed"] == 1

    def test_a_phrase_order_seen_twice_is_one_order(self, store: ShopperStore) -> None:
        """Two updates carrying the same order phrase and time derive one order_completed."""
        store.apply(update(T0, itemsInCart=2, cartValue=20), T0)
        placed = {"lastAction": "Placed order", "lastActionTime": iso(T0 + 1)}
        first = store.apply(update(T0 + 1, **placed), T0 + 1)
        second = store.apply(update(T0 + 2, pageViews=4, **placed), T0 + 2)
        assert isinstance(first, list)
        assert isinstance(second, list)
        kinds = [e.type for e in first + second]
        assert kinds.count("order_completed") == 1
        assert store.counters.orders == 1
        assert store.counters.events["order_completed"] == 1

    def test_the_event_of_a_phrase_order_is_a_duplicate(self, store: ShopperStore) -> None:
        """An order_completed event for the order a phrase update already counted adds
        nothing (before: counted once in orders, twice in events)."""
        store.apply(update(T0, itemsInCart=2, cartValue=20), T0)
        store.apply(update(T0 + 1, lastAction="Placed order"), T0 + 1)
        echo = store.apply_event(order(T0 + 1, "o1"), T0 + 2)
        assert not isinstance(echo, list)
        assert store.counters.events["order_completed"] == 1
        assert store.counters.orders == 1


@pytest.mark.integration
async def test_repeated_orders_are_counted_logged_streamed_and_listed_once(
    tmp_path: Path,
) -> None:
    """On a real exporter, with a real SSE reader: an order repeated in one body and across
    bodies, and a phrase order seen twice, each appear once in shopper_events_total, the
    reply's accepted count, the stream and the shopper's events."""
    with run_exporter(tmp_path) as proc:
        base = proc.base_url
        async with SseClient(base) as reader:
            await reader.read_until(lambda r: bool(r.frames), timeout=10)
            now = time.time()
            http_request(base + "/api/metrics", shopper("ann", timestamp=iso(now), itemsInCart=2))
            one = {"type": "order_completed", "userId": "ann", "timestamp": iso(now + 0.1)}
            one["orderId"] = "o-17"
            status, _, reply = http_request(base + "/api/events", [one, dict(one)])
            assert (status, reply["accepted"], reply["ignored"]) == (200, 1, 1)
            assert reply["ignoredRecords"][0]["index"] == 1
            assert reply["ignoredRecords"][0]["reason"] == "duplicate"
            status, _, reply = http_request(base + "/api/events", dict(one, timestamp=iso(now + 1)))
            assert (status, reply["accepted"], reply["ignored"]) == (200, 0, 1)

            placed = {"lastAction": "Placed order", "lastActionTime": iso(now + 2)}
            body = [
                shopper("bob", timestamp=iso(now), itemsInCart=1),
                shopper("bob", timestamp=iso(now + 2), **placed),
                shopper("bob", timestamp=iso(now + 3), pageViews=2, **placed),
            ]
            assert http_request(base + "/api/metrics", body)[2]["accepted"] == 3
            again = shopper("bob", timestamp=iso(now + 4), pageViews=3, **placed)
            assert http_request(base + "/api/metrics", again)[2]["accepted"] == 1
            marker = shopper("zed", timestamp=iso(now + 5))
            http_request(base + "/api/metrics", marker)

            def saw_marker(r: SseClient) -> bool:
                return any(row["userId"] == "zed" for row in r.data("user_metric"))

            await reader.read_until(saw_marker)
        streamed = [e for e in reader.data("event") if e["type"] == "order_completed"]
        assert sorted(e["userId"] for e in streamed) == ["ann", "bob"]
        assert scraped(base, "shopper_events_total", event="order_completed") == 2
        assert scraped(base, "shopper_orders_total") == 2
        for user in ("ann", "bob"):
            _, _, listed = http_request(f"{base}/api/shoppers/{user}/events")
            kinds = [e["type"] for e in listed["events"]]
            assert kinds.count("order_completed") == 1, (user, kinds)
