"""GET /api/shoppers finds any tracked shopper: search, filters, sorts and cursor pages."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.finder import ShopperFinder, ShopperQuery
from exporter.keys import FINDER, STORE
from exporter.settings import Settings

from support import brief_example, shopper

Client = TestClient[Any, Any]

CITIES = ("Austin, TX", "Boston, MA", "Denver, CO")


def crowd(n: int) -> list[dict[str, Any]]:
    """n shoppers with distinct names, cities, carts and sessions; every third one offline."""
    return [
        shopper(
            f"shopper_{i:05d}",
            userName=f"Person {i:05d}",
            company=CITIES[i % 3],
            isActive=i % 3 != 0,
            activeFeature=("Browsing", "Cart", "Checkout")[i % 3],
            cartValue=float(i % 97),
            itemsInCart=i % 5,
            sessionDuration=(i % 61) / 2,
        )
        for i in range(n)
    ]


async def push(client: Client, body: Any) -> None:
    """POST updates, a thousand to a body (bodies are capped at 1 MiB)."""
    records = body if isinstance(body, list) else [body]
    for start in range(0, len(records), 1000):
        chunk = orjson.dumps(records[start : start + 1000])
        resp = await client.post("/api/metrics", data=io.BytesIO(chunk))
        assert resp.status == 200, await resp.text()


async def listing(client: Client, query: str) -> dict[str, Any]:
    resp = await client.get(f"/api/shoppers?{query}")
    assert resp.status == 200, await resp.text()
    reply: dict[str, Any] = await resp.json()
    return reply


async def test_the_example_shopper_is_found_among_thousands(client: Client) -> None:
    """shopper_123 pushed among 5,000 others is found by id, by name and by city, any case."""
    await push(client, crowd(5000))
    await push(client, brief_example())
    for q in ("shopper_123", "SARAH johnson", "sarah"):
        reply = await listing(client, f"q={q}")
        assert "shopper_123" in [s["userId"] for s in reply["shoppers"]], q
    by_id = await listing(client, "q=shopper_123")
    assert by_id["total"] == 1  # shopper_00123 has a zero in the way: a plain substring
    by_city = await listing(client, "q=san%20francisco")
    assert [s["userId"] for s in by_city["shoppers"]] == ["shopper_123"]


async def test_search_is_a_plain_substring_never_a_pattern(client: Client) -> None:
    """Characters that mean something in a regex match only themselves."""
    await push(client, [shopper("a.b", userName="Dot"), shopper("axb", userName="Ex")])
    reply = await listing(client, "q=a.b")
    assert [s["userId"] for s in reply["shoppers"]] == ["a.b"]
    assert (await listing(client, "q=.*"))["total"] == 0


async def test_totals_agree_with_the_summary(client: Client) -> None:
    """total counts every match: all = tracked, online = active, per activity = its share."""
    await push(client, crowd(600))
    summary = await (await client.get("/api/summary")).json()
    assert (await listing(client, "limit=5"))["total"] == summary["trackedShoppers"]
    assert (await listing(client, "online=true&limit=5"))["total"] == summary["activeShoppers"]
    offline = (await listing(client, "online=false&limit=5"))["total"]
    assert offline == summary["trackedShoppers"] - summary["activeShoppers"]
    for item in summary["activityDistribution"]:
        name = item["activity"]
        reply = await listing(client, f"online=true&activity={name.upper()}")
        assert reply["total"] == item["shoppers"], name
        assert {s["activeFeature"] for s in reply["shoppers"]} == {name}


@pytest.mark.parametrize(("sort", "field"), [("cart", "cartValue"), ("session", "sessionSeconds")])
async def test_cursor_pages_walk_every_match_once_in_order(
    client: Client, sort: str, field: str
) -> None:
    """Following nextCursor visits each matching shopper once, in descending sort order."""
    await push(client, crowd(450))
    seen: list[dict[str, Any]] = []
    query = f"sort={sort}&q=person&limit=100"
    reply = await listing(client, query)
    while True:
        seen += reply["shoppers"]
        if reply["nextCursor"] is None:
            break
        reply = await listing(client, f"{query}&cursor={reply['nextCursor']}")
    assert len(seen) == len({s["userId"] for s in seen}) == 450 == reply["total"]
    keys = [(s[field], s["userId"]) for s in seen]
    assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("sort=price", "sort"),
        ("cursor=not-a-cursor", "cursor"),
        ("online=maybe", "online"),
        ("q=" + "x" * 201, "q"),
    ],
)
async def test_bad_parameters_are_named(client: Client, query: str, field: str) -> None:
    """A parameter that cannot be used is a 400 naming it."""
    resp = await client.get(f"/api/shoppers?{query}")
    assert resp.status == 400
    assert (await resp.json())["field"] == field


async def test_a_cursor_of_another_sort_is_refused(client: Client) -> None:
    """A cursor only continues the sort that made it."""
    await push(client, crowd(10))
    cursor = (await listing(client, "sort=cart&limit=2"))["nextCursor"]
    resp = await client.get(f"/api/shoppers?sort=session&cursor={cursor}")
    assert resp.status == 400
    assert (await resp.json())["field"] == "cursor"


async def test_the_index_follows_renames_and_forgets_erased_shoppers(client: Client) -> None:
    """A new name is found and the old one no longer is; an erased shopper is never listed."""
    await push(client, [shopper("r1", userName="Old Name"), shopper("gone", userName="Gone")])
    assert (await listing(client, "q=old"))["total"] == 1
    await push(client, shopper("r1", userName="New Name"))
    assert (await listing(client, "q=old"))["total"] == 0
    assert (await listing(client, "q=new%20name"))["total"] == 1
    assert (await client.delete("/api/shoppers/gone")).status == 204
    assert (await listing(client, "q=gone"))["total"] == 0


async def test_index_reads_only_what_changed(client: Client) -> None:
    """After its first build, the index never walks the store: it takes a line for each new,
    renamed or moved shopper, and none for an update that changes none of those."""
    await push(client, crowd(300))
    finder: ShopperFinder = client.app[FINDER]
    finder.sync()
    lines = len(finder)
    store = client.app[STORE]
    calls: list[int] = []
    newest = store.newest

    def counting(**kwargs: Any) -> Any:
        found = newest(**kwargs)
        calls.append(len(found))
        return found

    store.newest = counting  # type: ignore[method-assign]
    try:
        same = shopper("shopper_00001", userName="Person 00001", company=CITIES[1], pageViews=9)
        await push(client, same)
        finder.sync()
        assert len(finder) == lines  # same id, name and location: nothing to read
        await push(client, shopper("late", userName="Late Arrival"))
        await push(client, shopper("shopper_00002", userName="Renamed", company=CITIES[2]))
        page = finder.page(ShopperQuery(q="late arrival"))
        renamed = finder.page(ShopperQuery(q="renamed"))
        old_name = finder.page(ShopperQuery(q="person 00002"))
    finally:
        del store.newest
    assert [s.user_id for s in page.shoppers] == ["late"]
    assert [s.user_id for s in renamed.shoppers] == ["shopper_00002"]
    assert old_name.total == 0  # its old line is still there, but no longer trusted
    assert len(finder) == lines + 2
    assert calls == []


async def test_index_is_rebuilt_once_left_behind_lines_pile_up(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    """Under churn at --max-shoppers, the lines of forgotten shoppers are dropped by a rebuild
    before they outnumber half the tracked ones (plus a small slack), and searches stay right."""
    client = await aiohttp_client(create_app(Settings(max_shoppers=100)))
    finder: ShopperFinder = client.app[FINDER]
    for start in range(0, 3000, 100):
        body = [
            shopper(f"churn_{i:05d}", userName=f"Churn {i:05d}", isActive=False)
            for i in range(start, start + 100)
        ]
        await push(client, body)
        finder.sync()
        assert len(finder) <= 100 * 3 // 2 + 1024 + 100
    assert (await listing(client, "q=churn_00"))["total"] == 0  # 0 to 999 were forgotten
    reply = await listing(client, "q=churn_029&limit=1000")
    assert reply["total"] == 100
    assert {s["userId"] for s in reply["shoppers"]} == {f"churn_{i:05d}" for i in range(2900, 3000)}


@pytest.mark.parametrize("online", ["", "&online=true", "&online=false"])
async def test_recent_pages_without_a_search_walk_every_shopper_once(
    client: Client, online: str
) -> None:
    """Newest first, page by page, every shopper the filter selects comes once, in order."""
    for start in range(0, 450, 90):  # five bodies: arrivals at five different moments
        await push(client, crowd(450)[start : start + 90])
    seen: list[dict[str, Any]] = []
    reply = await listing(client, f"limit=40{online}")
    while True:
        seen += reply["shoppers"]
        if reply["nextCursor"] is None:
            break
        reply = await listing(client, f"limit=40{online}&cursor={reply['nextCursor']}")
    expected = {"": 450, "&online=true": 300, "&online=false": 150}[online]
    assert len(seen) == len({s["userId"] for s in seen}) == expected == reply["total"]
    keys = [(s["lastSeen"], s["userId"]) for s in seen]
    assert keys == sorted(keys, reverse=True)


async def test_listing_follows_the_store_under_its_shopper_cap(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    """Under --max-shoppers, total stays the summary's trackedShoppers, evicted shoppers are
    never listed, and a shopper seen again heads the newest-first listing."""
    client = await aiohttp_client(create_app(Settings(max_shoppers=50)))
    offline = [
        shopper(f"shopper_{i:05d}", userName=f"Person {i:05d}", isActive=False) for i in range(60)
    ]
    for start in range(0, 60, 20):  # three bodies: the first one's shoppers are evicted first
        await push(client, offline[start : start + 20])
    summary = await (await client.get("/api/summary")).json()
    reply = await listing(client, "limit=1000")
    assert reply["total"] == summary["trackedShoppers"] == 50 == len(reply["shoppers"])
    assert {s["userId"] for s in reply["shoppers"]} == {f"shopper_{i:05d}" for i in range(10, 60)}
    assert (await listing(client, "q=shopper_0000"))["total"] == 0  # 0 to 9 were evicted
    await push(
        client, shopper("shopper_00012", userName="Person 00012", isActive=False, pageViews=3)
    )
    newest = await listing(client, "limit=2")
    assert newest["shoppers"][0]["userId"] == "shopper_00012"
    assert newest["total"] == 50


def test_the_store_feed_is_bounded_when_no_one_reads_it() -> None:
    """Unread, the feed of new and renamed shoppers never holds more than SLACK plus a quarter
    of the tracked shoppers: it is dropped, and the next take says so (read everything)."""
    from exporter.introductions import SLACK, Introductions

    feed = Introductions()
    for _ in range(SLACK + 1000):
        feed.add("s", tracked=4000)
    assert feed.take() == ["s"] * (SLACK + 1000)
    for _ in range(SLACK + 1001):
        feed.add("s", tracked=4000)
    assert feed.take() is None
    assert feed.take() == []


async def test_a_rebuild_lets_the_loop_go_on_and_misses_nothing() -> None:
    """keep_up rebuilds the index a slice of shoppers at a time; a shopper that arrives between
    two slices is found once the rebuild ends, as is every shopper read before it."""
    from exporter.eventlog import EventLog, Hub
    from exporter.finder import SLICE
    from exporter.ingest import Ingestor
    from exporter.store import ShopperStore

    settings = Settings()
    store = ShopperStore(settings)
    ingestor = Ingestor(settings, store, EventLog(), Hub())
    people = crowd(2 * SLICE + 10)
    for start in range(0, len(people), 1000):
        ingestor.ingest_bytes(orjson.dumps(people[start : start + 1000]), "http")
    finder = ShopperFinder(store)
    rebuild = asyncio.create_task(finder.keep_up())
    await asyncio.sleep(0)  # the rebuild has read its first slice and yielded
    assert not rebuild.done()
    ingestor.ingest_bytes(orjson.dumps(shopper("newcomer", userName="Mid Rebuild")), "http")
    await rebuild
    found = finder.page(ShopperQuery(q="mid rebuild"))
    assert [s.user_id for s in found.shoppers] == ["newcomer"]
    assert finder.page(ShopperQuery(q="person ")).total == 2 * SLICE + 10
