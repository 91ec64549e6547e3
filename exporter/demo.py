"""Demo traffic: seeded shoppers who arrive, browse, search, fill carts, and order or walk away."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from exporter.ingest import Ingestor

FIRST_NAMES: Final = (
    "Sarah", "Miguel", "Priya", "James", "Aisha", "Chen", "Olivia", "Mateo", "Grace", "Noah",
    "Fatima", "Liam", "Sofia", "Ethan", "Hana", "Lucas", "Amara", "Daniel", "Yuki", "Emma",
    "Omar", "Ava", "Diego", "Zoe", "Ravi", "Mia", "Kwame", "Lily", "Jonah", "Nora",
)  # fmt: skip
LAST_NAMES: Final = (
    "Johnson", "Garcia", "Patel", "Smith", "Khan", "Wang", "Brown", "Lopez", "Kim", "Davis",
    "Nguyen", "Miller", "Rossi", "Wilson", "Tanaka", "Moore", "Okafor", "Clark", "Singh", "Hall",
)  # fmt: skip
CITIES: Final = (
    "San Francisco, CA", "Austin, TX", "Seattle, WA", "Chicago, IL", "Brooklyn, NY",
    "Denver, CO", "Atlanta, GA", "Boston, MA", "Portland, OR", "Miami, FL",
    "Phoenix, AZ", "Minneapolis, MN", "Nashville, TN", "San Diego, CA", "Philadelphia, PA",
)  # fmt: skip
MEMBERSHIPS: Final = (("Free", 0.6), ("Premium", 0.3), ("Premium+", 0.1))
DELIVERY_WINDOWS: Final = ("Today", "Tomorrow", "This Week", "Scheduled")
PRODUCTS: Final = (
    ("organic bananas", 2.49), ("whole milk", 4.29), ("sourdough bread", 5.99),
    ("free-range eggs", 6.49), ("avocados", 4.99), ("chicken breast", 11.99),
    ("baby spinach", 3.99), ("greek yogurt", 5.49), ("coffee beans", 13.99),
    ("cheddar cheese", 6.99), ("pasta", 2.29), ("olive oil", 12.49), ("strawberries", 4.49),
    ("salmon fillet", 14.99), ("almond butter", 8.99), ("sparkling water", 5.99),
)  # fmt: skip
SEARCHES: Final = (
    "oat milk", "gluten free bread", "bananas", "frozen pizza", "coffee", "tofu",
    "birthday cake", "diapers", "ice cream", "paper towels", "kombucha", "salmon",
)  # fmt: skip

# A journey is a walk through these steps; each (activity, weights of the next steps).
_NEXT: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "Browsing": (("Search", 3), ("Product", 4), ("Deals", 1), ("Leave", 0.4)),
    "Deals": (("Product", 3), ("Browsing", 1), ("Leave", 0.3)),
    "Search": (("Product", 5), ("Search", 1), ("Browsing", 1), ("Leave", 0.3)),
    "Product": (("Cart", 4), ("Product", 2), ("Search", 2), ("Browsing", 1), ("Leave", 0.4)),
    "Cart": (("Checkout", 3), ("Product", 3), ("Remove", 1), ("Leave", 1.2)),
    "Remove": (("Cart", 2), ("Product", 2), ("Leave", 0.6)),
    "Checkout": (("Delivery", 5), ("Cart", 1), ("Leave", 1)),
    "Delivery": (("Order", 6), ("Leave", 0.8)),
}


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class SimShopper:
    """One simulated shopper and the cumulative counters of their current session."""

    user_id: str
    name: str
    city: str
    membership: str
    window: str
    started: float
    activity: str = "Browsing"
    last_action: str = "Opened the app"
    last_action_time: float = 0.0
    page_views: int = 1
    clicks: int = 0
    products_viewed: int = 0
    searches: int = 0
    coupons: int = 0
    events: int = 1
    items: list[float] = field(default_factory=list)
    feature_time: dict[str, float] = field(default_factory=dict)
    features_used: list[str] = field(default_factory=list)
    leaving: bool = False
    last_step: float = 0.0

    def record(self, now: float) -> dict[str, Any]:
        """The update this shopper's app would send now, in the brief's format."""
        minutes = max(0.0, (now - self.started) / 60)
        first, last = self.name.split(" ", 1)
        return {
            "userId": self.user_id,
            "userName": self.name,
            "email": f"{first.lower()}.{last.lower()}@example.com",
            "company": self.city,
            "timestamp": _iso(now),
            "sessionDuration": round(minutes, 3),
            "pageViews": self.page_views,
            "clickCount": self.clicks,
            "scrollDepth": min(100, 20 + self.page_views * 3),
            "featuresUsed": list(self.features_used),
            "activeFeature": self.activity,
            "featureTime": {k: round(v, 3) for k, v in self.feature_time.items()},
            "eventsTriggered": self.events,
            "cartValue": round(sum(self.items), 2),
            "itemsInCart": len(self.items),
            "productsViewed": self.products_viewed,
            "searchesPerformed": self.searches,
            "couponsApplied": self.coupons,
            "membershipType": self.membership,
            "deliveryWindow": self.window,
            "queriesRun": self.searches,
            "reportsCreated": 0,
            "dashboardsViewed": 0,
            "isActive": not self.leaving,
            "lastAction": self.last_action,
            "lastActionTime": _iso(self.last_action_time or now),
        }


class DemoGenerator:
    """Seeded shopper journeys; `tick(now)` returns the updates and events to send now.

    `pace` is steps per second per shopper: 0.5 means each shopper acts about every two seconds,
    so a whole journey (and with it orders and abandoned carts) happens within a minute.
    """

    def __init__(self, shoppers: int, seed: int | None = None, pace: float = 0.5) -> None:
        self.target = shoppers
        self.pace = pace
        self.rng = random.Random(seed)
        self.active: dict[str, SimShopper] = {}
        self._serial = 0

    def _arrive(self, now: float) -> SimShopper:
        rng = self.rng
        self._serial += 1
        names = [m for m, _ in MEMBERSHIPS]
        weights = [w for _, w in MEMBERSHIPS]
        shopper = SimShopper(
            user_id=f"shopper_{self._serial:06d}_{rng.randrange(16**4):04x}",
            name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            city=rng.choice(CITIES),
            membership=rng.choices(names, weights)[0],
            window=rng.choice(DELIVERY_WINDOWS),
            started=now - rng.uniform(0, 30),
            last_action_time=now,
            last_step=now - rng.uniform(0, 1 / self.pace),
        )
        shopper.features_used.append("Browsing")
        self.active[shopper.user_id] = shopper
        return shopper

    def tick(self, now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Advance every shopper who is due; returns (updates, explicit events)."""
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        # Arrivals keep the population near the target, a few at a time like real traffic.
        missing = self.target - len(self.active)
        for _ in range(min(missing, max(1, self.target // 5))):
            updates.append(self._arrive(now).record(now))
        for shopper in list(self.active.values()):
            if now - shopper.last_step < 1 / self.pace * self.rng.uniform(0.6, 1.4):
                continue
            self._step(shopper, now, events)
            updates.append(shopper.record(now))
            if shopper.leaving:
                del self.active[shopper.user_id]
        return updates, events

    def stop_all(self, now: float) -> list[dict[str, Any]]:
        """Sign every shopper out (the demo was stopped)."""
        updates = []
        for shopper in self.active.values():
            shopper.leaving = True
            shopper.last_action = "Closed the app"
            shopper.last_action_time = now
            updates.append(shopper.record(now))
        self.active.clear()
        return updates

    def _step(self, shopper: SimShopper, now: float, events: list[dict[str, Any]]) -> None:
        rng = self.rng
        spent = (now - shopper.last_step) / 60
        shopper.feature_time[shopper.activity] = (
            shopper.feature_time.get(shopper.activity, 0) + spent
        )
        shopper.last_step = now
        choices = _NEXT.get(shopper.activity, _NEXT["Browsing"])
        if shopper.activity == "Cart" and not shopper.items:
            choices = (("Product", 1),)
        step = rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        shopper.page_views += 1
        shopper.clicks += rng.randint(1, 5)
        shopper.events += 1
        shopper.last_action_time = now
        if step == "Leave":
            shopper.leaving = True
            shopper.last_action = "Closed the app"
            return
        if step == "Remove":
            if shopper.items:
                shopper.items.pop(rng.randrange(len(shopper.items)))
            shopper.last_action = "Removed item from cart"
            step = "Cart"
        elif step == "Search":
            shopper.searches += 1
            shopper.last_action = f'Searched for "{rng.choice(SEARCHES)}"'
        elif step in ("Product", "Deals"):
            shopper.products_viewed += rng.randint(1, 4)
            name, _ = rng.choice(PRODUCTS)
            shopper.last_action = f"Viewed {name}"
            if step == "Deals" and rng.random() < 0.5:
                shopper.coupons += 1
                shopper.last_action = "Applied a coupon"
        elif step == "Cart":
            added = rng.randint(1, 3)
            for _ in range(added):
                _, price = rng.choice(PRODUCTS)
                shopper.items.append(price * rng.randint(1, 2))
            shopper.last_action = "Added item to cart"
        elif step == "Checkout":
            shopper.last_action = "Started checkout"
        elif step == "Delivery":
            shopper.window = rng.choice(DELIVERY_WINDOWS)
            shopper.last_action = f"Scheduled delivery for {shopper.window}"
        elif step == "Order":
            self._order(shopper, now, events)
            return
        shopper.activity = step
        if step not in shopper.features_used:
            shopper.features_used.append(step)

    def _order(self, shopper: SimShopper, now: float, events: list[dict[str, Any]]) -> None:
        value = round(sum(shopper.items), 2)
        count = len(shopper.items)
        shopper.items.clear()
        shopper.activity = "Checkout"
        shopper.last_action = "Placed order"
        shopper.leaving = True
        # Half the orders also arrive as explicit events; the store counts each order once.
        if self.rng.random() < 0.5:
            events.append(
                {
                    "type": "order_completed",
                    "userId": shopper.user_id,
                    "userName": shopper.name,
                    "timestamp": _iso(now),
                    "orderId": f"order_{self.rng.randrange(16**8):08x}",
                    "orderValue": value,
                    "items": count,
                    "deliveryWindow": shopper.window,
                }
            )


class DemoControl:
    """Runs the generator in-process, feeding the ingestor directly; started and stopped at will."""

    def __init__(self, ingestor: Ingestor, shoppers: int, seed: int | None, enabled: bool) -> None:
        self.ingestor = ingestor
        self.shoppers = shoppers
        self.seed = seed
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self._generator: DemoGenerator | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def state(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "running": self.running, "shoppers": self.shoppers}

    def start(self, shoppers: int | None = None) -> None:
        """Start generating (no-op when already running)."""
        if self.running:
            return
        if shoppers:
            self.shoppers = shoppers
        self._generator = DemoGenerator(self.shoppers, self.seed)
        self._task = asyncio.create_task(self._run(self._generator), name="demo")

    async def stop(self) -> None:
        """Stop generating and sign the simulated shoppers out."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._generator is not None:
            updates = self._generator.stop_all(self.ingestor.clock())
            if updates:
                self.ingestor.ingest(updates, "demo")

    async def _run(self, generator: DemoGenerator) -> None:
        while True:
            updates, events = generator.tick(self.ingestor.clock())
            if updates or events:
                self.ingestor.ingest({"metrics": updates, "events": events}, "demo")
            await asyncio.sleep(0.25)
