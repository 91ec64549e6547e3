"""Prometheus view of the store: fresh metric families on every scrape, plus the service's own."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.eventlog import EventLog, Hub
from exporter.events import KNOWN_TYPES
from exporter.ingest import TRANSPORTS, Ingestor
from exporter.labels import OTHER
from exporter.status import ServiceStatus
from exporter.store import ShopperStore
from exporter.tallies import FUNNEL_STAGES, Histogram

KNOWN_REJECT_REASONS = (
    "invalid",
    "not_json",
    "too_large",
    "batch_too_large",
    "future",
    "capacity",
    "wrong_shard",
)
# Every event type a shop can see is exported from the start, at 0 until it happens: a series
# that appears only with its first event hides that first increase from rate(), and an alert
# cannot tell "no such event yet" from "the exporter lost its state".
EVENT_LABELS = tuple(sorted({*KNOWN_TYPES, OTHER}))
# The brief's activities (its featureTime keys) are exported from the start too, for the same
# reason: increase() cannot see a series' first value, and with N replicas each would hide its
# own, so a sum over replicas would count less than one exporter fed the same traffic.
KNOWN_ACTIVITIES = (
    "Account",
    "Browsing",
    "Cart",
    "Checkout",
    "Deals",
    "Delivery",
    "Product",
    "Search",
)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _labelled(
    family: GaugeMetricFamily | CounterMetricFamily, pairs: Iterable[tuple[str, float]]
) -> GaugeMetricFamily | CounterMetricFamily:
    for label, value in sorted(pairs):
        family.add_metric([label], value)
    return family


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], [(le, float(n)) for le, n in hist.buckets()], hist.total)
    return family


class ShopperCollector(Collector):
    """Builds every family from the store's incremental aggregates: O(series) per scrape."""

    def __init__(
        self,
        store: ShopperStore,
        ingestor: Ingestor,
        log: EventLog,
        hub: Hub,
        status: ServiceStatus,
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.log = log
        self.hub = hub
        self.status = status
        self.last_duration = 0.0
        # Stands in for the last update until one arrives, so that the freshness gauge exists
        # from start-up and a restarted exporter whose producers stay away reads as stalled.
        self.started = ingestor.clock()

    def describe(self) -> list[Metric]:
        # Registration need not run a collection.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        yield from self._shoppers()
        yield from self._activity()
        yield from self._ingest()
        yield from self._service()
        yield from self._snapshots()
        yield from self._garbage()
        self.last_duration = time.perf_counter() - started
        yield _gauge(
            "shopper_exporter_scrape_duration_seconds",
            "Time the previous collection of these metrics took.",
            self.last_duration,
        )

    def _shoppers(self) -> Iterator[Metric]:
        agg = self.store.aggregates
        yield _gauge(
            "shopper_active_shoppers",
            "Shoppers online: active and seen within the active window.",
            agg.active,
        )
        for label, table, doc in (
            ("activity", agg.by_activity, "current activity (activeFeature)"),
            ("membership", agg.by_membership, "membership type"),
            ("delivery_window", agg.by_delivery_window, "chosen delivery window"),
            ("location", agg.by_location, "location"),
        ):
            family = GaugeMetricFamily(
                f"shopper_active_shoppers_by_{label}",
                f"Online shoppers by {doc}.",
                labels=[label],
            )
            yield _labelled(family, table.items())
        yield _gauge(
            "shopper_tracked_shoppers",
            "Shoppers held in memory, online or not, until their retention ends.",
            len(self.store),
        )
        capacity = self.store.capacity
        yield _gauge(
            "shopper_tracked_shoppers_limit",
            "Most shoppers held at once (--max-shoppers).",
            capacity.limit,
        )
        yield _counter(
            "shopper_tracked_shoppers_evicted",
            "Offline shoppers forgotten before their retention ended, to make room for new ones.",
            capacity.evicted,
        )
        yield _gauge("shopper_active_carts", "Online shoppers with items in their cart.", agg.carts)
        yield _gauge("shopper_cart_items", "Items in online shoppers' carts.", agg.cart_items)
        yield _gauge(
            "shopper_cart_value_dollars",
            "Total value of online shoppers' carts.",
            agg.cart_cents / 100,
        )
        yield _gauge(
            "shopper_active_session_seconds",
            "Sum of the current session lengths of online shoppers (divide by active shoppers).",
            agg.session_ms / 1000,
        )

    def _activity(self) -> Iterator[Metric]:
        c = self.store.counters
        events = CounterMetricFamily(
            "shopper_events_total", "Shopping events, explicit and derived.", labels=["event"]
        )
        counts = c.events
        yield _labelled(events, ((e, counts.get(e, 0)) for e in {*EVENT_LABELS, *counts}))
        for name, doc, value in (
            ("shopper_cart_items_added", "Items added to carts.", c.cart_items_added),
            ("shopper_cart_items_removed", "Items removed from carts.", c.cart_items_removed),
            ("shopper_orders", "Orders placed.", c.orders),
            ("shopper_order_value_dollars", "Value of orders placed.", c.order_value),
            ("shopper_cart_abandonments", "Sessions that ended with a full cart.", c.abandonments),
            (
                "shopper_abandoned_cart_value_dollars",
                "Value left in abandoned carts.",
                c.abandoned_value,
            ),
            ("shopper_page_views", "Pages viewed.", c.page_views),
            ("shopper_clicks", "Clicks.", c.clicks),
            ("shopper_product_views", "Products viewed.", c.product_views),
            ("shopper_searches", "Product searches.", c.searches),
            ("shopper_coupons_applied", "Coupons applied.", c.coupons_applied),
            ("shopper_sessions_started", "Shopping sessions started.", c.sessions_started),
            ("shopper_sessions_ended", "Shopping sessions ended.", c.sessions_ended),
        ):
            yield _counter(name, doc, value)
        seconds = CounterMetricFamily(
            "shopper_activity_seconds",
            "Time shoppers spent per activity (from featureTime).",
            labels=["activity"],
        )
        spent = c.activity_seconds
        yield _labelled(seconds, ((a, spent.get(a, 0.0)) for a in {*KNOWN_ACTIVITIES, *spent}))
        funnel = CounterMetricFamily(
            "shopper_funnel_sessions",
            "Sessions that reached each funnel stage (once per session).",
            labels=["stage"],
        )
        for stage in FUNNEL_STAGES:
            funnel.add_metric([stage], c.funnel[stage])
        yield funnel
        yield _histogram(
            "shopper_session_duration_seconds", "Length of ended sessions.", c.session_duration
        )
        yield _histogram("shopper_order_dollars", "Orders by value.", c.order_value_hist)

    def _ingest(self) -> Iterator[Metric]:
        ing = self.ingestor
        received = CounterMetricFamily(
            "shopper_updates_received",
            "Records received (updates and events), valid or not.",
            labels=["transport"],
        )
        for transport in sorted(set(TRANSPORTS) | set(ing.received)):
            received.add_metric([transport], ing.received.get(transport, 0))
        yield received
        rejected = CounterMetricFamily(
            "shopper_updates_rejected",
            "Records refused, by reason.",
            labels=["transport", "reason"],
        )
        keys = {(t, r) for t in ("http",) for r in KNOWN_REJECT_REASONS} | set(ing.rejected)
        for transport, reason in sorted(keys):
            rejected.add_metric([transport, reason], ing.rejected.get((transport, reason), 0))
        yield rejected
        ignored = CounterMetricFamily(
            "shopper_updates_ignored",
            "Valid updates that changed nothing: older than the stored one, or exact repeats.",
            labels=["reason"],
        )
        ignored.add_metric(["stale"], self.store.counters.stale)
        ignored.add_metric(["duplicate"], self.store.counters.duplicate)
        yield ignored
        last = self.store.last_update
        yield _gauge(
            "shopper_exporter_last_update_timestamp_seconds",
            "When the last record was applied; the exporter's start until one is.",
            self.started if last is None else last,
        )

    def _service(self) -> Iterator[Metric]:
        info = InfoMetricFamily("shopper_exporter_build", "Build information.")
        info.add_metric([], {"version": __version__})
        yield info
        shard = self.ingestor.shard
        part = InfoMetricFamily(
            "shopper_exporter_shard",
            "The shoppers this replica owns: shard (from 0) of shards (0 of 1 when not sharded).",
        )
        index, count = (0, 1) if shard is None else (shard.index, shard.count)
        part.add_metric([], {"shard": str(index), "shards": str(count)})
        yield part
        status = self.status
        subscribers = GaugeMetricFamily(
            "shopper_exporter_stream_subscribers",
            "Live subscribers by stream.",
            labels=["stream"],
        )
        yield _labelled(subscribers, status.streams.items())
        yield _counter(
            "shopper_exporter_stream_dropped_frames",
            "Frames dropped for subscribers that fell behind.",
            self.hub.dropped_frames,
        )
        up = GaugeMetricFamily(
            "shopper_exporter_source_up", "Whether a pull source is connected.", labels=["source"]
        )
        reconnects = CounterMetricFamily(
            "shopper_exporter_source_reconnects",
            "Reconnections of a pull source.",
            labels=["source"],
        )
        success = GaugeMetricFamily(
            "shopper_exporter_source_last_success_timestamp_seconds",
            "When a pull source last delivered data.",
            labels=["source"],
        )
        for name, source in sorted(status.sources.items()):
            up.add_metric([name], 1.0 if source.up else 0.0)
            reconnects.add_metric([name], source.reconnects)
            if source.last_success is not None:
                success.add_metric([name], source.last_success)
        yield up
        yield reconnects
        yield success
        overflow = CounterMetricFamily(
            "shopper_exporter_label_overflow",
            "Label values replaced by `other` because the label reached its cap.",
            labels=["label"],
        )
        yield _labelled(overflow, ((name, cap.overflow) for name, cap in self.store.labels.items()))
        self.log.expire()
        yield _gauge(
            "shopper_exporter_event_log_entries", "Events held in the event log.", len(self.log)
        )
        yield _gauge(
            "shopper_exporter_event_log_bytes",
            "The event log's own estimate of the memory its held events take.",
            self.log.nbytes,
        )
        evicted = CounterMetricFamily(
            "shopper_exporter_event_log_evicted_events",
            "Events that left the event log, by the bound that made them leave "
            "(age, bytes, count).",
            labels=["reason"],
        )
        yield _labelled(evicted, self.log.evicted.items())
        yield _counter(
            "shopper_exporter_loki_forwarded_events",
            "Events shipped to the configured Loki.",
            status.forward_sent,
        )
        yield _counter(
            "shopper_exporter_loki_forward_failures",
            "Failed attempts to ship a batch to the configured Loki (each is retried).",
            status.forward_failures,
        )
        yield _counter(
            "shopper_exporter_loki_forward_dropped_events",
            "Events dropped because the forwarding backlog was full.",
            status.forward_dropped,
        )

    def _snapshots(self) -> Iterator[Metric]:
        snap = self.status.snapshot
        if snap is None:
            return  # no --state-file
        yield _counter(
            "shopper_exporter_snapshot_failures",
            "Snapshots that could not be written (the last whole one stays in place).",
            snap.failures,
        )
        for name, doc, value in (
            (
                "shopper_exporter_last_snapshot_timestamp_seconds",
                "When the state in the last whole snapshot was taken.",
                snap.taken_at,
            ),
            (
                "shopper_exporter_snapshot_duration_seconds",
                "Time the last snapshot took, from taking the state to the file in place.",
                snap.duration,
            ),
            ("shopper_exporter_snapshot_bytes", "Size of the last snapshot.", snap.size),
            (
                "shopper_exporter_snapshot_pause_seconds",
                "Time the service stopped to take the last snapshot's state (the fork).",
                snap.pause,
            ),
            (
                "shopper_exporter_snapshot_writer_memory_bytes",
                "Memory the last snapshot writer held of its own at its end (pages copied on "
                "write while it ran, and its buffers).",
                snap.writer_memory,
            ),
        ):
            if value is not None:
                yield _gauge(name, doc, value)

    def _garbage(self) -> Iterator[Metric]:
        policy = self.status.gc
        pauses = HistogramMetricFamily(
            "shopper_exporter_gc_pause_seconds",
            "Time each garbage collection stopped the service, by generation (2: full).",
            labels=["generation"],
        )
        for generation, hist in enumerate(policy.pauses):
            pauses.add_metric(
                [str(generation)], [(le, float(n)) for le, n in hist.buckets()], hist.total
            )
        yield pauses
        yield _gauge(
            "shopper_exporter_gc_frozen_objects",
            "Objects in the permanent generation, which collections never scan, at their last "
            "count (counting walks them all: done at start and when the heap grew enough).",
            policy.frozen,
        )
        yield _counter(
            "shopper_exporter_gc_reclaims",
            "Full collections of the frozen objects, run because they outgrew their bound.",
            policy.reclaims,
        )


def build_registry(collector: ShopperCollector) -> CollectorRegistry:
    """A dedicated registry: only this service's families, no process or platform collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
