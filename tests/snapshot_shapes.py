"""A state with every shape a snapshot must carry, and what it looks like from outside.

Used by tests/test_snapshot.py, and by tests/fixtures/make_snapshot_v1.py to write the format-1
fixture with the code of that time: it only calls what both formats' code has.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter import snapshot
from exporter.app import bounded_event_log
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.settings import Settings
from exporter.store import ShopperStore

T0 = 1_800_000_000.0
LOG_SIZE = 40
SETTINGS = Settings(label_cap=3, event_log_size=LOG_SIZE)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).isoformat()


def record(user_id: str, seconds: float, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "userId": user_id,
        "userName": f"Shopper {user_id}",
        "timestamp": at(seconds),
        "isActive": True,
    }
    body.update(fields)
    return body


def make_ingestor(settings: Settings = SETTINGS, clock: Clock | None = None) -> Ingestor:
    store = ShopperStore(settings)
    log = bounded_event_log(settings)
    return Ingestor(settings, store, log, Hub(), clock=clock or Clock())


def restarted(store: ShopperStore, settings: Settings) -> ShopperStore:
    """The store as a service with `settings` holds it after saving it to a snapshot file and
    restoring that file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.snap"
        snapshot.save(path, Ingestor(store.settings, store, EventLog(), Hub()))
        return snapshot.load(path, lambda: make_ingestor(settings)).ingestor.store


def fill(ingestor: Ingestor, clock: Clock) -> None:
    """Shoppers mid-session, open carts, orders, label overflow, a wrapped event log with ids,
    recent windows, stale and duplicate updates, refused records and plain log lines."""
    ingest = ingestor.ingest
    # An idle shopper whose session the sweep ends later, with a full cart (abandoned then).
    ingest(record("idle", 0, company="Austin, TX", itemsInCart=3, cartValue=30.25), "http")
    clock.now = T0 + 400
    ingestor.expire()
    # Four locations against a cap of three: the fourth becomes "other" and is counted.
    ingest(
        [
            record(
                "mid",
                400,
                company="Seattle, WA",
                membershipType="Premium",
                deliveryWindow="Today",
                activeFeature="Search",
                featuresUsed=["Browsing", "Search"],
                featureTime={"Browsing": 3.5, "Search": 1.25},
                sessionDuration=4.75,
                pageViews=12,
                clickCount=40,
                scrollDepth=55.5,
                productsViewed=6,
                searchesPerformed=2,
                lastAction="Searched for oat milk",
                lastActionTime=at(398.5),
            ),
            record(
                "cart",
                401,
                company="Denver, CO",
                membershipType="Free",
                deliveryWindow="Tomorrow",
                activeFeature="Cart",
                featuresUsed=["Browsing", "Cart"],
                featureTime={"Browsing": 2.0, "Cart": 1.0},
                itemsInCart=4,
                cartValue=47.9,
                lastAction="Added item to cart",
                lastActionTime=at(401),
            ),
            record("far", 402, company="Boston, MA", membershipType="Premium+"),
            record("nowhere", 402),
        ],
        "http",
    )
    # An order from lastAction, then a repeat (duplicate) and an older update (stale).
    buyer = record(
        "buyer",
        403,
        company="Seattle, WA",
        activeFeature="Checkout",
        featuresUsed=["Browsing", "Cart", "Checkout"],
        itemsInCart=2,
        cartValue=20.5,
        lastAction="Added item to cart",
    )
    ingest(buyer, "ws")
    done = buyer | {"timestamp": at(410), "itemsInCart": 0, "lastAction": "Placed order"}
    ingest(done, "ws")
    ingest(done, "ws")
    ingest(buyer | {"timestamp": at(404)}, "ws")
    clock.now = T0 + 420
    # Explicit events: an order with an id (and its repeat), cart moves, checkout, an unknown
    # type, a session ended by the producer and an abandoned cart.
    ingest(
        [
            {"type": "cart_add", "userId": "mid", "timestamp": at(411), "items": 2},
            {"type": "checkout_started", "userId": "mid", "timestamp": at(412)},
            {
                "type": "order_completed",
                "userId": "mid",
                "timestamp": at(413),
                "orderId": "o-1",
                "orderValue": 64.0,
                "items": 2,
            },
            {"type": "order_completed", "userId": "mid", "timestamp": at(414), "orderId": "o-1"},
            {"type": "cart_remove", "userId": "cart", "timestamp": at(415), "items": 1},
            {"type": "wishlist_add", "userId": "far", "timestamp": at(416), "product": "tofu"},
            {"type": "session_ended", "userId": "far", "timestamp": at(417), "reason": "closed"},
            {"type": "cart_abandoned", "userId": "ghost", "timestamp": at(418), "cartValue": 9},
        ],
        "http",
        "event",
    )
    # Signing out with a full cart abandons it.
    ingest(
        record("leaver", 421, itemsInCart=1, cartValue=5.0, isActive=False, company="Austin, TX"),
        "http",
    )
    ingestor.keep_lines([("deploy", T0 + 422, "version 2 rolled out")], "loki")
    # Refused records are counted by reason.
    ingest([record("bad", 0) | {"isActive": "yes"}, {"userId": "x"}], "http")
    # Enough page views to wrap the event log more than once.
    for step in range(30):
        ingest(record("mid", 430 + step, pageViews=13 + step, productsViewed=7 + step), "http")
    clock.now = T0 + 470


def observe(ingestor: Ingestor, now: float) -> dict[str, Any]:
    """Everything a reader can see of the state: views, summary, counters, caps, the log."""
    store, log = ingestor.store, ingestor.log
    counters = store.counters
    plain = {
        name: getattr(counters, name)
        for name in counters.__dataclass_fields__
        if name not in ("session_duration", "order_value_hist")
    }
    aggregates = {
        name: ({k: v for k, v in value.items() if v} if isinstance(value, dict) else value)
        for name, value in (
            (name, getattr(store.aggregates, name))
            for name in store.aggregates.__dataclass_fields__
        )
    }
    shoppers = sorted(s.user_id for s in store.newest(limit=10_000))
    return {
        "shoppers": {uid: store.view(store.get(uid)) for uid in shoppers},  # type: ignore[arg-type]
        "newest": [s.user_id for s in store.newest(limit=10_000)],
        "online": [s.user_id for s in store.newest(online_only=True, limit=10_000)],
        "summary": store.summary(now),
        "aggregates": aggregates,
        "counters": plain,
        "histograms": [counters.session_duration.buckets(), counters.order_value_hist.buckets()],
        "sums": [counters.session_duration.total, counters.order_value_hist.total],
        "labels": {name: [cap.values(), cap.overflow] for name, cap in store.labels.items()},
        "received": ingestor.received,
        "rejected": sorted([*key, n] for key, n in ingestor.rejected.items()),
        "log": [[e.id, e.ts_ns, e.line] for e in log.after(0)],
        "logIds": [log.first_id, log.last_id],
        "lastUpdate": store.last_update,
    }
