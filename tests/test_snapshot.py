"""Restart safety: snapshots keep every shape of the state, are written by a forked child while the
service carries on, survive kill -9 mid-write and failing disks, and read older formats."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from snapshot_shapes import SETTINGS, T0, Clock, fill, make_ingestor, observe, record

from exporter import snapshot, snapshot_codec, snapshot_events
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.settings import Settings
from exporter.snapshot_file import MAGIC, leftovers
from exporter.snapshot_writer import PAUSE_ENV, SnapshotWriter
from exporter.status import SnapshotStatus
from exporter.store import Shopper, ShopperStore

from support import IN_CI, free_port, http_get, run_exporter, shopper, wait_until

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def busy() -> tuple[Any, Clock]:
    clock = Clock()
    ingestor = make_ingestor(clock=clock)
    fill(ingestor, clock)
    return ingestor, clock


def seen(ingestor: Any, now: float) -> dict[str, Any]:
    """observe() as JSON would carry it (tuples and lists alike)."""
    return orjson.loads(orjson.dumps(observe(ingestor, now)))  # type: ignore[no-any-return]


def restored(path: Path, settings: Settings = SETTINGS) -> Any:
    return snapshot.load(path, lambda: make_ingestor(settings)).ingestor


# ----- the format -------------------------------------------------------------------------------


def test_every_shopper_field_has_a_column() -> None:
    """Each field of Shopper is written and restored (a new field needs a column kind), and a
    restore sets each field from its own column."""
    assert set(snapshot_codec.COLUMNS) == set(Shopper.__slots__)
    made = [object.__new__(Shopper)]
    snapshot_codec._fill(made, iter([snapshot_codec.FIELDS]))
    for name in Shopper.__slots__:
        assert getattr(made[0], name) == name


def test_round_trip_keeps_every_shape(tmp_path: Path) -> None:
    """Shoppers mid-session, open carts, orders, label overflow, recent windows, a wrapped event
    log with ids, stale/duplicate/refused counts: all read back exactly as they were."""
    before, clock = busy()
    path = tmp_path / "state"
    snapshot.save(path, before)
    after = restored(path)
    assert seen(after, clock.now) == seen(before, clock.now)
    old, new = before.store, after.store
    assert old.orders_recent.state() == new.orders_recent.state()
    assert old.events_recent.state() == new.events_recent.state()
    assert old.abandonments_recent.state() == new.abandonments_recent.state()
    caps_before, caps_after = snapshot_codec.caps(old), snapshot_codec.caps(new)
    for name, cap in caps_before.items():
        assert caps_after[name].values() == cap.values()
        assert caps_after[name].shared_lists() == cap.shared_lists()
        assert caps_after[name].overflow == cap.overflow
    # Event ids carry on from where they were, so readers resume.
    assert after.log.first_id == before.log.first_id > 1
    logged = after.log.append(before.log.get(before.log.last_id).event)
    assert logged.id == before.log.last_id + 1


def test_restored_shoppers_carry_on_like_live_ones(tmp_path: Path) -> None:
    """The next updates after a restore count exactly as they would have without the restart."""
    before, clock = busy()
    path = tmp_path / "state"
    snapshot.save(path, before)
    after = restored(path)
    after.clock = before.clock
    clock.now += 5
    more = [
        record("mid", 500, pageViews=50, productsViewed=40, itemsInCart=3, cartValue=12.0),
        record("cart", 501, itemsInCart=0, lastAction="Placed order"),
        record("newcomer", 502, company="Chicago, IL"),
    ]
    for ingestor in (before, after):
        ingestor.ingest(more, "http")
        clock.now += 400
        ingestor.expire()
        clock.now -= 400
    clock.now += 400
    now_after, now_before = seen(after, clock.now), seen(before, clock.now)
    # Events logged after the restart have their own log times; ids and lines must agree.
    for view in (now_after, now_before):
        view["log"] = [[event_id, line] for event_id, _, line in view["log"]]
    assert now_after == now_before


def test_restored_values_are_shared_as_ingest_shares_them(tmp_path: Path) -> None:
    """Label strings, feature lists, arrival times and action times are one object each, shared
    by every shopper holding them, as live ingest shares them."""
    ingestor = make_ingestor(Settings())
    bodies = [
        [
            record(f"s{i}-{j}", i, company="Austin, TX", featuresUsed=["Browsing", "Cart"])
            | {"lastActionTime": record("x", i)["timestamp"], "membershipType": "Free"}
            for j in range(20)
        ]
        for i in range(3)
    ]
    for body in bodies:
        ingestor.ingest(body, "http")
    path = tmp_path / "state"
    snapshot.save(path, ingestor)
    store = restored(path, Settings()).store
    shoppers = store.newest(limit=100)
    assert len(shoppers) == 60
    first = shoppers[0]
    for one in shoppers:
        assert one.location is store.labels["location"].known("Austin, TX")
        assert one.membership is first.membership
        assert one.features_used is first.features_used
        assert one.last_action_time is one.timestamp
        assert one.feature_time is first.feature_time  # the shared empty mapping
    received = {id(s.received) for s in shoppers}
    assert len(received) == 1  # one arrival time (one clock value) for all of them


def test_online_order_is_kept_when_it_differs_from_arrival(tmp_path: Path) -> None:
    """When the online shoppers are not in arrival order, their own order is saved and read."""
    before, clock = busy()
    online = before.store.tables().online
    first = online.front()
    assert first is not None
    online.push(first)  # queued again: now last in the online order, still first by arrival
    path = tmp_path / "state"
    snapshot.save(path, before)
    after = restored(path)
    assert [s.user_id for s in after.store.tables().online.newest()] == [
        s.user_id for s in online.newest()
    ]
    assert next(after.store.tables().online.newest()).user_id == first.user_id
    assert seen(after, clock.now) == seen(before, clock.now)


def test_smaller_label_cap_folds_saved_values_into_other(tmp_path: Path) -> None:
    """Restored under a smaller --label-cap, values past it become `other` and the aggregates are
    counted again from the shoppers, without counting the overflow a second time."""
    before, _ = busy()
    path = tmp_path / "state"
    snapshot.save(path, before)
    smaller = Settings(label_cap=1, event_log_size=SETTINGS.event_log_size)
    store = restored(path, smaller).store
    assert store.labels["location"].values() == ["Austin, TX"]
    assert store.labels["location"].overflow == before.store.labels["location"].overflow
    by_location = {k: v for k, v in store.aggregates.by_location.items() if v}
    online = store.newest(online_only=True, limit=100)
    assert sum(by_location.values()) == len(online) == store.aggregates.active
    assert {s.location for s in online} <= {"Austin, TX", "other", "unknown", ""}
    assert store.get("cart").location == "other"  # type: ignore[union-attr]


def test_format_1_snapshot_is_read(tmp_path: Path) -> None:
    """A snapshot of the JSON format 1 (written by that code) reads back to what it held."""
    path = tmp_path / "state.json"
    shutil.copy(FIXTURES / "snapshot-v1.json", path)
    expected = orjson.loads((FIXTURES / "snapshot-v1.expected.json").read_bytes())
    # Its events were logged when the fixture was made: a retention of ten years keeps them.
    after = restored(path, replace(SETTINGS, event_log_retention=10 * 365 * 86400.0))
    assert seen(after, T0 + 470) == expected
    assert path.exists()  # read, not set aside


def test_format_2_snapshot_is_read(tmp_path: Path) -> None:
    """A snapshot of format 2 (its event log one JSON list; written by that code) reads back to
    what it held."""
    path = tmp_path / "state"
    shutil.copy(FIXTURES / "snapshot-v2.state", path)
    expected = orjson.loads((FIXTURES / "snapshot-v2.expected.json").read_bytes())
    after = restored(path, replace(SETTINGS, event_log_retention=10 * 365 * 86400.0))
    assert seen(after, T0 + 470) == expected
    assert path.exists()


def test_format_3_snapshot_is_read(tmp_path: Path) -> None:
    """A snapshot of format 3 (each event block's shoppers in the meta; written by that code)
    reads back to what it held."""
    path = tmp_path / "state"
    shutil.copy(FIXTURES / "snapshot-v3.state", path)
    expected = orjson.loads((FIXTURES / "snapshot-v3.expected.json").read_bytes())
    after = restored(path, replace(SETTINGS, event_log_retention=10 * 365 * 86400.0))
    assert after.log.blocks()
    assert seen(after, T0 + 470) == expected
    assert path.exists()


def test_a_restore_decodes_the_events_shoppers_a_block_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each event block's shoppers are decoded on their own and let go before the next block
    (their strings become the restored shoppers' own): what a restore holds in passing is one
    block's names, not the whole log's, which would stay behind as part-used pages."""
    store = ShopperStore(SETTINGS)
    before = Ingestor(SETTINGS, store, EventLog(None, block_size=150), Hub(), clock=Clock())
    before.ingest(
        [record(f"shopper-{n:05d}", 10, activity="Browsing") for n in range(3000)], "http"
    )
    assert len(before.log.blocks()) >= 20
    path = tmp_path / "state"
    snapshot.save(path, before)
    everyone = [name for block in before.log.blocks() for pair in block.user_table for name in pair]
    tracemalloc.start()
    all_at_once = orjson.loads(orjson.dumps(everyone))
    whole_log = tracemalloc.get_traced_memory()[0]
    del all_at_once
    passing: list[int] = []
    read = snapshot_events.read

    def timed(*args: Any) -> None:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        read(*args)
        end, peak = tracemalloc.get_traced_memory()
        passing.append(peak - max(start, end))

    monkeypatch.setattr(snapshot_events, "read", timed)
    try:
        after = restored(path, replace(SETTINGS, event_log_size=10_000))
    finally:
        tracemalloc.stop()
    assert [e.line for e in after.log.after(0)] == [e.line for e in before.log.after(0)]
    assert passing
    assert passing[0] < whole_log / 2, (passing, whole_log)


def test_event_blocks_are_restored_as_held(tmp_path: Path) -> None:
    """The log's packed blocks come back as they were (same bases, lengths and columns), their
    shopper strings are the restored shoppers' own, and new events carry on in a block of
    their own."""
    before, _clock = busy()
    path = tmp_path / "state"
    snapshot.save(path, before)
    after = restored(path)
    old, new = before.log.blocks(), after.log.blocks()
    assert [(b.base, len(b), list(b.ts), b.blob) for b in new] == [
        (b.base, len(b), list(b.ts), b.blob) for b in old
    ]
    assert all(block.sealed for block in new)
    assert after.log.nbytes == sum(block.nbytes for block in new)
    shoppers = after.store.tables().shoppers
    for block in new:
        for user_id, _name in block.user_table:
            if user_id in shoppers:
                assert user_id is shoppers[user_id].user_id
    logged = after.log.append(before.log.get(before.log.last_id).event)
    assert logged.id == before.log.last_id + 1
    assert after.log.blocks()[-1].base == logged.id


def test_smaller_event_log_bound_keeps_the_newest_restored_events(tmp_path: Path) -> None:
    """Restored under a smaller event-log size, the log keeps the newest events it may hold."""
    before, _clock = busy()
    path = tmp_path / "state"
    snapshot.save(path, before)
    after = restored(path, replace(SETTINGS, event_log_size=5))
    assert after.log.last_id == before.log.last_id
    assert after.log.first_id == before.log.last_id - 4
    assert [e.line for e in after.log.after(0)] == [
        e.line for e in before.log.after(before.log.last_id - 5)
    ]


def test_newer_format_is_refused_and_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A snapshot of a format this version does not know is refused with a clear message and
    kept aside under its format's name; the service starts empty."""
    path = tmp_path / "state"
    path.write_bytes(struct.pack("<8sI", MAGIC, 5) + b"\x00" * 64)
    with caplog.at_level(logging.ERROR):
        ingestor = restored(path)
    assert len(ingestor.store) == 0
    assert "snapshot format 5 is not one this version reads" in caplog.text
    assert "newer release" in caplog.text
    assert len(list(tmp_path.glob("state.format5-*"))) == 1
    assert not path.exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[: len(b) // 2], "cut short"),
        (lambda b: b[:100] + bytes([b[100] ^ 0x40]) + b[101:], "checksum does not match"),
        (lambda b: b"\x89PNG\r\n\x1a\n" + b[8:], "not a snapshot of this service"),
        (lambda b: b'{"format": 1, "store": {"shoppers": [[1, 2', "not JSON"),
    ],
    ids=["torn", "bit-flip", "foreign", "torn-format-1"],
)
def test_unusable_snapshot_is_kept_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any, reason: str
) -> None:
    """A torn, damaged or foreign file gives its reason, is kept aside, and the service starts
    empty rather than misreading it."""
    before, _ = busy()
    path = tmp_path / "state"
    snapshot.save(path, before)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.ERROR):
        ingestor = restored(path)
    assert len(ingestor.store) == 0
    assert reason in caplog.text
    assert "starting empty" in caplog.text
    assert not path.exists()
    assert len(list(tmp_path.glob("state.corrupt-*"))) == 1


