"""The garbage collector policy: long-lived objects are frozen out of every collection, frozen
garbage is bounded, and each collection's pause is counted by generation."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.gc_policy import GROWTH, PER_SHOPPER, SLACK, GcPolicy

from support import http_request, run_exporter, scraped, shopper, wait_until

LAST_SNAPSHOT = "shopper_exporter_last_snapshot_timestamp_seconds"


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    """A started policy over a state of a fixed size; the process unfrozen again afterwards."""
    gc.collect()
    gc.freeze()
    policy = GcPolicy(lambda: 1000)
    policy.start()
    yield policy
    policy.stop()
    gc.unfreeze()
    gc.collect()


def frozen_cycles(count: int) -> None:
    """Make `count` two-list cycles, freeze them while alive, then drop them: frozen garbage."""
    cycles: list[Any] = []
    for _ in range(count):
        a: list[Any] = []
        b: list[Any] = [a]
        a.append(b)
        cycles.append(a)
    gc.freeze()
    cycles.clear()


def past_the_bound(alive: int) -> int:
    """Cycles (two objects, four blocks each) that take the frozen objects past the bound and
    the heap past the growth that makes a turn count them."""
    return (
        max(int(alive * GROWTH) // 2 + SLACK // 2, int(sys.getallocatedblocks() * GROWTH) // 4)
        + 1000
    )


def test_a_turn_moves_live_objects_out_of_every_scanned_generation(policy: GcPolicy) -> None:
    """After a turn, objects alive before it are in no generation a collection scans."""
    kept = [[n] for n in range(100)]
    assert any(o is kept for o in gc.get_objects())
    assert policy.tend() is False
    assert not any(o is kept for o in gc.get_objects())
    assert gc.get_freeze_count() >= policy.clean + len(kept)


def test_frozen_garbage_below_the_bound_stays_frozen(policy: GcPolicy) -> None:
    """Cyclic garbage that was alive at a freeze is not collected while under the bound."""
    before = gc.get_freeze_count()
    frozen_cycles(1000)
    assert policy.tend() is False
    assert gc.get_freeze_count() >= before + 2000
    assert policy.reclaims == 0


def test_frozen_garbage_past_the_bound_is_collected_once(policy: GcPolicy) -> None:
    """Frozen cyclic garbage past the bound is collected by one full collection, and the bound
    is taken afresh from what is alive."""
    alive = gc.get_freeze_count()
    frozen_cycles(past_the_bound(alive))
    assert gc.get_freeze_count() > policy.bound
    assert policy.tend() is True
    assert policy.reclaims == 1
    assert gc.get_freeze_count() < alive + 1000
    assert policy.clean <= alive + 1000
    assert policy.pauses[2].count >= 1


def test_no_full_collection_while_a_writer_shares_the_pages(policy: GcPolicy) -> None:
    """Past the bound, the full collection waits until the snapshot writer is gone."""
    at_work = True
    policy.writer_at_work = lambda: at_work
    frozen_cycles(past_the_bound(gc.get_freeze_count()))
    assert policy.tend() is False
    assert policy.reclaims == 0
    at_work = False
    assert policy.tend() is True
    assert policy.reclaims == 1


def test_frozen_objects_are_counted_only_once_the_heap_grew(
    policy: GcPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting the frozen objects walks them all, so a turn counts them only once the heap grew
    by as much as they still may; after such a count within the bound, turns stop counting
    until the heap grows that much again."""
    counts = 0
    real_count = gc.get_freeze_count

    def counting() -> int:
        nonlocal counts
        counts += 1
        return real_count()

    monkeypatch.setattr(gc, "get_freeze_count", counting)
    for _ in range(5):
        policy.tend()
    assert counts == 0
    allowance = max(
        policy.bound - policy.frozen, int(sys.getallocatedblocks() * GROWTH), SLACK // 4
    )
    # Two blocks each (the list and its items): the heap passes the allowance, while the
    # frozen objects, all alive, stay within the bound.
    grown = [[n] for n in range(allowance // 2 + 1000)]
    assert policy.tend() is False
    assert counts == 1
    assert policy.frozen >= len(grown)
    for _ in range(5):
        policy.tend()
    assert counts == 1
    assert policy.reclaims == 0


def test_the_bound_grows_with_the_state() -> None:
    """Frozen objects may grow with the tracked shoppers, at the ratio measured at the last full
    collection (or PER_SHOPPER before one measured a state), before a full collection."""
    size = 1000
    policy = GcPolicy(lambda: size)
    policy.clean, policy.clean_size = 1_000_000, 1000
    assert policy.bound == int(1_000_000 * (1 + GROWTH)) + SLACK
    size = 2000
    assert policy.bound == int(2_000_000 * (1 + GROWTH)) + SLACK
    size = 10
    assert policy.bound == int(1_000_000 * (1 + GROWTH)) + SLACK
    policy.clean, policy.clean_size = 50_000, 0  # an empty store at start
    size = 200_000
    assert policy.bound == int((50_000 + 200_000 * PER_SHOPPER) * (1 + GROWTH)) + SLACK


def test_each_collection_is_counted_by_generation(policy: GcPolicy) -> None:
    """A collection of each generation adds one pause to that generation's histogram."""
    before = [hist.count for hist in policy.pauses]
    for generation in (0, 1, 2):
        gc.collect(generation)
    after = [hist.count for hist in policy.pauses]
    assert all(a >= b + 1 for a, b in zip(after, before, strict=True))
    assert all(hist.total >= 0 for hist in policy.pauses)


def test_the_service_exports_pauses_by_generation_and_its_frozen_objects(tmp_path: Path) -> None:
    """A running service with snapshots shows its frozen objects and a pause histogram for
    each generation on /metrics (a turn ran at each writer's end), and no full collection of
    the frozen objects was needed."""
    state = tmp_path / "state.bin"
    with run_exporter(tmp_path, "--state-file", str(state), "--snapshot-interval", "0.5") as svc:
        for n in range(20):
            status, _, _ = http_request(svc.base_url + "/api/metrics", shopper(f"gc_{n}"))
            assert status == 200
        first = wait_until(lambda: scraped(svc.base_url, LAST_SNAPSHOT))
        wait_until(lambda: (scraped(svc.base_url, LAST_SNAPSHOT) or 0) > (first or 0))
        frozen = scraped(svc.base_url, "shopper_exporter_gc_frozen_objects")
        assert frozen is not None
        assert frozen > 1000
        counts = [
            scraped(svc.base_url, "shopper_exporter_gc_pause_seconds_count", generation=g)
            for g in ("0", "1", "2")
        ]
        assert None not in counts
        assert (counts[2] or 0) >= 1  # each writer's end runs one turn: a collection
        assert scraped(svc.base_url, "shopper_exporter_gc_reclaims_total") == 0
