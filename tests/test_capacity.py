"""--max-shoppers holds under any identity flood: offline shoppers make room, online never."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from exporter.capacity import Capacity
from exporter.lastseen import SLACK, SeenQueue
from exporter.model import ShopperUpdate
from exporter.outcomes import Unapplied
from exporter.settings import Settings
from exporter.shopper import Shopper
from exporter.store import ShopperStore

from support import http_get, http_request, iso, run_exporter, scraped, shopper

T0 = 1_800_000_000.0


def update(user: str, at: float, **fields: Any) -> ShopperUpdate:
    return ShopperUpdate.model_validate(shopper(user, timestamp=iso(at), **fields))


def seen(user: str, received: float) -> Shopper:
    one = Shopper(user)
    one.received = received
    return one


class TestSeenQueue:
    def test_front_skips_shoppers_seen_since_or_no_longer_kept(self) -> None:
        """The front is the oldest entry still standing: a shopper seen again stands at the back,
        one that no longer qualifies (here: came online) not at all."""
        queue = SeenQueue(lambda s: not s.online)
        a, b, c = seen("a", 100.0), seen("b", 200.0), seen("c", 50.0)
        for one in (c, a, b):
            queue.push(one)
        a.received = 300.0  # seen again: a new time object
        queue.push(a)
        c.online = True
        assert queue.front() is b
        assert [s.user_id for s in queue.newest()] == ["a", "b"]

    def test_a_shopper_queued_twice_at_once_is_listed_once(self) -> None:
        """Two entries with the same time object (one body) list the shopper once."""
        queue = SeenQueue(lambda s: True)
        a = seen("a", 100.0)
        queue.push(a)
        queue.push(a)
        assert [s.user_id for s in queue.newest()] == ["a"]
        queue.sweep()
        assert len(queue) == 1

    def test_stale_entries_are_swept_out(self) -> None:
        """Shoppers seen over and over leave the queue no longer than about twice the standing
        entries."""
        queue = SeenQueue(lambda s: True)
        shoppers = [seen(f"u{i}", 0.0) for i in range(10)]
        for step in range(20_000):
            shopper = shoppers[step % 10]
            shopper.received = float(step)
            queue.push(shopper)
        assert len(queue) <= 2 * 10 + SLACK + 1
        oldest = queue.front()
        assert oldest is not None
        assert oldest.received == 19_990.0


class TestCapacity:
    def test_longest_unseen_across_both_queues(self) -> None:
        """Of the shoppers the sweep took offline and those that left on a record, the one seen
        least recently comes first; a forgotten one (its time replaced) is skipped."""
        cap = Capacity(10)
        idle_a, idle_b, left_a = seen("idle_a", 100.0), seen("idle_b", 300.0), seen("left_a", 200.0)
        cap.idled(idle_a)
        cap.idled(idle_b)
        cap.left(left_a)
        order = []
        while (oldest := cap.longest_unseen()) is not None:
            order.append(oldest.user_id)
            oldest.received = -1.0  # forgotten, as the store's erase marks it
        assert order == ["idle_a", "left_a", "idle_b"]
        assert cap.entries() == 0


@pytest.fixture
def store() -> ShopperStore:
    return ShopperStore(Settings(max_shoppers=3, active_window=300, retention=3600))


class TestStoreAtTheCap:
    def test_a_full_store_forgets_the_longest_unseen_offline_shopper(
        self, store: ShopperStore
    ) -> None:
        """A new shopper replaces the offline one seen least recently; online ones stay."""
        store.apply(update("a", T0, isActive=False), T0)
        store.apply(update("b", T0 + 1), T0 + 1)
        store.apply(update("c", T0 + 2, isActive=False), T0 + 2)
        happened = store.apply(update("d", T0 + 3), T0 + 3)
        assert isinstance(happened, list)
        assert [s for s in ("a", "b", "c", "d") if s in store] == ["b", "c", "d"]
        store.apply(update("e", T0 + 4), T0 + 4)
        assert [s for s in ("b", "c", "d", "e") if s in store] == ["b", "d", "e"]
        assert store.capacity.evicted == 2
        assert store.aggregates.active == 3

    def test_every_shopper_online_means_a_new_one_is_refused(self, store: ShopperStore) -> None:
        """With every tracked shopper online, a new shopper's update is refused for capacity;
        known shoppers keep updating."""
        for i, user in enumerate("abc"):
            store.apply(update(user, T0 + i), T0 + i)
        refused = store.apply(update("d", T0 + 5), T0 + 5)
        assert isinstance(refused, Unapplied)
        assert (refused.reason, refused.refused) == ("capacity", True)
        assert "--max-shoppers" in refused.message
        assert "d" not in store
        assert len(store) == 3
        assert store.capacity.refused == 1
        assert isinstance(store.apply(update("a", T0 + 6, pageViews=2), T0 + 6), list)

    def test_idle_shoppers_make_room_once_the_sweep_takes_them_offline(
        self, store: ShopperStore
    ) -> None:
        """Shoppers silent past the active window go offline at the sweep and then make room,
        the one silent longest first."""
        for i, user in enumerate("abc"):
            store.apply(update(user, T0 + i), T0 + i)
        store.apply(update("b", T0 + 200), T0 + 200)
        store.expire(T0 + 303)  # a and c idle; b seen at +200 stays online
        store.apply(update("d", T0 + 304), T0 + 304)
        assert [s for s in "abcd" if s in store] == ["b", "c", "d"]

    def test_an_explicit_session_end_makes_room(self, store: ShopperStore) -> None:
        """A shopper whose session_ended event took them offline can be forgotten for room."""
        from exporter.model import ShopperEventIn

        for i, user in enumerate("abc"):
            store.apply(update(user, T0 + i), T0 + i)
        ended = {"type": "session_ended", "userId": "b", "timestamp": iso(T0 + 3)}
        store.apply_event(ShopperEventIn.model_validate(ended), T0 + 3)
        store.apply(update("d", T0 + 4), T0 + 4)
        assert [s for s in "abcd" if s in store] == ["a", "c", "d"]

    def test_a_flood_never_takes_the_store_past_its_cap(self) -> None:
        """Random traffic from ten times more identities than the cap, with sweeps: the store
        never holds more than the cap, never forgets an online shopper to make room, and its
        aggregates stay equal to a recount."""
        cap = 20
        store = ShopperStore(Settings(max_shoppers=cap, active_window=60, retention=600))
        rng = random.Random(11)
        now = T0
        for step in range(3000):
            now += rng.uniform(0, 0.5)
            user = f"u{rng.randrange(cap * 10)}"
            online_before = {s.user_id for s in store.newest(online_only=True, limit=cap)}
            store.apply(update(user, now, isActive=rng.random() < 0.3, pageViews=step), now)
            assert len(store) <= cap
            assert online_before <= {s.user_id for s in store.newest(limit=cap)}
            if step % 50 == 0:
                store.expire(now)
        online = [s for s in store.newest(limit=cap) if s.online]
        assert store.aggregates.active == len(online) == store.online_count()
        assert store.capacity.evicted > 0
        assert store.capacity.refused > 0
        assert store.capacity.entries() <= 2 * len(store) + 1024


@pytest.mark.integration
class TestOnTheWire:
    def test_an_identity_flood_at_the_cap(self, tmp_path: Path) -> None:
        """A real exporter at --max-shoppers 5: new online shoppers past the cap get 429 with
        Retry-After, counted; the service stays healthy and known shoppers still update; once
        they go offline, a flood of new ids takes their room and the cap holds."""
        with run_exporter(tmp_path, "--max-shoppers", "5") as proc:
            metrics = proc.base_url + "/api/metrics"
            first = [shopper(f"known{i}") for i in range(5)]
            assert http_request(metrics, first)[2]["accepted"] == 5

            status, headers, reply = http_request(metrics, [shopper(f"new{i}") for i in range(3)])
            assert status == 429
            assert int(headers["Retry-After"]) > 0
            assert [r["reason"] for r in reply["rejected"]] == ["capacity"] * 3
            assert reply["rejected"][0]["errors"][0]["field"] == "userId"
            assert http_get(proc.base_url + "/healthz")[0] == 200

            status, _, reply = http_request(metrics, [shopper("known0", pageViews=3), shopper("x")])
            assert status == 200
            assert reply["accepted"] == 1
            assert [(r["index"], r["reason"]) for r in reply["rejected"]] == [(1, "capacity")]

            gone = [shopper(f"known{i}", isActive=False) for i in range(5)]
            assert http_request(metrics, gone)[2]["accepted"] == 5
            for body_no in range(10):
                flood = [shopper(f"flood{body_no}_{i}", isActive=False) for i in range(20)]
                status, _, reply = http_request(metrics, flood)
                assert (status, reply["accepted"]) == (200, 20)
            base = proc.base_url
            assert scraped(base, "shopper_tracked_shoppers") == 5
            assert scraped(base, "shopper_tracked_shoppers_limit") == 5
            assert scraped(base, "shopper_tracked_shoppers_evicted_total") == 200
            refused = scraped(
                base, "shopper_updates_rejected_total", transport="http", reason="capacity"
            )
            assert refused == 4
            assert http_get(proc.base_url + "/readyz")[0] == 200


def test_a_snapshot_over_a_lower_cap_keeps_those_seen_last() -> None:
    """Restored into a service with a lower --max-shoppers, a state keeps at most the cap:
    offline shoppers go first, then those seen longest ago."""
    import orjson

    big = ShopperStore(Settings(max_shoppers=10))
    for i in range(6):
        big.apply(update(f"u{i}", T0 + i, isActive=i % 2 == 0), T0 + i)
    small = ShopperStore(Settings(max_shoppers=2))
    small.import_state(orjson.loads(orjson.dumps(big.export_state())))
    assert [s.user_id for s in small.newest(limit=10)] == ["u4", "u2"]
    assert small.aggregates.active == 2
