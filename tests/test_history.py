"""The history ring: per-second samples of the store's aggregates, served by /api/history."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter.history import GAUGES, MAX_ACTIVITIES, RATES, SECONDS, HistoryRing
from exporter.keys import HISTORY, INGESTOR
from exporter.model import validate_update
from exporter.settings import Settings
from exporter.store import ShopperStore

from support import async_wait_until, iso, shopper

Client = TestClient[Any, Any]

T0 = 1_800_000_000


def push(store: ShopperStore, now: float, *updates: dict[str, Any]) -> None:
    for raw in updates:
        update = validate_update(raw)
        assert not isinstance(update, tuple), update
        store.apply(update, now)


def test_a_window_is_columns_of_seconds_and_values() -> None:
    """Each second sampled is one time stamp, and every series has one value per time stamp."""
    store = ShopperStore(Settings())
    ring = HistoryRing(store)
    for second in range(10):
        push(store, T0 + second, shopper(f"s{second}", timestamp=iso(T0 + second)))
        ring.sample(T0 + second + 0.2)
    reply = ring.window(5)
    assert reply["time"] == list(range(T0 + 5, T0 + 10))
    assert set(reply["series"]) == set(GAUGES) | set(RATES)
    assert all(len(values) == 5 for values in reply["series"].values())
    assert reply["series"]["activeShoppers"] == [6, 7, 8, 9, 10]
    assert reply["units"]["activeShoppers"] == "shoppers"
    assert ring.window(60)["time"] == list(range(T0, T0 + 10))


def test_counters_become_per_second_rates_without_a_first_sample_spike() -> None:
    """A counter becomes its increase per second; the first sample has none (null), no jump."""
    store = ShopperStore(Settings())
    ring = HistoryRing(store)
    push(store, T0, shopper("a", timestamp=iso(T0), itemsInCart=40, pageViews=500))
    ring.sample(T0)
    push(store, T0 + 1, shopper("a", timestamp=iso(T0 + 1), itemsInCart=43, pageViews=502))
    ring.sample(T0 + 1)
    ring.sample(T0 + 3)  # one second missed: the rate spreads over both
    series = ring.window(10)["series"]
    added = series["cartItemsAddedPerSecond"]
    assert math.isnan(added[0])
    assert added[1] == 3.0
    assert math.isnan(added[2])  # the missed second itself
    assert added[3] == 0.0
    assert series["pageViewsPerSecond"][1] == 2.0


def test_missed_seconds_are_null_and_json_says_so() -> None:
    """A second without a sample is served as null rather than a made-up value."""
    store = ShopperStore(Settings())
    ring = HistoryRing(store)
    ring.sample(T0)
    ring.sample(T0 + 3)
    reply = orjson.loads(orjson.dumps(ring.window(10)))
    assert reply["time"] == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert reply["series"]["activeShoppers"] == [0, None, None, 0]


def test_the_ring_keeps_one_hour_in_fixed_memory() -> None:
    """After an hour the oldest seconds go; the columns never grow, and stay under 5 MiB."""
    store = ShopperStore(Settings(label_cap=100))
    ring = HistoryRing(store)
    for i in range(MAX_ACTIVITIES + 5):
        push(store, T0, shopper(f"s{i}", timestamp=iso(T0), activeFeature=f"Activity {i}"))
    ring.sample(T0)
    size = ring.nbytes()
    for second in range(1, SECONDS + 120):
        ring.sample(T0 + second)
    assert ring.nbytes() == size
    assert size <= 5 * 1024 * 1024
    reply = ring.window(SECONDS)
    assert len(reply["time"]) == SECONDS
    assert reply["time"][0] == T0 + 120
    activities = reply["activities"]
    assert len(activities) <= MAX_ACTIVITIES
    assert sum(values[-1] for values in activities.values()) == MAX_ACTIVITIES + 5
    assert activities["other"][-1] == 6  # the ones past the columns, counted together


def test_activities_are_counted_per_second() -> None:
    """Each activity's column holds how many online shoppers were in it that second."""
    store = ShopperStore(Settings())
    ring = HistoryRing(store)
    push(store, T0, shopper("a", activeFeature="Cart"), shopper("b", activeFeature="Cart"))
    ring.sample(T0)
    push(store, T0 + 1, shopper("b", activeFeature="Checkout", timestamp=iso(T0 + 5)))
    ring.sample(T0 + 1)
    activities = ring.window(2)["activities"]
    assert activities == {"Cart": [2, 1], "Checkout": [0, 1]}


def test_a_clock_that_goes_back_starts_the_ring_again() -> None:
    """Samples never come out of order: a clock that goes back drops what no longer lines up."""
    store = ShopperStore(Settings())
    ring = HistoryRing(store)
    ring.sample(T0 + 100)
    ring.sample(T0 + 101)
    ring.sample(T0)
    assert ring.window(300)["time"] == [T0]


async def test_history_endpoint_serves_the_ring(client: Client) -> None:
    """GET /api/history?window=N answers the ring's last N seconds as JSON columns."""
    ring = client.app[HISTORY]
    now = client.app[INGESTOR].clock()
    for second in range(3):
        ring.sample(now - 3 + second)
    reply = await (await client.get("/api/history?window=2")).json()
    assert reply["window"] == 2
    assert len(reply["time"]) == 2
    assert len(reply["series"]["eventsPerSecond"]) == 2


@pytest.mark.parametrize("window", ["0", "3601", "an hour", "-5"])
async def test_history_window_out_of_range_is_refused(client: Client, window: str) -> None:
    """A window that is not 1 to 3600 seconds is a 400 naming the field."""
    resp = await client.get(f"/api/history?window={window}")
    assert resp.status == 400
    assert (await resp.json())["field"] == "window"


async def test_history_fills_once_a_second_in_the_running_service(client: Client) -> None:
    """The service samples by itself, one point a second."""

    async def points() -> bool:
        reply = await (await client.get("/api/history?window=60")).json()
        return len(reply["time"]) >= 2

    await async_wait_until(points, timeout=5)


def test_the_encoded_window_is_reused_until_the_next_sample() -> None:
    """Readers within one second share one encoding; the next sample makes a new one."""
    store = ShopperStore(Settings())
    ring = HistoryRing(store)
    ring.sample(T0)
    first = ring.window_json(300)
    assert ring.window_json(300) is first
    assert orjson.loads(first) == orjson.loads(orjson.dumps(ring.window(300)))
    ring.sample(T0 + 1)
    assert len(orjson.loads(ring.window_json(300))["time"]) == 2
