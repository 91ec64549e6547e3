"""The shard function: FNV-1a and the jump hash against published values, the Python and browser
clients against one file of shared vectors, consistency and balance, and the INDEX/COUNT form."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright.sync_api import Browser, Page

from exporter.outbox import owner_of
from exporter.sharding import MAX_SHARDS, Shard, fnv1a_64, jump_hash, parse_shard, shard_of

from browser_shop import CLIENT, OriginServer, checked_page, open_shop
from support import ROOT, generator_check

VECTORS = ROOT / "tests" / "vectors"
BALANCE_IDS = [f"shopper_{i}" for i in range(100_000)]


@cache
def shared_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / "shard_vectors.json").read_text())[
        "vectors"
    ]
    return vectors


def test_fnv1a_64_gives_the_published_test_values() -> None:
    """FNV-1a 64 of "", "a" and "foobar" is what its authors' test suite lists."""
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_jump_hash_gives_the_values_other_implementations_publish() -> None:
    """The jump hash agrees with the examples other implementations of the paper document."""
    assert [jump_hash(key, 60) for key in (0, 1, 2)] == [0, 55, 46]
    assert jump_hash(256, 1024) == 520


def test_committed_vectors_match_their_generator() -> None:
    """tests/vectors/build_shard_vectors.py reproduces the committed shard_vectors.json exactly."""
    result = generator_check(VECTORS / "build_shard_vectors.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_vectors_cover_empty_ascii_non_ascii_and_long_ids_at_every_count() -> None:
    """The shared file holds the empty id, ASCII, non-ASCII and emoji, long ids and a lone
    surrogate, each at counts 1, 2, 3, 7, 16, 1000 and the largest allowed."""
    vectors = shared_vectors()
    ids = {v["userId"] for v in vectors}
    assert {"", "shopper_123", "café", "😀", "a\ud800b"} <= ids
    assert any(len(i.encode("utf-8", "replace")) >= 1000 for i in ids)
    by_id: dict[str, set[int]] = {}
    for v in vectors:
        by_id.setdefault(v["userId"], set()).add(v["count"])
    assert all(counts >= {1, 2, 3, 7, 16, 1000, MAX_SHARDS} for counts in by_id.values())
    assert len({v["shard"] for v in vectors if v["count"] == 1000}) > 20  # not all one answer


def test_a_producers_remembered_shards_match_the_shared_vectors() -> None:
    """The producer's split (which remembers each shopper's shard) gives every vector's shard,
    asked twice (computed, then remembered)."""
    vectors = shared_vectors()
    for _ in range(2):
        got = [owner_of({"userId": v["userId"]}, v["count"]) for v in vectors]
        assert got == [v["shard"] for v in vectors]


def test_python_shard_of_matches_the_shared_vectors() -> None:
    """shard_of gives every shard the shared file lists."""
    vectors = shared_vectors()
    assert [shard_of(v["userId"], v["count"]) for v in vectors] == [v["shard"] for v in vectors]


@pytest.fixture
def shop_page(browser: Browser) -> Iterator[Page]:
    """A page in Chromium importing the browser client from an origin also serving the vectors."""
    server = OriginServer()
    server.serve(
        "/client/metrics-service.js",
        (CLIENT / "metrics-service.js").read_bytes(),
        "text/javascript",
    )
    server.serve(
        "/shard_vectors.json",
        (VECTORS / "shard_vectors.json").read_bytes(),
        "application/json",
    )
    with checked_page(browser) as page:
        open_shop(page, server.serve_page(f"{server.origin}/client/metrics-service.js"))
        yield page
    server.close()


@pytest.mark.browser
@pytest.mark.integration
def test_browser_shard_of_matches_the_shared_vectors(shop_page: Page) -> None:
    """The browser client's shardOf, run in Chromium on the page's own copy of the shared file,
    gives every shard it lists."""
    computed = shop_page.evaluate(
        """async () => {
            const { shardOf } = await import('live-shopper-metrics-client');
            const { vectors } = await (await fetch('/shard_vectors.json')).json();
            return vectors.map((v) => shardOf(v.userId, v.count));
        }"""
    )
    assert computed == [v["shard"] for v in shared_vectors()]


@pytest.mark.browser
@pytest.mark.integration
def test_browser_shard_of_refuses_a_bad_count_or_id_with_a_clear_error(shop_page: Page) -> None:
    """shardOf throws a RangeError naming the count for 0, 1.5 and 2^31, a TypeError for a
    userId that is not a string."""
    errors = shop_page.evaluate(
        """async () => {
            const { shardOf } = await import('live-shopper-metrics-client');
            const attempt = (id, count) => {
                try { return `returned ${shardOf(id, count)}`; }
                catch (error) { return `${error.name}: ${error.message}`; }
            };
            return [attempt('a', 0), attempt('a', 1.5), attempt('a', 2 ** 31), attempt(5, 3)];
        }"""
    )
    reason = "RangeError: shard count must be an integer between 1 and 2147483647, got"
    assert errors == [
        f"{reason} 0",
        f"{reason} 1.5",
        f"{reason} 2147483648",
        "TypeError: userId must be a string, got number",
    ]


@given(user_id=st.text(), count=st.integers(min_value=1, max_value=5000))
def test_adding_a_shard_moves_only_the_shoppers_the_new_shard_takes(
    user_id: str, count: int
) -> None:
    """Going from `count` to `count + 1` shards, a shopper stays where it was or moves to the new
    shard; it never moves between old ones."""
    before, after = shard_of(user_id, count), shard_of(user_id, count + 1)
    assert 0 <= before < count
    assert after in (before, count)


@pytest.mark.parametrize("count", [2, 3, 7, 16])
def test_100k_shoppers_spread_evenly_and_a_new_shard_takes_its_share(count: int) -> None:
    """Over 100,000 ids every shard holds within 5% of an equal share, and adding a shard moves
    about 1/(count + 1) of them (within 5% of that), all onto the new shard."""
    before = [shard_of(user_id, count) for user_id in BALANCE_IDS]
    after = [shard_of(user_id, count + 1) for user_id in BALANCE_IDS]
    equal = len(BALANCE_IDS) / count
    sizes = Counter(before)
    assert set(sizes) == set(range(count))
    assert all(abs(size - equal) <= 0.05 * equal for size in sizes.values()), sizes
    moved = [new for old, new in zip(before, after, strict=True) if new != old]
    assert set(moved) == {count}
    share = len(BALANCE_IDS) / (count + 1)
    assert abs(len(moved) - share) <= 0.05 * share, len(moved)


def test_text_is_hashed_as_the_browser_encodes_it() -> None:
    """A surrogate pair split in two Python characters hashes as its character, and a lone
    surrogate as U+FFFD, as TextEncoder writes them."""
    assert shard_of("\ud83d\ude00", 1000) == shard_of("😀", 1000)
    assert shard_of("a\ud800b", 1000) == shard_of("a\ufffdb", 1000)


@pytest.mark.parametrize(
    ("count", "reason"),
    [
        (0, "shard count must be between 1 and 2147483647, got 0"),
        (-3, "shard count must be between 1 and 2147483647, got -3"),
        (MAX_SHARDS + 1, "shard count must be between 1 and 2147483647, got 2147483648"),
        (1.5, "shard count must be an integer, got 1.5"),
        (True, "shard count must be an integer, got True"),
    ],
)
def test_a_bad_count_is_refused_naming_it(count: Any, reason: str) -> None:
    """shard_of raises a ValueError naming the shard count and why it is wrong."""
    with pytest.raises(ValueError) as raised:
        shard_of("shopper_1", count)
    assert str(raised.value) == reason


def test_a_user_id_that_is_not_text_is_refused() -> None:
    """shard_of raises a ValueError naming userId when it is not a string."""
    with pytest.raises(ValueError, match="userId must be a string, got bytes"):
        shard_of(b"shopper_1", 3)  # type: ignore[arg-type]


def test_the_index_count_form_names_a_shard_that_owns_its_shoppers() -> None:
    """parse_shard("1/3") is shard 1 of 3, printed back as "1/3", owning exactly the shoppers
    shard_of gives it."""
    shard = parse_shard("1/3")
    assert shard == Shard(index=1, count=3)
    assert str(shard) == "1/3"
    assert parse_shard("0/1") == Shard(0, 1)
    owned = [i for i in BALANCE_IDS[:300] if shard.owns(i)]
    assert owned == [i for i in BALANCE_IDS[:300] if shard_of(i, 3) == 1]
    assert 0 < len(owned) < 300


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "shard must be INDEX/COUNT, e.g. 1/3, got ''"),
        ("1", "shard must be INDEX/COUNT, e.g. 1/3, got '1'"),
        ("a/b", "shard must be INDEX/COUNT, e.g. 1/3, got 'a/b'"),
        ("-1/3", "shard must be INDEX/COUNT, e.g. 1/3, got '-1/3'"),
        ("1/3/5", "shard must be INDEX/COUNT, e.g. 1/3, got '1/3/5'"),
        ("1/0", "shard count must be between 1 and 2147483647, got 0"),
        ("3/3", "shard index must be between 0 and 2 for 3 shards, got 3"),
    ],
)
def test_a_bad_shard_form_is_refused_saying_why(text: str, reason: str) -> None:
    """parse_shard raises a ValueError saying what is wrong with the INDEX/COUNT text."""
    with pytest.raises(ValueError) as raised:
        parse_shard(text)
    assert str(raised.value) == reason
