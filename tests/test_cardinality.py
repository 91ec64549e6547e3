"""Label cardinality stays bounded under attack: a million distinct values, series under the cap."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import ShopperCollector, build_registry
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.labels import LabelCap
from exporter.model import ShopperUpdate
from exporter.settings import Settings
from exporter.status import ServiceStatus
from exporter.store import ShopperStore

ATTACK = 1_000_000
CAP = 50


def test_a_million_distinct_values_stay_under_the_cap() -> None:
    """Every label keeps at most CAP values plus `other`/`unknown`; the overflow is counted."""
    settings = Settings(label_cap=CAP)
    store = ShopperStore(settings)
    log = EventLog(1000)
    ingestor = Ingestor(settings, store, log, Hub())
    base = ShopperUpdate.model_validate(
        {"userId": "u", "userName": "U", "timestamp": "2026-01-01T00:00:00Z", "isActive": True}
    )
    t = 1_800_000_000.0
    for i in range(ATTACK):
        value = f"v{i}"
        update = base.model_copy(
            update={
                "user_id": f"u{i % 1000}",
                "company": value,
                "active_feature": value,
                "membership_type": value,
                "delivery_window": value,
            }
        )
        store.apply(update, t + i)
    registry = build_registry(ShopperCollector(store, ingestor, log, Hub(), ServiceStatus()))
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    for family in families:
        assert len(family.samples) <= CAP + 2 + 12, family.name  # + histogram buckets at most
    for label in ("activity", "membership", "delivery_window", "location"):
        assert len(store.labels[label].values()) == CAP
        assert store.labels[label].overflow >= ATTACK - CAP
    assert sum(store.aggregates.by_location.values()) == store.aggregates.active == 1000


def test_feature_lists_are_shared_and_their_table_stays_bounded() -> None:
    """Shoppers using the same features hold one tuple; a flood of distinct lists keeps at most
    the cap of them in the table, each value through the cap."""
    features = LabelCap("activity", CAP)
    first = features.many(["Browsing", "Cart"])
    assert features.many(("Browsing", "Cart")) is first
    assert first == ("Browsing", "Cart")
    for i in range(10 * CAP):
        assert features.many([f"f{i}", "Browsing"])[1] == "Browsing"
    assert len(features._sets) == CAP
    assert len(features.values()) == CAP
    assert features.many([f"f{ATTACK}"]) == ("other",)
