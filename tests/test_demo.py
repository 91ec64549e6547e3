"""The demo generator: a real store's pace by default, from public figures; faster on request."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import ShopperCollector, build_registry
from exporter.demo import CITIES, DemoGenerator
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.settings import Settings
from exporter.status import ServiceStatus
from exporter.store import ShopperStore

T0 = 1_800_000_000.0

#: Families that a healthy minute of traffic must move above zero.
LIVE_FAMILIES = (
    "shopper_active_shoppers",
    "shopper_active_shoppers_by_activity",
    "shopper_active_shoppers_by_membership",
    "shopper_active_shoppers_by_delivery_window",
    "shopper_active_shoppers_by_location",
    "shopper_tracked_shoppers",
    "shopper_active_carts",
    "shopper_cart_items",
    "shopper_cart_value_dollars",
    "shopper_active_session_seconds",
    "shopper_events",
    "shopper_cart_items_added",
    "shopper_cart_items_removed",
    "shopper_orders",
    "shopper_order_value_dollars",
    "shopper_order_dollars",
    "shopper_cart_abandonments",
    "shopper_abandoned_cart_value_dollars",
    "shopper_page_views",
    "shopper_clicks",
    "shopper_product_views",
    "shopper_searches",
    "shopper_coupons_applied",
    "shopper_activity_seconds",
    "shopper_funnel_sessions",
    "shopper_sessions_started",
    "shopper_sessions_ended",
    "shopper_session_duration_seconds",
    "shopper_updates_received",
    "shopper_exporter_last_update_timestamp_seconds",
    "shopper_exporter_event_log_entries",
)


def run_demo(
    seconds: float, shoppers: int = 40, seed: int = 1, speed: float = 20
) -> tuple[ShopperStore, Ingestor]:
    """Drive the generator against a real store on a simulated clock."""
    clock = [T0]
    settings = Settings()
    store = ShopperStore(settings)
    ingestor = Ingestor(settings, store, EventLog(), Hub(), clock=lambda: clock[0])
    generator = DemoGenerator(shoppers, seed, speed=speed)
    while clock[0] < T0 + seconds:
        updates, events = generator.tick(clock[0])
        report = ingestor.ingest({"metrics": updates, "events": events}, "demo")
        assert report.rejected == [], report.rejected
        clock[0] += 0.25
    return store, ingestor


def test_every_family_moves_within_a_minute() -> None:
    """A minute of demo traffic at 20 times the pace gives every metric family non-zero data."""
    store, ingestor = run_demo(60)
    registry = build_registry(
        ShopperCollector(store, ingestor, ingestor.log, ingestor.hub, ServiceStatus())
    )
    text = generate_latest(registry).decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        totals[family.name] = sum(
            s.value for s in family.samples if not s.name.endswith("_created")
        )
    missing = [name for name in LIVE_FAMILIES if totals.get(name, 0) <= 0]
    assert missing == []


def test_journeys_are_plausible() -> None:
    """Sped up 20 times, orders and abandonments both happen, grocery-sized, across US cities."""
    store, _ = run_demo(120)
    c = store.counters
    assert c.orders > 5
    assert c.abandonments > 5
    average_order = c.order_value / c.orders
    assert 10 < average_order < 300
    assert c.sessions_ended > 0
    locations = {s.location for s in store.newest(limit=1000)}
    assert locations <= set(CITIES)
    memberships = set(store.aggregates.by_membership)
    assert memberships <= {"Free", "Premium", "Premium+"}
    assert store.aggregates.active <= 60


def test_same_seed_same_traffic() -> None:
    """The generator is reproducible for a seed."""
    a = DemoGenerator(10, seed=42).tick(T0)
    b = DemoGenerator(10, seed=42).tick(T0)
    assert a == b


def test_emails_are_sent_but_never_stored() -> None:
    """Demo updates carry an email, as real producers do; the store never keeps it."""
    updates, _ = DemoGenerator(3, seed=3).tick(T0)
    assert all("@example.com" in u["email"] for u in updates)
    store, _ = run_demo(5, shoppers=3, seed=3)
    assert all("@" not in str(store.view(s)) for s in store.newest())


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_range(figure: str) -> tuple[float, float]:
    """The range the README's demo table gives for a figure (its "Tests hold it within" column)."""
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith(figure):
            found = re.search(r"([\d.]+)[–-]([\d.]+)", cells[2].replace("$", ""))
            assert found, line
            return float(found[1]), float(found[2])
    raise AssertionError(f"the README's demo table has no row for {figure!r}")


def test_a_real_store_pace_stays_in_the_readme_ranges() -> None:
    """Ten simulated minutes at speed 1: session length, conversion, abandonment and order value
    fall in the ranges the README states (from public online-grocery figures)."""
    clock = [T0]
    settings = Settings()
    store = ShopperStore(settings)
    ingestor = Ingestor(settings, store, EventLog(), Hub(), clock=lambda: clock[0])
    generator = DemoGenerator(300, seed=5)
    assert generator.speed == 1
    updates, events = generator.tick(clock[0])  # the store in full swing, announced at once
    ingestor.ingest({"metrics": updates, "events": events}, "demo")
    c = store.counters
    before = (c.sessions_ended, c.orders, c.order_value, c.abandonments)
    durations = (c.session_duration.count, c.session_duration.total)
    while clock[0] < T0 + 600:
        clock[0] += 0.5
        updates, events = generator.tick(clock[0])
        ingestor.ingest({"metrics": updates, "events": events}, "demo")
    sessions = c.sessions_ended - before[0]
    orders = c.orders - before[1]
    abandoned = c.abandonments - before[3]
    minutes = (c.session_duration.total - durations[1]) / (c.session_duration.count - durations[0])
    figures = {
        "Average session": minutes / 60,
        "Conversion": 100 * orders / sessions,
        "Cart abandonment": 100 * abandoned / (abandoned + orders),
        "Order value": (c.order_value - before[2]) / orders,
    }
    for figure, value in figures.items():
        low, high = readme_range(figure)
        assert low <= value <= high, (figure, value, (low, high))
    assert 250 <= store.aggregates.active <= 350  # about as many online as asked for


@pytest.mark.parametrize("speed", [5, 20])
def test_speed_runs_the_same_store_faster(speed: float) -> None:
    """Sped up N times: as many online, N times as many sessions, each N times shorter."""
    slow, _ = run_demo(300, shoppers=60, seed=9, speed=1)
    fast, _ = run_demo(300, shoppers=60, seed=9, speed=speed)
    ratio = fast.counters.sessions_ended / slow.counters.sessions_ended
    assert speed * 0.6 <= ratio <= speed * 1.4
    hist = fast.counters.session_duration
    assert hist.total / hist.count < 4 * 60 / speed * 1.5
    assert 40 <= fast.aggregates.active <= 80


def test_the_first_tick_announces_a_store_in_full_swing() -> None:
    """The first updates are the shoppers already mid-visit: some with carts, none brand new."""
    updates, _ = DemoGenerator(200, seed=4).tick(T0)
    assert len(updates) >= 150
    assert any(u["itemsInCart"] > 0 for u in updates)
    assert max(u["sessionDuration"] for u in updates) > 2
