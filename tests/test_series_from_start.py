"""Series an alert depends on exist from start-up: event counters at 0, the update timestamp."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import ShopperCollector, build_registry
from exporter.eventlog import EventLog, Hub
from exporter.events import KNOWN_TYPES
from exporter.ingest import Ingestor
from exporter.labels import OTHER
from exporter.settings import Settings
from exporter.status import ServiceStatus
from exporter.store import ShopperStore

from support import shopper

STARTED = 1_800_000_000.0


def _exporter() -> tuple[Ingestor, CollectorRegistry, list[float]]:
    """An ingestor and the registry /metrics serves, started at STARTED on a settable clock."""
    clock = [STARTED]
    settings = Settings()
    store = ShopperStore(settings)
    ingestor = Ingestor(settings, store, EventLog(1000), Hub(), clock=lambda: clock[0])
    collector = ShopperCollector(store, ingestor, ingestor.log, ingestor.hub, ServiceStatus())
    return ingestor, build_registry(collector), clock


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(registry).decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_every_event_type_is_exported_at_zero_before_it_happens() -> None:
    """A fresh exporter exports shopper_events_total at 0 for every known type and `other`."""
    _, registry, _ = _exporter()
    events = _samples(registry, "shopper_events_total")
    assert events == {(("event", kind),): 0.0 for kind in {*KNOWN_TYPES, OTHER}}


def test_event_types_stay_exported_after_some_have_happened() -> None:
    """Once events happen, the types that did count up and the others stay at 0."""
    ingestor, registry, clock = _exporter()
    clock[0] += 5
    report = ingestor.ingest([shopper("u1")], "http")
    assert report.rejected == []
    samples = _samples(registry, "shopper_events_total")
    events = {labels[0][1]: value for labels, value in samples.items()}
    assert set(events) == {*KNOWN_TYPES, OTHER}
    assert events["session_started"] == 1
    assert events["order_completed"] == 0


def test_last_update_timestamp_is_the_start_until_an_update_arrives() -> None:
    """The freshness gauge reads the start time until the first record, then that record's time."""
    ingestor, registry, clock = _exporter()
    stamp = "shopper_exporter_last_update_timestamp_seconds"
    clock[0] += 10
    assert _samples(registry, stamp) == {(): STARTED}
    clock[0] += 32
    ingestor.ingest([shopper("u1")], "http")
    assert _samples(registry, stamp) == {(): STARTED + 42}
