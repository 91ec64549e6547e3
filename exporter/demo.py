"""Demo traffic: seeded shoppers who arrive, browse, search, fill carts, and order or walk away."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
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
    ("yellow onions", 2.99), ("black beans", 1.29), ("breakfast cereal", 4.79),
    ("frozen peas", 2.49), ("tortilla chips", 4.29), ("orange juice", 5.49),
    ("laundry detergent", 12.99), ("paper towels", 9.99), ("apples", 4.99), ("rice", 3.49),
)  # fmt: skip
SEARCHES: Final = (
    "oat milk", "gluten free bread", "bananas", "frozen pizza", "coffee", "tofu",
    "birthday cake", "diapers", "ice cream", "paper towels", "kombucha", "salmon",
)  # fmt: skip

# What the demo aims at, from published figures (the README's "Demo traffic" names the sources):
# ~14% of food and grocery sessions add to cart, ~70% of carts are abandoned (so ~4% of sessions
# order), a session lasts about three minutes, an order holds ~10 products for ~$90.
ADD_TO_CART_RATE: Final = 0.14
ORDER_RATE_OF_CARTS: Final = 0.30
MEAN_SESSION_SECONDS: Final = 180.0
"""What arrivals are paced by (Little's law: online = arrival rate × session length)."""
MEAN_BASKET_LINES: Final = 10
CHECKOUT_BEFORE_LEAVING: Final = 0.35
"""Share of abandoned carts that reached checkout first."""
# Seconds a shopper stays on a step before the next one (mean of an exponential, then clamped).
DWELL: Final[dict[str, float]] = {
    "Browsing": 20.0,
    "Search": 14.0,
    "Product": 22.0,
    "Deals": 20.0,
    "Cart": 12.0,
    "Checkout": 60.0,
    "Delivery": 35.0,
}
MEAN_DWELL: Final = 20.0
"""Roughly the mean step: `pace` (steps per second per shopper) = speed / MEAN_DWELL."""
WARM_UP_SECONDS: Final = 1800.0
"""Simulated seconds played silently at start: the first figures are a store in full swing."""


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class SimShopper:
    """One simulated shopper, their plan for the visit, and their current session's counters."""

    user_id: str
    name: str
    city: str
    membership: str
    window: str
    started: float
    lines_wanted: int = 0
    """Products they mean to put in the cart (0: only looking)."""
    orders: bool = False
    """Whether this visit ends with an order (else a full cart is left behind)."""
    looks_left: int = 0
    """Steps of looking around before the next cart add, or before leaving."""
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
    """Seeded shopper visits at a real store's pace; `tick(now)` returns what to send now.

    Each arriving shopper decides what the visit is for: most only look around, some fill a
    cart, and of those most leave it behind (see the figures above). `speed` runs the store that
    many times faster — shorter steps and sessions, more arrivals — for demos that should show
    a day's worth of activity in minutes; the number online stays near `shoppers` either way.
    `pace` (steps per second per shopper) is the older way to say the same: pace = speed / 20.
    """

    def __init__(
        self,
        shoppers: int,
        seed: int | None = None,
        pace: float | None = None,
        *,
        speed: float = 1.0,
    ) -> None:
        self.target = shoppers
        self.speed = pace * MEAN_DWELL if pace else speed
        self.rng = random.Random(seed)
        self.active: dict[str, SimShopper] = {}
        self._due: list[tuple[float, int, str]] = []
        self._serial = 0
        self._next_arrival: float | None = None
        self._fresh: list[SimShopper] = []
        self.sending = False
        """Whether any tick has sent updates (only then are there shoppers to sign out)."""

    @property
    def pace(self) -> float:
        """Steps per second per shopper, about."""
        return self.speed / MEAN_DWELL

    @pace.setter
    def pace(self, value: float) -> None:
        self.speed = value * MEAN_DWELL

    # ----- the clock --------------------------------------------------------------------

    def tick(self, now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Advance to `now`; returns (updates, explicit events) to send."""
        if self._next_arrival is None:
            self.prime(now)
        updates: list[dict[str, Any]] = [s.record(now) for s in self._fresh if not s.leaving]
        self._fresh.clear()
        self.sending = True
        events: list[dict[str, Any]] = []
        self._advance(now, updates, events)
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
        self._due.clear()
        return updates

    def open_empty(self, now: float) -> None:
        """Open the store empty at `now`, with no half hour played before it: shoppers arrive
        from the first tick on (benchmarks that need a steady pace from the start)."""
        self._next_arrival = now

    def prime(self, now: float) -> None:
        """Play the store's last half hour (simulated) without sending it, then announce everyone
        still shopping: the first figures are those of a store in full swing, not an empty one.
        The first tick does it when not done before."""
        start = now - WARM_UP_SECONDS / self.speed
        self._next_arrival = start
        for _ in range(self.target):
            self._arrive(start)
        step = max(0.25, 5.0 / self.speed)
        moment = start
        while moment < now:
            self._advance(moment, None, None)
            moment += step
        self._fresh = list(self.active.values())

    def _advance(
        self,
        now: float,
        updates: list[dict[str, Any]] | None,
        events: list[dict[str, Any]] | None,
    ) -> None:
        """Arrivals and every step due by `now`; records and events go out unless warming up."""
        rng = self.rng
        assert self._next_arrival is not None
        while self._next_arrival <= now:
            shopper = self._arrive(self._next_arrival)
            if updates is not None:
                updates.append(shopper.record(now))
            # Poisson arrivals at the rate that keeps `target` online, nudged toward it.
            online = max(1, len(self.active))
            nudge = min(2.0, max(0.5, self.target / online))
            rate = self.speed * self.target / MEAN_SESSION_SECONDS * nudge
            self._next_arrival += rng.expovariate(rate)
        due = self._due
        while due and due[0][0] <= now:
            _, _, user_id = heapq.heappop(due)
            walking = self.active.get(user_id)
            if walking is None:
                continue
            self._step(walking, now, events)
            if updates is not None:
                updates.append(walking.record(now))
            if walking.leaving:
                del self.active[user_id]
            else:
                self._schedule(walking, now)

    def _schedule(self, shopper: SimShopper, now: float) -> None:
        mean = DWELL.get(shopper.activity, MEAN_DWELL)
        seconds = min(mean * 5, max(3.0, self.rng.expovariate(1 / mean)))
        self._serial += 1
        heapq.heappush(self._due, (now + seconds / self.speed, self._serial, shopper.user_id))

    # ----- a visit ----------------------------------------------------------------------

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
            started=now,
            last_action_time=now,
            last_step=now,
        )
        if rng.random() < ADD_TO_CART_RATE:
            shopper.orders = rng.random() < ORDER_RATE_OF_CARTS
            planned = 1 + _poisson(rng, MEAN_BASKET_LINES - 1)
            # A cart left behind holds part of what was planned.
            shopper.lines_wanted = planned if shopper.orders else rng.randint(1, planned)
            shopper.looks_left = rng.randint(1, 3)
        else:
            shopper.looks_left = 1 + _poisson(rng, 6)
        shopper.features_used.append("Browsing")
        self.active[shopper.user_id] = shopper
        self._schedule(shopper, now)
        return shopper

    def _step(self, shopper: SimShopper, now: float, events: list[dict[str, Any]] | None) -> None:
        rng = self.rng
        shopper.feature_time[shopper.activity] = (
            shopper.feature_time.get(shopper.activity, 0) + (now - shopper.last_step) / 60
        )
        shopper.last_step = now
        shopper.page_views += 1
        shopper.clicks += rng.randint(1, 5)
        shopper.events += 1
        shopper.last_action_time = now
        step = self._next_step(shopper)
        if step == "Leave":
            shopper.leaving = True
            shopper.last_action = "Closed the app"
            return
        if step == "Order":
            self._order(shopper, now, events)
            return
        if step == "Search":
            shopper.searches += 1
            shopper.last_action = f'Searched for "{rng.choice(SEARCHES)}"'
        elif step in ("Product", "Deals", "Browsing"):
            if step != "Browsing":
                shopper.products_viewed += rng.randint(1, 3)
            name, _ = rng.choice(PRODUCTS)
            shopper.last_action = f"Viewed {name}" if step != "Browsing" else "Browsed aisles"
            if step == "Deals" and rng.random() < 0.3:
                shopper.coupons += 1
                shopper.last_action = "Applied a coupon"
        elif step == "Cart":
            self._add_line(shopper)
        elif step == "Remove":
            shopper.items.pop(rng.randrange(len(shopper.items)))
            shopper.last_action = "Removed item from cart"
            step = "Cart"
        elif step == "Checkout":
            shopper.last_action = "Started checkout"
        elif step == "Delivery":
            shopper.window = rng.choice(DELIVERY_WINDOWS)
            shopper.last_action = f"Scheduled delivery for {shopper.window}"
        shopper.activity = step
        if step not in shopper.features_used:
            shopper.features_used.append(step)

    def _next_step(self, shopper: SimShopper) -> str:
        """Where the visit goes next, from its plan: look around, add, check out, or leave."""
        rng = self.rng
        if shopper.activity == "Delivery":
            return "Order" if shopper.orders else "Leave"
        if shopper.activity == "Checkout":
            return "Delivery" if shopper.orders else "Leave"
        if shopper.looks_left > 0:
            shopper.looks_left -= 1
            return rng.choices(("Search", "Product", "Deals", "Browsing"), (3, 5, 1, 1))[0]
        if len(shopper.items) < shopper.lines_wanted:
            shopper.looks_left = rng.choices((0, 1, 2), (3, 4, 2))[0]
            if shopper.items and rng.random() < 0.05:
                shopper.lines_wanted += 1  # changed their mind about one: it goes, another comes
                return "Remove"
            return "Cart"
        if shopper.orders or (shopper.items and rng.random() < CHECKOUT_BEFORE_LEAVING):
            return "Checkout"
        return "Leave"

    def _add_line(self, shopper: SimShopper) -> None:
        rng = self.rng
        name, price = rng.choice(PRODUCTS)
        quantity = rng.choices((1, 2, 3), (75, 20, 5))[0]
        shopper.items.append(round(price * quantity, 2))
        shopper.last_action = (
            f"Added {name} to cart" if quantity == 1 else (f"Added {quantity} × {name} to cart")
        )

    def _order(self, shopper: SimShopper, now: float, events: list[dict[str, Any]] | None) -> None:
        value = round(sum(shopper.items), 2)
        count = len(shopper.items)
        shopper.items.clear()
        shopper.activity = "Checkout"
        shopper.last_action = "Placed order"
        shopper.leaving = True
        # Half the orders also arrive as explicit events; the store counts each order once.
        if self.rng.random() < 0.5 and events is not None:
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


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; means here are small)."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


ANNOUNCE_TTL: Final = 120.0
"""Seconds a standalone demo's announcement stays true without being repeated."""


class DemoControl:
    """Runs the generator in-process, feeding the ingestor directly; started and stopped at will.

    A standalone demo (`shopper-exporter demo`) pushing from elsewhere announces itself too, so
    the page can say that what it shows is simulated, and how much faster than real time.
    """

    def __init__(
        self,
        ingestor: Ingestor,
        shoppers: int,
        seed: int | None,
        enabled: bool,
        speed: float = 1.0,
    ) -> None:
        self.ingestor = ingestor
        self.shoppers = shoppers
        self.seed = seed
        self.enabled = enabled
        self.speed = speed
        self._task: asyncio.Task[None] | None = None
        self._generator: DemoGenerator | None = None
        self._announced: tuple[float, int, float] | None = None
        """(speed, shoppers, when) of the last standalone demo's announcement."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def announce(self, speed: float, shoppers: int) -> None:
        """A standalone demo pushes at this speed with this many shoppers (repeat to keep it)."""
        self._announced = (speed, shoppers, self.ingestor.clock())

    def state(self) -> dict[str, Any]:
        """Whether the demo may be controlled, runs here or elsewhere, how big and how fast."""
        state: dict[str, Any] = {
            "enabled": self.enabled,
            "running": self.running,
            "shoppers": self.shoppers,
            "speed": self.speed,
            "external": None,
        }
        if self._announced is not None:
            speed, shoppers, when = self._announced
            if self.ingestor.clock() - when <= ANNOUNCE_TTL:
                state["external"] = {"speed": speed, "shoppers": shoppers}
        return state

    def start(self, shoppers: int | None = None) -> None:
        """Start generating (no-op when already running)."""
        if self.running:
            return
        if shoppers:
            self.shoppers = shoppers
        self._generator = DemoGenerator(self.shoppers, self.seed, speed=self.speed)
        self._task = asyncio.create_task(self._run(self._generator), name="demo")

    async def stop(self) -> None:
        """Stop generating and sign the simulated shoppers out."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Stopped while still warming up (in its thread): nobody was announced, nobody to sign out.
        if self._generator is not None and self._generator.sending:
            updates = self._own(self._generator.stop_all(self.ingestor.clock()))
            if updates:
                self.ingestor.ingest(updates, "demo")

    def _own(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of this replica's shoppers: on a sharded replica the demo plays only its
        own shard's part of the store (the others' records would be refused as wrong_shard)."""
        shard = self.ingestor.shard
        if shard is None:
            return records
        return [r for r in records if shard.owner(r["userId"]) == shard.index]

    async def _run(self, generator: DemoGenerator) -> None:
        # A big demo's half hour of warm-up takes a moment: off the loop, so requests go on.
        await asyncio.to_thread(generator.prime, self.ingestor.clock())
        while True:
            updates, events = map(self._own, generator.tick(self.ingestor.clock()))
            if updates or events:
                self.ingestor.ingest({"metrics": updates, "events": events}, "demo")
            await asyncio.sleep(0.25)
