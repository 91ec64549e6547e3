"""What a tracked shopper costs in memory: values shared between shoppers, and bounded tables."""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from typing import Any

import orjson

from exporter.compaction import MapCompactor
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.labels import OTHER, SHARED_MAPPINGS, LabelCap
from exporter.model import ShopperUpdate
from exporter.settings import Settings
from exporter.shopper import Shopper
from exporter.store import ShopperStore

from support import brief_example, iso, shopper

T0 = 1_800_000_000.0
MINUTES = {"Browsing": 8, "Cart": 5, "Checkout": 2}


def update(user: str, at: float, **fields: Any) -> ShopperUpdate:
    return ShopperUpdate.model_validate(shopper(user, timestamp=iso(at), **fields))


def test_new_shoppers_reporting_the_same_minutes_hold_one_mapping() -> None:
    """A thousand new shoppers whose records carry the same featureTime hold one mapping."""
    store = ShopperStore(Settings())
    for i in range(1000):
        store.apply(update(f"u{i}", T0, isActive=False, featureTime=MINUTES), T0)
    held = {id(store.get(f"u{i}").feature_time) for i in range(1000)}  # type: ignore[union-attr]
    assert len(held) == 1
    assert dict(store.get("u0").feature_time) == {k: float(v) for k, v in MINUTES.items()}  # type: ignore[union-attr]


def test_a_shopper_whose_minutes_move_leaves_the_others_as_they_were() -> None:
    """A shared mapping is never changed in place: one shopper's new minutes are theirs alone,
    and still count as activity time."""
    store = ShopperStore(Settings())
    store.apply(update("a", T0, featureTime=MINUTES), T0)
    store.apply(update("b", T0, featureTime=MINUTES), T0)
    before = store.counters.activity_seconds.get("Cart", 0.0)
    store.apply(update("a", T0 + 60, featureTime={**MINUTES, "Cart": 7}), T0 + 60)
    assert store.get("a").feature_time["Cart"] == 7.0  # type: ignore[union-attr]
    assert store.get("b").feature_time["Cart"] == 5.0  # type: ignore[union-attr]
    assert store.counters.activity_seconds["Cart"] - before == 120.0


def test_shared_mappings_stay_bounded_after_many_distinct_ones() -> None:
    """Three times `SHARED_MAPPINGS` distinct mappings leave at most `SHARED_MAPPINGS` kept to
    share; keys still go through the label cap."""
    cap = LabelCap("activity", 2)
    for i in range(3 * SHARED_MAPPINGS):
        kept = cap.keyed({"Browsing": float(i)})
        assert kept == {"Browsing": float(i)}
        assert len(cap._mappings) <= SHARED_MAPPINGS
    assert cap.keyed({"Browsing": 1.0}) is cap.keyed({"Browsing": 1.0})
    assert cap.keyed({"Cart": 1.0, "Checkout": 2.0, "Search": 3.0}) == {
        "Cart": 1.0,
        OTHER: 3.0,
    }


def test_shoppers_without_orders_share_one_no_order_time() -> None:
    """A shopper with no order yet holds no float of its own for it."""
    assert Shopper("a").last_order_at is Shopper("b").last_order_at


def test_returning_shoppers_hold_a_bounded_number_of_record_times() -> None:
    """300 shoppers reporting every minute for two hours: the record times they hold (floats
    made by `model.epoch`) stop growing once each window is full, a few per shopper."""
    store = ShopperStore(Settings())
    activities = list(MINUTES)
    traced = [tracemalloc.Filter(True, "*/exporter/model.py")]
    held = []
    tracemalloc.start()
    try:
        for minute in range(120):
            at = T0 + minute * 60
            for i in range(300):
                record = shopper(
                    f"u{i}",
                    timestamp=iso(at + i / 100),
                    lastActionTime=iso(at),
                    currentActivity=activities[(minute + i) % 3],
                    isActive=(minute + i) % 7 != 0,
                )
                store.apply(ShopperUpdate.model_validate(record), at + 5)
            store.expire(at + 6, len(store))
            if minute in (59, 119):
                gc.collect()
                snapshot = tracemalloc.take_snapshot().filter_traces(traced)
                held.append(sum(stat.size for stat in snapshot.statistics("filename")))
    finally:
        tracemalloc.stop()
    first_hour, second_hour = held
    assert abs(second_hour - first_hour) < 1024, held
    assert second_hour / 300 < 4 * sys.getsizeof(0.0), f"{second_hour / 300:.0f} bytes a shopper"


def test_a_new_shopper_of_the_briefs_full_record_takes_under_640_traced_bytes() -> None:
    """2,000 new shoppers, each the brief's full record with an id of their own, grow the traced
    heap by under 640 bytes each, the event log aside (the store, its queues and aggregates)."""
    settings = Settings()
    ingestor = Ingestor(settings, ShopperStore(settings), EventLog(capacity=100), Hub())
    stamp = iso(time.time() - 60)
    records = []
    for i in range(2000):
        record = brief_example()
        record.update(userId=f"flood_{i:06d}", timestamp=stamp, lastActionTime=stamp)
        records.append(record)
    bodies = [orjson.dumps(records[i : i + 500]) for i in range(0, 2000, 500)]
    ingestor.ingest_bytes(orjson.dumps([brief_example()]), "http")  # types and caps warmed up
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for body in bodies:
            ingestor.ingest_bytes(body, "http")
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # The event log is bounded on its own (by time and bytes), whatever the shoppers.
    log = [tracemalloc.Filter(False, "*/eventblock.py"), tracemalloc.Filter(False, "*/eventlog.py")]
    grown = sum(d.size_diff for d in after.filter_traces(log).compare_to(before, "filename"))
    assert len(ingestor.store) == 2001
    assert grown / 2000 < 640, f"{grown / 2000:.0f} bytes a shopper"


class TestMapCompactor:
    def test_a_map_held_at_n_under_churn_keeps_the_table_a_copy_of_it_gets(self) -> None:
        """120,000 shoppers in and out of a map held at 12,000, tended every 1,000: its table
        never outgrows that of a compact copy of 12,000 entries, and its order is kept."""
        table: dict[str, int] = {f"s{i}": i for i in range(12_000)}
        taken = [12_000]
        compactor = MapCompactor(table, lambda: taken[0])
        bound = sys.getsizeof(dict(table))
        untended: dict[str, int] = dict(table)
        for i in range(12_000, 132_000):
            for one in (table, untended):
                del one[f"s{i - 12_000}"]
                one[f"s{i}"] = i
            taken[0] += 1
            if i % 1000 == 0:
                compactor.tend()
                assert sys.getsizeof(table) <= bound
        assert compactor.copies > 0
        assert list(table) == [f"s{i}" for i in range(120_000, 132_000)]
        assert sys.getsizeof(untended) > bound  # what CPython's own resizes come to

    def test_a_table_that_would_fill_at_once_is_left_to_grow(self) -> None:
        """When the intake of a turn would use up a fresh copy's room, no copy is made."""
        table: dict[str, int] = {f"s{i}": i for i in range(1000)}
        taken = [0]
        compactor = MapCompactor(table, lambda: taken[0])
        taken[0] = 100_000
        assert compactor.tend() is False
        assert compactor.copies == 0