def test_format_1_of_another_shape_is_kept_aside(tmp_path: Path) -> None:
    """Valid format-1 JSON that does not fit the state is treated like a corrupt file."""
    path = tmp_path / "state.json"
    path.write_bytes(orjson.dumps({"format": 1, "store": {"fields": ["user_id"]}}))
    ingestor = restored(path)
    assert len(ingestor.store) == 0
    assert list(tmp_path.glob("state.json.corrupt-*"))


def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    """Temporary files of writers killed before their rename are removed at start."""
    before, clock = busy()
    path = tmp_path / "state"
    snapshot.save(path, before)
    (tmp_path / "state.tmp-12345").write_bytes(b"half a snapshot")
    after = restored(path)
    assert not leftovers(path)
    assert seen(after, clock.now) == seen(before, clock.now)


# ----- the writer in a forked child -------------------------------------------------------------


async def test_snapshot_is_the_state_at_the_fork_while_ingest_goes_on(tmp_path: Path) -> None:
    """While a slowed writer child runs, the loop keeps ingesting; the file holds the state as
    it was at the fork, whole and consistent, and the status says when, how long and how big."""
    before, clock = busy()
    path = tmp_path / "state"
    status = SnapshotStatus()
    writer = SnapshotWriter(path, before, status, pause=0.02)
    expected = seen(before, clock.now)
    assert writer.start()
    taken = time.time()
    assert writer.running
    accepted = 0
    while writer.running:
        report = before.ingest(record(f"during-{accepted}", 600 + accepted), "http")
        accepted += report.accepted
        await asyncio.sleep(0.01)
    assert accepted >= 5  # the loop was free the whole time
    assert status.failures == 0, status.last_error
    assert status.size == path.stat().st_size
    assert status.duration is not None
    assert status.duration > 0.1
    assert status.taken_at is not None
    assert abs(status.taken_at - taken) < 1
    assert status.pause is not None
    assert status.pause < status.duration
    after = restored(path)
    assert seen(after, clock.now) == expected
    assert after.store.get("during-0") is None
    assert not leftovers(path)


