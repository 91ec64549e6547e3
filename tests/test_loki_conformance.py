"""LogQL conformance: hundreds of queries from Loki's documented grammar, run through the HTTP API.

The cases live in tests/loki_conformance.json: a fixed event set and, for each query, what
Loki does with it — parses (200), refuses (400 at a line and column, with Loki's words), or
evaluates to given lines or samples over that event set. Metric results name the labels each
series must carry (a series may carry more, such as labels the streams gain later).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.events import ShoppingEvent
from exporter.keys import EVENT_LOG
from exporter.settings import Settings

from conftest import ClientFactory

Client = TestClient[Any, Any]
SECOND = 1_000_000_000
DATA = orjson.loads((Path(__file__).parent / "loki_conformance.json").read_bytes())
T0 = DATA["t0"] * SECOND
CASES: list[dict[str, Any]] = DATA["cases"]


def case_id(case: dict[str, Any]) -> str:
    return f"{case['kind']}:{case['query'][:70]}"


@pytest.fixture
async def loki(aiohttp_client: ClientFactory) -> Client:
    """A service whose event log holds the conformance event set, a second apart from T0
    (years ago: the log's retention is widened to keep them)."""
    app = create_app(Settings(event_log_retention=20 * 365 * 86400.0))
    log = app[EVENT_LOG]
    for event in DATA["events"]:
        at = DATA["t0"] + event["at"]
        shopping = ShoppingEvent(
            event["type"], event["user"], f"Shopper {event['user']}", at, event["props"]
        )
        log.append(shopping, ts_ns=at * SECOND)
    return await aiohttp_client(app)


async def request(client: Client, path: str, **params: str) -> tuple[int, Any]:
    """Status and body (parsed JSON, or text) of a GET."""
    resp = await client.get(path + "?" + urlencode(params))
    text = await resp.text()
    if resp.content_type == "application/json":
        return resp.status, orjson.loads(text)
    return resp.status, text


async def run(client: Client, case: dict[str, Any]) -> tuple[int, Any]:
    """Send a case the way Grafana would: instant cases to /query, the rest to /query_range."""
    if case["kind"] == "instant":
        at = T0 + case["time"] * SECOND
        return await request(client, "/loki/api/v1/query", query=case["query"], time=str(at))
    start, end, step = case.get("start", 0), case.get("end", 60), case.get("step", 60)
    return await request(
        client,
        "/loki/api/v1/query_range",
        query=case["query"],
        start=str(T0 + start * SECOND),
        end=str(T0 + end * SECOND),
        step=f"{step}s",
        limit="100",
        direction="backward",
    )


def log_lines(body: dict[str, Any]) -> list[str]:
    """Every line of a streams result, newest first."""
    entries = [
        (int(ts), line) for stream in body["data"]["result"] for ts, line in stream["values"]
    ]
    return [line for _ts, line in sorted(entries, key=lambda e: -e[0])]


def samples(body: dict[str, Any]) -> list[tuple[dict[str, str], Any]]:
    """(labels, value or values) of each series of a vector or matrix result, in result order."""
    data = body["data"]
    if data["resultType"] == "scalar":
        return [({}, data["result"][1])]
    key = "value" if data["resultType"] == "vector" else "values"
    out = []
    for series in data["result"]:
        raw = series[key]
        if key == "value":
            out.append((series["metric"], raw[1]))
        else:
            out.append((series["metric"], [[int(t) - DATA["t0"], v] for t, v in raw]))
    return out


def series_match(expected: list[list[Any]], observed: list[tuple[dict[str, str], Any]]) -> bool:
    """Same number of series, and the i-th carries the i-th expected labels and value."""
    if len(expected) != len(observed):
        return False
    return all(
        labels.items() <= got_labels.items() and value == got_value
        for (labels, value), (got_labels, got_value) in zip(expected, observed, strict=True)
    )


def ordered(observed: list[tuple[dict[str, str], Any]], keep_order: bool) -> list[Any]:
    """Series in result order for sort/sort_desc, else by label set (as Loki does not promise)."""
    if keep_order:
        return observed
    return sorted(observed, key=lambda s: sorted(s[0].items()))


@pytest.mark.parametrize("case", CASES, ids=case_id)
async def test_query_behaves_as_loki_documents(loki: Client, case: dict[str, Any]) -> None:
    """The query parses, is refused at Loki's position and words, or gives the expected result."""
    status, body = await run(loki, case)
    kind = case["kind"]
    if kind == "error":
        assert status == 400, body
        where = f"parse error at line {case.get('line', 1)}, col {case['col']}: "
        assert where in body, body
        assert case["words"] in body, body
        return
    assert status == 200, body
    if kind == "parse":
        assert body["status"] == "success"
    elif kind == "log":
        assert body["data"]["resultType"] == "streams"
        assert log_lines(body) == case["lines"]
    else:
        observed = ordered(samples(body), case.get("ordered", False))
        expected = case["result"]
        assert series_match(expected, observed), observed


def test_suite_covers_hundreds_of_queries_of_each_kind() -> None:
    """The data file holds hundreds of cases: parses, refusals and evaluated results."""
    kinds = [case["kind"] for case in CASES]
    assert len(CASES) >= 300
    assert kinds.count("error") >= 80
    assert kinds.count("log") + kinds.count("instant") + kinds.count("range") >= 120
    assert len({(case["kind"], case["query"], case.get("time")) for case in CASES}) == len(CASES)
