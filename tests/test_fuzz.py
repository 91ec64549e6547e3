"""Hostile input: generated records and bodies never crash the service or give a 5xx."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.model import BodyError, parse_json
from exporter.settings import Settings
from exporter.store import Shopper, ShopperStore
from exporter.tallies import Histogram

from support import IN_CI, brief_example, run_exporter

FIELDS = [*brief_example(), "type", "orderValue", "items", "orderId", "metrics", "events"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.sampled_from(["2026-01-01T00:00:00Z", "2026-13-40", "", "Placed order", "Cart"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
records = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), values, max_size=14)
valid_base = st.builds(lambda r: brief_example() | r, records)
bodies = st.one_of(
    records,
    valid_base,
    st.lists(valid_base | records, max_size=6),
    st.fixed_dictionaries(
        {"metrics": st.lists(valid_base, max_size=3)}, optional={"events": values}
    ),
    values,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, kind=st.sampled_from(["metric", "event"]))
def test_any_body_is_answered_and_state_stays_consistent(body: Any, kind: str) -> None:
    """Every body is applied or refused by field; aggregates always equal a recount."""
    config = Settings()
    store = ShopperStore(config)
    ingestor = Ingestor(config, store, EventLog(100), Hub())
    try:
        report = ingestor.ingest(body, "http", kind)
    except BodyError as err:
        refusal = str(err)  # a whole-body refusal must say why
        assert refusal
        return
    for rejection in report.rejected:
        assert rejection.errors
        for error in rejection.errors:
            assert error.field
            assert error.message
    online = [s for s in store.newest(limit=100) if s.online]
    assert store.aggregates.active == len(online)
    assert store.aggregates.cart_items == sum(s.items_in_cart for s in online)
    orjson.dumps(store.summary(0))  # always serialisable


def _fed(body: Any, kind: str, *, from_bytes: bool) -> tuple[Any, dict[str, Any], list[Any]]:
    """(the reply or the refusal, the store's state, the logged events) after one body."""
    config = Settings()
    ingestor = Ingestor(config, ShopperStore(config), EventLog(100), Hub(), clock=lambda: 1e9)
    raw = json.dumps(body)
    try:
        if from_bytes:
            reply: Any = ingestor.ingest_bytes(raw, "http", kind).to_json()
        else:
            # Parsed as the service parses (orjson reads integers past 64 bits as floats).
            reply = ingestor.ingest(parse_json(raw), "http", kind).to_json()
    except BodyError as err:
        reply = (err.reason, str(err))
    logged = [row[2:] for row in ingestor.log.export_state()["events"]]  # without ids and times
    return reply, _held(ingestor.store), logged


def _held(store: ShopperStore) -> Any:
    """What a store holds, as plain data: shoppers' fields, counters, aggregates and caps."""
    counters = store.counters
    return (
        [[getattr(s, f) for f in Shopper.__slots__] for s in store.tables().shoppers.values()],
        {
            f.name: value.state() if isinstance(value, Histogram) else value
            for f in dataclasses.fields(counters)
            for value in [getattr(counters, f.name)]
        },
        dataclasses.asdict(store.aggregates),
        {name: (cap.values(), cap.overflow) for name, cap in store.labels.items()},
        store.last_update,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, kind=st.sampled_from(["metric", "event"]))
def test_raw_bodies_end_as_their_parsed_form(body: Any, kind: str) -> None:
    """A body sent as bytes (which takes the one-pass fast path when every record is valid)
    leaves the same reply, store and event log as the same body parsed and read record by
    record."""
    assert _fed(body, kind, from_bytes=True) == _fed(body, kind, from_bytes=False)


@pytest.mark.integration
def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    """Schemathesis, driven by /api/openapi.json, finds no 5xx and no reply off the schema."""
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if cli is None:
        message = "schemathesis is not installed (the test extra installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with run_exporter(tmp_path) as exporter:
        result = subprocess.run(
            [
                cli,
                "run",
                f"{exporter.base_url}/api/openapi.json",
                "--checks",
                "not_a_server_error,status_code_conformance,"
                "response_schema_conformance,content_type_conformance",
                "--max-examples",
                "40",
                "--seed",
                "7",
                "--phases",
                "examples,fuzzing",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-4000:]
        assert "No issues found" in result.stdout
        assert exporter.proc.poll() is None  # still alive