async def test_writer_killed_mid_file_is_a_counted_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer killed while writing leaves the last whole snapshot in place, its temporary
    file is removed, the failure is counted and logged, and the next writer succeeds."""
    before, clock = busy()
    path = tmp_path / "state"
    snapshot.save(path, before)
    whole = path.read_bytes()
    status = SnapshotStatus()
    writer = SnapshotWriter(path, before, status, pause=0.05)
    assert writer.start()
    child = writer._child
    assert child is not None
    await asyncio.to_thread(wait_until, lambda: leftovers(path))
    os.kill(child.pid, signal.SIGKILL)
    with caplog.at_level(logging.ERROR, logger="exporter.snapshot_writer"):
        await writer.finished()
    assert status.failures == 1
    assert "killed by signal 9" in (status.last_error or "")
    assert "killed by signal 9" in caplog.text
    assert path.read_bytes() == whole
    assert not leftovers(path)
    writer.pause = 0
    assert writer.start()
    await writer.finished()
    assert status.failures == 1
    assert status.taken_at is not None
    assert seen(restored(path), clock.now) == seen(before, clock.now)


async def test_writer_holds_none_of_the_services_files(tmp_path: Path) -> None:
    """The child keeps only its pipe, its snapshot file and the standard streams: sockets the
    service closes are not held open by it."""
    before, _ = busy()
    path = tmp_path / "state"
    writer = SnapshotWriter(path, before, SnapshotStatus(), pause=0.05)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        assert writer.start()
        child = writer._child
        assert child is not None

        def descriptors() -> list[str]:
            fds = os.listdir(f"/proc/{child.pid}/fd")
            return [os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in fds] if fds else []

        held = await asyncio.to_thread(
            wait_until, lambda: [d for d in descriptors() if ".tmp-" in d] and descriptors()
        )
        assert not [d for d in held if d.startswith("socket:")]  # type: ignore[union-attr]
        assert len(held) <= 5  # type: ignore[arg-type]
        await writer.finished()
    finally:
        listener.close()


async def test_failing_disk_is_counted_logged_once_per_try_and_ingest_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the state folder gone read-only, each snapshot try fails once, logged once and
    counted; ingest carries on; once writable again the next snapshot is written."""
    before, _ = busy()
    with tmpfs(tmp_path / "disk", "1m") as folder:
        path = folder / "state"
        status = SnapshotStatus()
        writer = SnapshotWriter(path, before, status, pause=0)
        remount(folder, "ro")
        task = asyncio.create_task(writer.run(0.1))
        try:
            with caplog.at_level(logging.ERROR, logger="exporter.snapshot_writer"):
                for i in range(20):
                    assert before.ingest(record(f"ro-{i}", 700 + i), "http").accepted == 1
                    await asyncio.sleep(0.05)
                await writer.finished()
            assert status.failures >= 3
            lines = [r for r in caplog.records if "snapshot to" in r.getMessage()]
            assert len(lines) == status.failures
            assert "Read-only file system" in (status.last_error or "")
            assert status.taken_at is None
            remount(folder, "rw")
            await asyncio.to_thread(wait_until, lambda: status.taken_at is not None)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            writer.close()
        assert restored(path).store.get("ro-19") is not None


