"""The demo generator: seeded, realistic journeys that exercise every metric within a minute."""

from __future__ import annotations

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


def run_demo(seconds: float, shoppers: int = 40, seed: int = 1) -> tuple[ShopperStore, Ingestor]:
    """Drive the generator against a real store on a simulated clock."""
    clock = [T0]
    settings = Settings()
    store = ShopperStore(settings)
    ingestor = Ingestor(settings, store, EventLog(), Hub(), clock=lambda: clock[0])
    generator = DemoGenerator(shoppers, seed)
    while clock[0] < T0 + seconds:
        updates, events = generator.tick(clock[0])
        report = ingestor.ingest({"metrics": updates, "events": events}, "demo")
        assert report.rejected == [], report.rejected
        clock[0] += 0.25
    return store, ingestor


def test_every_family_moves_within_a_minute() -> None:
    """A minute of demo traffic gives every metric family non-zero data."""
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
    """Orders and abandonments both happen, with grocery-sized carts, across US cities."""
    store, _ = run_demo(120)
    c = store.counters
    assert c.orders > 5
    assert c.abandonments > 5
    average_order = c.order_value / c.orders
    assert 10 < average_order < 300
    assert c.sessions_started > c.sessions_ended > 0
    locations = {s.location for s in store.newest(limit=1000)}
    assert locations <= set(CITIES)
    memberships = set(store.aggregates.by_membership)
    assert memberships <= {"Free", "Premium", "Premium+"}
    assert store.aggregates.active <= 40


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
