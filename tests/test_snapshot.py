"""Restart safety: snapshots restore shoppers, counters and events; corrupt ones are set aside."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import orjson
import pytest

from exporter import snapshot
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.settings import Settings
from exporter.store import ShopperStore

from support import free_port, http_get, run_exporter, shopper, wait_until

T0 = 1_800_000_000.0


def make_ingestor(settings: Settings | None = None) -> Ingestor:
    settings = settings or Settings()
    return Ingestor(settings, ShopperStore(settings), EventLog(100), Hub(), clock=lambda: T0)


def nonzero(aggregates: object) -> dict[str, object]:
    """Aggregates without label values that fell back to zero (those are not carried over)."""
    out: dict[str, object] = {}
    for name in aggregates.__dataclass_fields__:  # type: ignore[attr-defined]
        value = getattr(aggregates, name)
        out[name] = {k: v for k, v in value.items() if v} if isinstance(value, dict) else value
    return out


def fill(ingestor: Ingestor) -> None:
    ingestor.ingest(
        [
            shopper("a", itemsInCart=2, cartValue=20.5, company="Austin, TX", sessionDuration=3),
            shopper("b", activeFeature="Search", searchesPerformed=2),
        ],
        "http",
    )
    ingestor.ingest(shopper("b", isActive=False, searchesPerformed=3), "http")
    ingestor.ingest({"userId": "x"}, "http")


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    """Saved and loaded, the state answers exactly as before, and event ids carry on."""
    before = make_ingestor()
    fill(before)
    path = tmp_path / "state.json"
    snapshot.save(path, snapshot.capture(before))
    after = snapshot.load(path, make_ingestor)
    for name in ("a", "b"):
        old, new = before.store.get(name), after.store.get(name)
        assert old is not None
        assert new is not None
        assert after.store.view(new) == before.store.view(old)
    assert after.store.summary(T0) == before.store.summary(T0)
    assert nonzero(after.store.aggregates) == nonzero(before.store.aggregates)
    assert after.received == before.received
    assert after.rejected == before.rejected
    assert [e.line for e in after.log.after(0)] == [e.line for e in before.log.after(0)]
    next_id = after.log.append(before.log.get(1).event).id  # type: ignore[union-attr]
    assert next_id == before.log.last_id + 1


def test_corrupt_snapshot_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A corrupt file gives a clear message, is kept aside, and the service starts empty."""
    path = tmp_path / "state.json"
    path.write_bytes(b'{"format": 1, "store": {"shoppers": [[1, 2')
    with caplog.at_level(logging.ERROR):
        ingestor = snapshot.load(path, make_ingestor)
    assert len(ingestor.store) == 0
    assert not path.exists()
    kept = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(kept) == 1
    assert "unreadable" in caplog.text
    assert "starting empty" in caplog.text


def test_snapshot_of_another_shape_is_set_aside(tmp_path: Path) -> None:
    """Valid JSON that does not fit the state is treated like a corrupt file."""
    path = tmp_path / "state.json"
    path.write_bytes(orjson.dumps({"format": 1, "store": {"fields": ["user_id"]}}))
    ingestor = snapshot.load(path, make_ingestor)
    assert len(ingestor.store) == 0
    assert list(tmp_path.glob("state.json.corrupt-*"))


def metric(base_url: str, name: str) -> float:
    body = http_get(base_url + "/metrics")[1].decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def post(base_url: str, body: object) -> None:
    import urllib.request

    request = urllib.request.Request(
        base_url + "/api/metrics",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200


@pytest.mark.integration
def test_sigterm_then_restart_restores(tmp_path: Path) -> None:
    """After SIGTERM and a restart, shoppers, counters and the event buffer are back."""
    state = tmp_path / "state.json"
    port = free_port()
    args = ("--state-file", str(state), "--snapshot-interval", "60")
    with run_exporter(tmp_path, *args, port=port) as first:
        post(first.base_url, [shopper("keep", itemsInCart=1, cartValue=5), shopper("two")])
        post(first.base_url, shopper("two", isActive=False, lastAction="Placed order"))
        orders = metric(first.base_url, "shopper_orders_total")
        received = metric(first.base_url, "shopper_updates_received_total")
        timeline = orjson.loads(http_get(first.base_url + "/api/shoppers/keep/events")[1])
        assert first.stop(signal.SIGTERM) == 0
    assert state.exists()
    with run_exporter(tmp_path, *args, port=port) as second:
        assert http_get(second.base_url + "/api/shoppers/keep")[0] == 200
        assert metric(second.base_url, "shopper_orders_total") == orders == 1
        assert metric(second.base_url, "shopper_updates_received_total") == received
        again = orjson.loads(http_get(second.base_url + "/api/shoppers/keep/events")[1])
        assert again == timeline


@pytest.mark.integration
def test_kill_9_loses_at_most_one_interval(tmp_path: Path) -> None:
    """After kill -9, everything older than one snapshot interval survives."""
    state = tmp_path / "state.json"
    port = free_port()
    args = ("--state-file", str(state), "--snapshot-interval", "0.5")
    with run_exporter(tmp_path, *args, port=port) as first:
        post(first.base_url, shopper("early"))
        saved_after = state.stat().st_mtime if state.exists() else 0.0
        # Wait for a snapshot taken after the push, then push more and die at once.
        wait_until(lambda: state.exists() and state.stat().st_mtime > saved_after + 0.4, 10)
        post(first.base_url, shopper("late"))
        first.stop(signal.SIGKILL)
    with run_exporter(tmp_path, *args, port=port) as second:
        assert http_get(second.base_url + "/api/shoppers/early")[0] == 200