# ----- the real service -------------------------------------------------------------------------


def metric(base_url: str, name: str) -> float | None:
    body = http_get(base_url + "/metrics")[1].decode()
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith((name + " ", name + "{"))
    ]
    return sum(values) if values else None


def snapshot_after(base_url: str, moment: float) -> None:
    """Wait until the service holds a whole snapshot of its state taken after `moment`."""
    name = "shopper_exporter_last_snapshot_timestamp_seconds"
    wait_until(lambda: (metric(base_url, name) or 0) > moment)


def post(base_url: str, body: object) -> None:
    request = urllib.request.Request(
        base_url + "/api/metrics",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200


def many(prefix: str, n: int) -> list[dict[str, Any]]:
    return [shopper(f"{prefix}-{i}", itemsInCart=i % 4, cartValue=i % 4 * 2.5) for i in range(n)]


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real, small filesystem of its own at `folder` (needs the right to mount)."""
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs here: {done.stderr.strip()} (run as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


@pytest.mark.integration
def test_sigterm_then_restart_restores(tmp_path: Path) -> None:
    """After SIGTERM and a restart, shoppers, counters and the event buffer are back, and the
    snapshot metrics say when the restored snapshot was taken."""
    state = tmp_path / "state"
    port = free_port()
    args = ("--state-file", str(state), "--snapshot-interval", "60")
    with run_exporter(tmp_path, *args, port=port) as first:
        post(first.base_url, [shopper("keep", itemsInCart=1, cartValue=5), shopper("two")])
        post(first.base_url, shopper("two", isActive=False, lastAction="Placed order"))
        orders = metric(first.base_url, "shopper_orders_total")
        received = metric(first.base_url, "shopper_updates_received_total")
        timeline = orjson.loads(http_get(first.base_url + "/api/shoppers/keep/events")[1])
        assert metric(first.base_url, "shopper_exporter_snapshot_failures_total") == 0
        assert metric(first.base_url, "shopper_exporter_last_snapshot_timestamp_seconds") is None
        stopped = time.time()
        assert first.stop(signal.SIGTERM) == 0
    assert state.exists()
    with run_exporter(tmp_path, *args, port=port) as second:
        assert http_get(second.base_url + "/api/shoppers/keep")[0] == 200
        assert metric(second.base_url, "shopper_orders_total") == orders == 1
        assert metric(second.base_url, "shopper_updates_received_total") == received
        again = orjson.loads(http_get(second.base_url + "/api/shoppers/keep/events")[1])
        assert again == timeline
        taken = metric(second.base_url, "shopper_exporter_last_snapshot_timestamp_seconds")
        assert taken is not None
        assert abs(taken - stopped) < 5


@pytest.mark.integration
def test_snapshot_metrics_follow_each_snapshot(tmp_path: Path) -> None:
    """Each snapshot updates its duration, size, time, fork pause and writer memory."""
    state = tmp_path / "state"
    args = ("--state-file", str(state), "--snapshot-interval", "0.3")
    with run_exporter(tmp_path, *args) as running:
        post(running.base_url, many("m", 200))
        pushed = time.time()
        snapshot_after(running.base_url, pushed)
        size = metric(running.base_url, "shopper_exporter_snapshot_bytes")
        assert size is not None
        assert size > 200 * 50
        duration = metric(running.base_url, "shopper_exporter_snapshot_duration_seconds")
        pause = metric(running.base_url, "shopper_exporter_snapshot_pause_seconds")
        assert duration is not None
        assert pause is not None
        assert 0 < pause < duration
        memory = metric(running.base_url, "shopper_exporter_snapshot_writer_memory_bytes")
        assert memory is not None
        assert memory > 0
        assert metric(running.base_url, "shopper_exporter_snapshot_failures_total") == 0


@pytest.mark.integration
def test_kill_9_loses_at_most_one_interval(tmp_path: Path) -> None:
    """After kill -9, everything older than one snapshot interval survives."""
    state = tmp_path / "state"
    port = free_port()
    args = ("--state-file", str(state), "--snapshot-interval", "0.5")
    with run_exporter(tmp_path, *args, port=port) as first:
        post(first.base_url, shopper("early"))
        pushed = time.time()
        # Wait for a snapshot taken after the push, then push more and die at once.
        snapshot_after(first.base_url, pushed)
        post(first.base_url, shopper("late"))
        first.stop(signal.SIGKILL)
    with run_exporter(tmp_path, *args, port=port) as second:
        assert http_get(second.base_url + "/api/shoppers/early")[0] == 200


def writer_pids(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in children]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.integration
def test_kill_9_during_writes_twenty_times(tmp_path: Path) -> None:
    """kill -9 at random moments while a (slowed) writer is at work, 20 times in a row: each
    restart finds the last whole snapshot, never a torn one, and loses at most the data pushed
    after the last snapshot began; the writer dies with the service."""
    state = tmp_path / "state"
    port = free_port()
    args = ("--state-file", str(state), "--snapshot-interval", "0.2")
    env = {PAUSE_ENV: "0.004"}
    chance = random.Random(18)
    kept: list[str] = []
    torn = 0
    for round_ in range(20):
        with run_exporter(tmp_path, *args, port=port, env=env) as running:
            base = running.base_url
            log = running.log()
            assert "cannot be used" not in log, log
            assert "unreadable" not in log, log
            for name in kept:
                assert http_get(f"{base}/api/shoppers/{name}")[0] == 200, (round_, name)
            post(base, many(f"r{round_}", 300))
            pushed = time.time()
            snapshot_after(base, pushed)
            kept.append(f"r{round_}-299")
            post(base, many(f"late{round_}", 50))
            wait_until(lambda: leftovers(state), 10, 0.005)  # a writer is at work
            time.sleep(chance.uniform(0, 0.15))
            writers = writer_pids(running.proc.pid)
            running.stop(signal.SIGKILL)
        torn += bool(leftovers(state))  # killed with a half-written temporary file
        for pid in writers:
            wait_until(lambda pid=pid: not alive(pid), 5)
    assert torn >= 10  # most kills hit a writer mid-file
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name or ".format" in p.name]
    assert not aside


@pytest.mark.integration
def test_read_only_state_folder_never_stops_ingest(tmp_path: Path) -> None:
    """With the state folder read-only, snapshots fail, are counted and logged once per
    interval, and pushes are accepted; writable again, the next snapshot is written."""
    with tmpfs(tmp_path / "disk", "4m") as folder:
        state = folder / "state"
        args = ("--state-file", str(state), "--snapshot-interval", "0.25")
        with run_exporter(tmp_path, *args) as running:
            base = running.base_url
            remount(folder, "ro")
            started = time.time()
            for i in range(10):
                post(base, many(f"ro{i}", 20))
                time.sleep(0.1)
            wait_until(lambda: (metric(base, "shopper_exporter_snapshot_failures_total") or 0) >= 3)
            failures = metric(base, "shopper_exporter_snapshot_failures_total") or 0
            elapsed = time.time() - started
            lines = running.log().count("snapshot to ")
            assert abs(lines - failures) <= 1  # one line per failed try
            assert failures <= elapsed / 0.25 + 2  # one try per interval
            assert "Read-only file system" in running.log()
            assert metric(base, "shopper_tracked_shoppers") == 200
            remount(folder, "rw")
            writable = time.time()
            snapshot_after(base, writable)
            assert "are written again" in running.log()


@pytest.mark.integration
def test_full_state_folder_keeps_the_last_whole_snapshot(tmp_path: Path) -> None:
    """On a full disk snapshots fail (counted, logged, no temporary file left), ingest goes
    on, and after kill -9 the last whole snapshot is what comes back."""
    with tmpfs(tmp_path / "disk", "96k") as folder:
        state = folder / "state"
        port = free_port()
        args = ("--state-file", str(state), "--snapshot-interval", "0.25")
        with run_exporter(tmp_path, *args, port=port) as running:
            base = running.base_url
            post(base, many("small", 5))
            pushed = time.time()
            snapshot_after(base, pushed)
            post(base, many("big", 2000))
            wait_until(lambda: (metric(base, "shopper_exporter_snapshot_failures_total") or 0) >= 2)
            assert "No space left on device" in running.log()
            # A writer may be at work at this instant (one starts every 0.25 s): whatever
            # temporary file is there now is gone once its writer has failed.
            seen_now = leftovers(state)
            wait_until(lambda: not any(path.exists() for path in seen_now))
            assert metric(base, "shopper_tracked_shoppers") == 2005
            running.stop(signal.SIGKILL)
        with run_exporter(tmp_path, *args, port=port) as again:
            assert http_get(again.base_url + "/api/shoppers/small-4")[0] == 200
            assert metric(again.base_url, "shopper_tracked_shoppers") == 5
