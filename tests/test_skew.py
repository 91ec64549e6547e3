"""Clock skew: records stamped past --max-clock-skew are refused by field; none locks a shopper."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from exporter import snapshot
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.settings import Settings
from exporter.skew import ClockSkew
from exporter.store import ShopperStore

from support import http_request, iso, run_exporter, scraped, shopper

T0 = 1_800_000_000.0
FAR = "2099-01-01T00:00:00Z"


def ingestor_at(now: list[float], **settings: Any) -> Ingestor:
    """An ingestor whose clock reads `now[0]`."""
    chosen = Settings(**settings)
    return Ingestor(chosen, ShopperStore(chosen), EventLog(), Hub(), clock=lambda: now[0])


class TestRule:
    def test_the_horizon_is_the_clock_plus_the_limit(self) -> None:
        """A record may be exactly the limit ahead; the refusal names the field and the reason."""
        skew = ClockSkew(300)
        assert skew.horizon(T0) == T0 + 300
        refusal = skew.refusal(T0 + 400, T0)
        assert refusal.field == "timestamp"
        assert refusal.message.startswith("in the future")
        assert "400 s ahead" in refusal.message

    def test_at_the_limit_is_accepted_and_just_past_it_refused(self) -> None:
        """At exactly --max-clock-skew ahead a record applies; a millisecond later it is refused."""
        now = [T0]
        ingestor = ingestor_at(now, max_clock_skew=300)
        body = [
            shopper("at_limit", timestamp=iso(T0 + 300)),
            shopper("past_limit", timestamp=iso(T0 + 300.001)),
            shopper("far", timestamp=FAR),
            shopper("now", timestamp=iso(T0)),
        ]
        report = ingestor.ingest(body, "http")
        assert report.accepted == 2
        assert [(r.index, r.reason) for r in report.rejected] == [(1, "future"), (2, "future")]
        for rejection in report.rejected:
            assert [e.field for e in rejection.errors] == ["timestamp"]
            assert "in the future" in rejection.errors[0].message
        assert "at_limit" in ingestor.store
        assert "far" not in ingestor.store
        assert ingestor.rejected[("http", "future")] == 2

    def test_the_fast_path_refuses_the_same_records(self) -> None:
        """Bodies read in one pass (every record valid) refuse future records just the same."""
        now = [T0]
        ingestor = ingestor_at(now)
        raw = orjson.dumps([shopper("a", timestamp=iso(T0)), shopper("b", timestamp=FAR)])
        report = ingestor.ingest_bytes(raw, "ws")
        assert (report.accepted, [r.index for r in report.rejected]) == (1, [1])
        assert ingestor.rejected[("ws", "future")] == 1

    def test_future_events_are_refused_too(self) -> None:
        """An explicit event stamped past the limit is refused by its timestamp field."""
        now = [T0]
        ingestor = ingestor_at(now)
        ingestor.ingest(shopper("a", timestamp=iso(T0)), "http")
        order = {"type": "order_completed", "userId": "a", "timestamp": FAR, "orderId": "o1"}
        report = ingestor.ingest([order], "http", "event")
        assert report.all_rejected
        assert report.rejected[0].errors[0].field == "timestamp"
        assert ingestor.store.counters.orders == 0
        later = dict(order, timestamp=iso(T0 + 1))
        assert ingestor.ingest([later], "http", "event").accepted == 1
        assert ingestor.store.counters.orders == 1

    def test_a_refused_future_record_locks_nothing(self) -> None:
        """After a future update is refused, the shopper's next honest updates still apply."""
        now = [T0]
        ingestor = ingestor_at(now)
        ingestor.ingest(shopper("a", timestamp=FAR, pageViews=50), "http")
        now[0] = T0 + 10
        report = ingestor.ingest(shopper("a", timestamp=iso(T0 + 10), pageViews=3), "http")
        assert (report.accepted, report.ignored) == (1, 0)
        state = ingestor.store.get("a")
        assert state is not None
        assert state.page_views == 3

    def test_a_restored_future_state_heals_on_the_next_valid_update(self) -> None:
        """A shopper kept with a time past the limit (from before the rule) takes the next update,
        however much older, and is then ordered by time again."""
        lax = Settings(max_clock_skew=10**12)
        old = ShopperStore(lax)
        future_at = T0 + 10 * 365 * 86400
        old.apply(update_at("a", future_at, pageViews=9, itemsInCart=2, cartValue=5), future_at)
        store = ShopperStore(Settings())
        store.import_state(orjson.loads(orjson.dumps(old.export_state())))
        healed = store.apply(update_at("a", T0, pageViews=10), T0)
        assert isinstance(healed, list)
        state = store.get("a")
        assert state is not None
        assert (state.timestamp, state.page_views) == (T0, 10)
        assert isinstance(store.apply(update_at("a", T0 + 5), T0 + 5), list)
        stale = store.apply(update_at("a", T0 + 1), T0 + 6)
        assert not isinstance(stale, list)
        assert stale.reason == "stale"


def update_at(user: str, at: float, **fields: Any) -> Any:
    """A validated update of `user` stamped `at`."""
    from exporter.model import ShopperUpdate

    return ShopperUpdate.model_validate(shopper(user, timestamp=iso(at), **fields))


@pytest.mark.integration
class TestOnTheWire:
    def test_http_batch_refuses_by_record_and_counts(self, tmp_path: Path) -> None:
        """A real exporter applies the honest records of a batch, answers each future one by
        index and field, and counts them as rejected for reason `future`."""
        with run_exporter(tmp_path, "--max-clock-skew", "300") as proc:
            now = time.time()
            body = [
                shopper("ok", timestamp=iso(now)),
                shopper("soon", timestamp=iso(now + 240)),
                shopper("later", timestamp=iso(now + 420)),
                shopper("far", timestamp=FAR),
            ]
            status, _, reply = http_request(proc.base_url + "/api/metrics", body)
            assert status == 200, reply
            assert reply["accepted"] == 2
            refused = {r["index"]: r for r in reply["rejected"]}
            assert set(refused) == {2, 3}
            for rejection in refused.values():
                assert rejection["reason"] == "future"
                assert rejection["errors"][0]["field"] == "timestamp"
                assert "in the future" in rejection["errors"][0]["message"]
            status, _, reply = http_request(
                proc.base_url + "/api/events",
                [{"type": "search", "userId": "ok", "timestamp": FAR}],
            )
            assert status == 422
            assert reply["rejected"][0]["reason"] == "future"
            value = scraped(
                proc.base_url, "shopper_updates_rejected_total", transport="http", reason="future"
            )
            assert value == 3

    def test_loki_push_refuses_future_lines(self, tmp_path: Path) -> None:
        """Loki pushes: a line stamped past the limit and a record stamped past it are refused
        (400 naming both lines); the honest line is kept; all counted."""
        with run_exporter(tmp_path) as proc:
            now_ns = time.time_ns()
            future_ns = now_ns + 3600 * 10**9
            record = orjson.dumps(shopper("pat", timestamp=FAR)).decode()
            body = {
                "streams": [
                    {
                        "stream": {"job": "shop"},
                        "values": [
                            [str(now_ns), "deployed v2"],
                            [str(future_ns), "from the future"],
                            [str(now_ns), record],
                        ],
                    }
                ]
            }
            status, _, text = http_request(proc.base_url + "/loki/api/v1/push", body)
            assert status == 400
            assert "line 1: timestamp: in the future" in text
            assert "line 2: timestamp: in the future" in text
            assert "line 0" not in text
            future = scraped(
                proc.base_url, "shopper_updates_rejected_total", transport="loki", reason="future"
            )
            assert future == 2

    def test_snapshot_with_a_future_shopper_heals_after_restart(self, tmp_path: Path) -> None:
        """A state file holding a shopper stamped in 2099 restores; the next honest update of
        that shopper is applied, not ignored as stale."""
        lax = Settings(max_clock_skew=10**12)
        ingestor = Ingestor(lax, ShopperStore(lax), EventLog(), Hub())
        ingestor.ingest(shopper("pat", timestamp=FAR, pageViews=40), "http")
        state_file = tmp_path / "state.json"
        snapshot.save(state_file, snapshot.capture(ingestor))
        with run_exporter(tmp_path, "--state-file", str(state_file)) as proc:
            status, _, view = http_request(proc.base_url + "/api/shoppers/pat")
            assert status == 200
            assert view["timestamp"].startswith("2099-01-01")
            status, _, reply = http_request(
                proc.base_url + "/api/metrics", shopper("pat", pageViews=41)
            )
            assert (status, reply["accepted"], reply["ignored"]) == (200, 1, 0)
            _, _, view = http_request(proc.base_url + "/api/shoppers/pat")
            assert not view["timestamp"].startswith("2099")
            assert view["pageViews"] == 41
