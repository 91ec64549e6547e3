"""The Loki query API as Grafana's Loki datasource calls it."""

from __future__ import annotations

from datetime import UTC, datetime
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
T0 = 1_700_000_000 * SECOND
HEALTH_CHECK = (
    "/loki/api/v1/query?direction=backward&query=vector%281%29%2Bvector%281%29&time=4000000000"
)


def update(user_id: str, **fields: Any) -> dict[str, Any]:
    """A shopper update in the platform's wire format."""
    body: dict[str, Any] = {
        "userId": user_id,
        "userName": f"Shopper {user_id}",
        "email": f"{user_id}@example.com",
        "timestamp": datetime.now(UTC).isoformat(),
        "isActive": True,
        "company": "Austin, TX",
        "membershipType": "Premium",
        "activeFeature": "Browsing",
    }
    body.update(fields)
    return body


def event(kind: str, user: str, **props: Any) -> ShoppingEvent:
    """A logged shopping event with bounded details, as the store derives them."""
    details = {"activity": "Cart", "membership": "Free", "location": "Austin, TX"}
    details.update(props)
    return ShoppingEvent(kind, user, f"Shopper {user}", T0 / SECOND, details)


async def get(client: Client, path: str, **params: str) -> tuple[int, Any]:
    """Status and parsed body (JSON when it is, else text) of a GET."""
    url = path + ("?" + urlencode(params) if params else "")
    resp = await client.get(url)
    text = await resp.text()
    if resp.content_type == "application/json":
        return resp.status, orjson.loads(text)
    return resp.status, text


@pytest.fixture
async def loki(aiohttp_client: ClientFactory) -> Client:
    """A service whose event log holds a known minute of events from T0 on."""
    app = create_app(Settings())
    log = app[EVENT_LOG]
    log.clock = lambda: T0 + 60 * SECOND  # the hour of retention runs on the events' own time
    # Ten events a second apart: 6 cart_add, 3 search, 1 order_completed.
    kinds = ["cart_add"] * 6 + ["search"] * 3 + ["order_completed"]
    for i, kind in enumerate(kinds):
        log.append(event(kind, f"u{i}", cartValue=10.0 * i), ts_ns=T0 + i * SECOND)
    return await aiohttp_client(app)


def lines(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(ns timestamp, parsed line) of every entry of a streams result, in result order."""
    out = []
    for stream in body["data"]["result"]:
        for ts, line in stream["values"]:
            out.append((ts, orjson.loads(line)))
    return out


async def test_health_check_answers_one_sample_of_two(loki: Client) -> None:
    """Grafana's Save & test query returns exactly one unlabeled sample "2"."""
    resp = await loki.get(
        HEALTH_CHECK, headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "success"
    assert list(body["data"])[:2] == ["resultType", "result"]
    assert body["data"]["resultType"] == "vector"
    assert body["data"]["result"] == [{"metric": {}, "value": [4, "2"]}]


async def test_ready_is_plain_text(loki: Client) -> None:
    """/ready answers Loki's plain `ready`."""
    resp = await loki.get("/ready")
    assert resp.status == 200
    assert await resp.text() == "ready"


async def test_labels_lists_the_bounded_stream_labels(loki: Client) -> None:
    """Label names are the streams' labels, never a shopper id."""
    status, body = await get(loki, "/loki/api/v1/labels", start=str(T0), end=str(T0 + 60 * SECOND))
    assert status == 200
    assert body == {
        "status": "success",
        "data": ["activity", "detected_level", "job", "membership", "service_name", "type"],
    }


async def test_labels_are_never_empty_for_old_grafana(aiohttp_client: ClientFactory) -> None:
    """An empty service still names `job`, which Grafana 10.1's datasource test needs."""
    client = await aiohttp_client(create_app(Settings()))
    status, body = await get(client, "/loki/api/v1/labels")
    assert status == 200
    assert body["data"] == ["job"]


async def test_labels_with_a_query_narrow_to_its_streams(loki: Client) -> None:
    """`query` limits label names to the streams its selector picks."""
    status, body = await get(
        loki,
        "/loki/api/v1/labels",
        start=str(T0),
        end=str(T0 + 60 * SECOND),
        query='{job="shopper-state"}',
    )
    assert status == 200
    assert body["data"] == []


async def test_label_values_with_and_without_query(loki: Client) -> None:
    """Values of `type` overall, and only those a selector picks."""
    window = {"start": str(T0), "end": str(T0 + 60 * SECOND)}
    status, body = await get(loki, "/loki/api/v1/label/type/values", **window)
    assert status == 200
    assert body["data"] == ["cart_add", "order_completed", "search"]
    status, body = await get(
        loki,
        "/loki/api/v1/label/type/values",
        query='{job="shopper-events", type=~"s.*|o.*"}',
        **window,
    )
    assert body["data"] == ["order_completed", "search"]
    status, body = await get(loki, "/loki/api/v1/label/job/values", **window)
    assert body["data"] == ["shopper-events"]


async def test_series_returns_label_sets(loki: Client) -> None:
    """`/series?match[]=` lists each matching stream's label set."""
    status, body = await get(
        loki,
        "/loki/api/v1/series",
        **{"match[]": '{type="search"}', "start": str(T0), "end": str(T0 + 60 * SECOND)},
    )
    assert status == 200
    assert body["data"] == [
        {
            "job": "shopper-events",
            "service_name": "shopper-events",
            "detected_level": "info",
            "type": "search",
            "activity": "Cart",
            "membership": "Free",
        }
    ]


async def test_index_stats_is_a_bare_object(loki: Client) -> None:
    """`/index/stats` counts streams, entries and bytes without a status wrapper."""
    status, body = await get(
        loki,
        "/loki/api/v1/index/stats",
        query='{job="shopper-events"}',
        start=str(T0),
        end=str(T0 + 60 * SECOND),
    )
    assert status == 200
    assert set(body) == {"streams", "chunks", "entries", "bytes"}
    assert body["streams"] == 3
    assert body["entries"] == 10
    assert body["bytes"] > 0


async def test_log_query_backward_returns_newest_first_up_to_limit(loki: Client) -> None:
    """Backward (the default) gives the newest `limit` entries, newest first."""
    status, body = await get(
        loki,
        "/loki/api/v1/query_range",
        query='{job="shopper-events"}',
        start=str(T0),
        end=str(T0 + 60 * SECOND),
        limit="3",
        step="2000ms",
        direction="backward",
    )
    assert status == 200
    assert body["data"]["resultType"] == "streams"
    assert list(body["data"]) == ["resultType", "result", "stats"]
    entries = sorted(lines(body), reverse=True)
    assert [ts for ts, _ in entries] == [str(T0 + i * SECOND) for i in (9, 8, 7)]
    assert all(len(value) == 2 for s in body["data"]["result"] for value in s["values"])


async def test_log_query_forward_returns_oldest_first(loki: Client) -> None:
    """Forward gives the oldest entries, oldest first within each stream."""
    status, body = await get(
        loki,
        "/loki/api/v1/query_range",
        query='{job="shopper-events", type="cart_add"}',
        start=str(T0),
        end=str(T0 + 60 * SECOND),
        limit="4",
        direction="forward",
    )
    assert status == 200
    [stream] = body["data"]["result"]
    assert stream["stream"] == {
        "job": "shopper-events",
        "service_name": "shopper-events",
        "detected_level": "info",
        "type": "cart_add",
        "activity": "Cart",
        "membership": "Free",
    }
    assert [v[0] for v in stream["values"]] == [str(T0 + i * SECOND) for i in range(4)]


async def test_range_includes_start_and_excludes_end(loki: Client) -> None:
    """An entry exactly at `start` is returned; one exactly at `end` is not."""
    _status, body = await get(
        loki,
        "/loki/api/v1/query_range",
        query='{job="shopper-events"}',
        start=str(T0 + 2 * SECOND),
        end=str(T0 + 5 * SECOND),
        direction="forward",
    )
    assert sorted(ts for ts, _ in lines(body)) == [str(T0 + i * SECOND) for i in (2, 3, 4)]


async def test_line_filters_contains_excludes_regex_and_or(loki: Client) -> None:
    """`|=`, `!=`, `|~` and `or` chains filter on the line's text."""
    window = {"start": str(T0), "end": str(T0 + 60 * SECOND), "limit": "100"}
    query = '{job="shopper-events"} |= `u1"` or "u2\\"" != "search"'
    status, body = await get(loki, "/loki/api/v1/query_range", query=query, **window)
    assert status == 200
    assert sorted(line["userId"] for _, line in lines(body)) == ["u1", "u2"]
    query = '{job="shopper-events"} |~ "order_(completed|placed)"'
    status, body = await get(loki, "/loki/api/v1/query_range", query=query, **window)
    assert [line["type"] for _, line in lines(body)] == ["order_completed"]
    query = '{job="shopper-events"} |= ``'
    status, body = await get(loki, "/loki/api/v1/query_range", query=query, **window)
    assert len(lines(body)) == 10


async def test_lines_never_carry_email_or_ids_as_labels(aiohttp_client: ClientFactory) -> None:
    """Ingested updates appear as lines without email, and stream labels hold no shopper id."""
    client = await aiohttp_client(create_app(Settings()))
    resp = await client.post("/api/metrics", json=[update("alice", itemsInCart=2, cartValue=9.5)])
    assert resp.status == 200
    status, body = await get(client, "/loki/api/v1/query_range", query='{job=~"shopper-.*"}')
    assert status == 200
    text = orjson.dumps(body).decode()
    assert "alice@example.com" not in text
    assert "email" not in text
    for stream in body["data"]["result"]:
        assert "alice" not in orjson.dumps(stream["stream"]).decode()
    assert {"session_started", "cart_add"} <= {
        line["type"] for _, line in lines(body) if "type" in line
    }


async def test_count_by_type_over_a_range_is_a_matrix(loki: Client) -> None:
    """`sum by (type) (count_over_time(…[1m]))` gives one series per type, empty steps left out."""
    status, body = await get(
        loki,
        "/loki/api/v1/query_range",
        query='sum by (type) (count_over_time({job="shopper-events"}[1m]))',
        start=str(T0),
        end=str(T0 + 120 * SECOND),
        step="60000ms",
        limit="1000",
    )
    assert status == 200
    data = body["data"]
    assert data["resultType"] == "matrix"
    series = {s["metric"]["type"]: s["values"] for s in data["result"]}
    t0 = T0 // SECOND
    # Windows are (t-1m, t]: at T0 only the first event; at T0+60s the rest; at T0+120s none.
    assert series == {
        "cart_add": [[t0, "1"], [t0 + 60, "5"]],
        "search": [[t0 + 60, "3"]],
        "order_completed": [[t0 + 60, "1"]],
    }


async def test_count_by_type_instant_is_a_vector(loki: Client) -> None:
    """The same query on /query gives a vector at `time`."""
    at = T0 + 30 * SECOND
    status, body = await get(
        loki,
        "/loki/api/v1/query",
        query='sum by(type) (count_over_time({job="shopper-events"}[1m]))',
        time=str(at),
        limit="1000",
    )
    assert status == 200
    assert body["data"]["resultType"] == "vector"
    result = {r["metric"]["type"]: r["value"] for r in body["data"]["result"]}
    assert result == {
        "cart_add": [at // SECOND, "6"],
        "search": [at // SECOND, "3"],
        "order_completed": [at // SECOND, "1"],
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('count_over_time({type="search"}[1m])', "3"),
        ('sum(rate({job="shopper-events"}[20s])) * 2', "1"),
        ('sum(count_over_time({job="shopper-events"}[1m])) / 2', "5"),
        ('sum(count_over_time({job="shopper-events"}[1m])) by (job) * 2 + 1', "21"),
        ('max(count_over_time({job="shopper-events"}[1m]))', "6"),
        ('count(count_over_time({job="shopper-events"}[1m]))', "3"),
        ('topk(1, sum by (type) (count_over_time({job="shopper-events"}[1m])))', "6"),
        ('sum(count_over_time({job="shopper-events"} | json | cartValue > 45 [1m]))', "5"),
        (
            'sum by (level, detected_level) (count_over_time({job="shopper-events"} '
            "| drop __error__[1m]))",
            "10",
        ),
        ('sum(bytes_over_time({type="search"}[1m])) > bool 0', "1"),
        ("vector(3) - vector(1) * 2", "1"),
    ],
)
async def test_metric_expressions(loki: Client, query: str, expected: str) -> None:
    """Aggregations, arithmetic and pipelines inside metric queries give Loki's numbers."""
    status, body = await get(loki, "/loki/api/v1/query", query=query, time=str(T0 + 10 * SECOND))
    assert status == 200, body
    [sample] = body["data"]["result"]
    assert sample["value"][1] == expected


async def test_scalar_query_is_a_scalar(loki: Client) -> None:
    """A bare number on /query is a scalar [time, "value"]."""
    _, body = await get(loki, "/loki/api/v1/query", query="1 + 2 * 3", time=str(T0))
    assert body["data"]["resultType"] == "scalar"
    assert body["data"]["result"] == [T0 // SECOND, "7"]


async def test_metric_query_over_parse_failures_is_refused(loki: Client) -> None:
    """Like Loki, a metric over lines that failed to parse is a 400 that names the way out."""
    broken = '{job="shopper-events"} | line_format "plain" | json'
    status, text = await get(
        loki,
        "/loki/api/v1/query",
        query=f"count_over_time({broken} [1m])",
        time=str(T0 + 10 * SECOND),
    )
    assert status == 400
    assert "JSONParserErr" in text
    status, body = await get(
        loki,
        "/loki/api/v1/query",
        query=f'sum(count_over_time({broken} | __error__="" [1m]))',
        time=str(T0 + 10 * SECOND),
    )
    assert status == 200
    assert body["data"]["result"] == []
    status, body = await get(
        loki,
        "/loki/api/v1/query",
        query=f"sum(count_over_time({broken} | drop __error__ [1m]))",
        time=str(T0 + 10 * SECOND),
    )
    assert body["data"]["result"][0]["value"][1] == "10"


async def test_state_stream_lists_every_shopper_at_end(aiohttp_client: ClientFactory) -> None:
    """`{job="shopper-state"}` has one line per shopper, stamped at the end, with labels."""
    client = await aiohttp_client(create_app(Settings()))
    body = [
        update("alice", membershipType="Premium"),
        update("bob", membershipType="Free"),
        update("carol", membershipType="Free", isActive=False),
    ]
    assert (await client.post("/api/metrics", json=body)).status == 200
    end = 2_000_000_000 * SECOND
    status, result = await get(
        client,
        "/loki/api/v1/query_range",
        query='{job="shopper-state"}',
        start=str(end - 3600 * SECOND),
        end=str(end),
        limit="1000",
    )
    assert status == 200
    streams = {
        (s["stream"]["status"], s["stream"]["membership"]): s["values"]
        for s in result["data"]["result"]
    }
    assert set(streams) == {("online", "Premium"), ("online", "Free"), ("offline", "Free")}
    assert {v[0] for values in streams.values() for v in values} == {str(end - 1)}
    views = [orjson.loads(v[1]) for values in streams.values() for v in values]
    assert sorted(v["userId"] for v in views) == ["alice", "bob", "carol"]
    assert all("email" not in v for v in views)


async def test_state_stream_limit_direction_and_json(aiohttp_client: ClientFactory) -> None:
    """The state stream honours limit and direction, and `| json` filters on its fields."""
    client = await aiohttp_client(create_app(Settings()))
    body = [update(f"s{i}", itemsInCart=i, cartValue=float(i)) for i in range(5)]
    assert (await client.post("/api/metrics", json=body)).status == 200
    status, result = await get(
        client, "/loki/api/v1/query_range", query='{job="shopper-state"}', limit="2"
    )
    assert status == 200
    assert [line["userId"] for _, line in lines(result)] == ["s4", "s3"]
    status, result = await get(
        client,
        "/loki/api/v1/query_range",
        query='{job="shopper-state"}',
        limit="2",
        direction="forward",
    )
    assert [line["userId"] for _, line in lines(result)] == ["s0", "s1"]
    status, result = await get(
        client,
        "/loki/api/v1/query_range",
        query='{job="shopper-state", status="online"} | json | itemsInCart >= 3 '
        '| line_format "{{.userName}} has {{ .itemsInCart }}"',
    )
    assert status == 200
    found = sorted(
        (s["stream"]["userId"], v[1]) for s in result["data"]["result"] for v in s["values"]
    )
    assert found == [("s3", "Shopper s3 has 3"), ("s4", "Shopper s4 has 4")]


async def test_json_parser_flattens_and_marks_failures(loki: Client) -> None:
    """`| json` adds labels from the line; a non-JSON line keeps going with __error__."""
    status, body = await get(
        loki,
        "/loki/api/v1/query_range",
        query='{type="order_completed"} | json | drop userName, time, message',
        start=str(T0),
        end=str(T0 + 60 * SECOND),
    )
    assert status == 200
    [stream] = body["data"]["result"]
    labels = stream["stream"]
    assert labels["userId"] == "u9"
    assert labels["cartValue"] == "90"
    assert labels["type_extracted"] == "order_completed"
    assert "userName" not in labels
    status, body = await get(
        loki,
        "/loki/api/v1/query_range",
        query='{type="search"} | line_format "not json" | json | __error__="JSONParserErr"',
        start=str(T0),
        end=str(T0 + 60 * SECOND),
    )
    assert status == 200
    assert [v[1] for s in body["data"]["result"] for v in s["values"]] == ["not json"] * 3


@pytest.mark.parametrize(
    ("query", "col"),
    [
        ('{job="shopper-events"', 22),
        ('{job="shopper-events"} |= ', 27),
        ('sum by (type) (count_over_time({job="x"}[1m])', 46),
        ('{job="x"} | json | a > "b"', 24),
        ("{job=x}", 6),
        ('count_over_time({job="x"})', 26),
    ],
)
async def test_parse_errors_are_400_with_position(loki: Client, query: str, col: int) -> None:
    """An invalid query is a 400 plain-text `parse error at line 1, col N: …`."""
    resp = await loki.get("/loki/api/v1/query_range?" + urlencode({"query": query}))
    assert resp.status == 400
    assert resp.content_type == "text/plain"
    assert (await resp.text()).startswith(f"parse error at line 1, col {col}: ")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"query": '{job="x"}', "limit": "-1"}, "limit must be a positive value"),
        ({"query": '{job="x"}', "direction": "sideways"}, "invalid direction"),
        ({"query": "vector(1)", "step": "0s"}, "zero or negative"),
        ({"query": "vector(1)", "step": "-1.797693134862316e+299"}, "invalid step"),
        (
            {"query": "vector(1)", "start": "0", "end": str(20_000 * SECOND), "step": "1s"},
            "exceeded maximum resolution",
        ),
        ({"query": '{job="x"}', "start": "yesterday"}, "invalid start"),
        ({"query": ""}, "query parameter is required"),
    ],
)
async def test_bad_parameters_are_400(loki: Client, params: dict[str, str], message: str) -> None:
    """Parameters Loki refuses give a 400 that says which and why."""
    status, text = await get(loki, "/loki/api/v1/query_range", **params)
    assert status == 400
    assert message in text


async def test_instant_log_query_is_refused_as_loki_does(loki: Client) -> None:
    """/query with a log query is a 400, as in Loki."""
    status, text = await get(loki, "/loki/api/v1/query", query='{job="shopper-events"}')
    assert status == 400
    assert "instant query type" in text


@pytest.mark.parametrize(
    "stamp",
    [str(T0 + 60 * SECOND), "1700000060.0", "2023-11-14T22:14:20Z", "2023-11-14T23:14:20+01:00"],
)
async def test_time_formats(loki: Client, stamp: str) -> None:
    """`end` accepts nanoseconds, float seconds and RFC3339 (all the same instant here)."""
    status, body = await get(
        loki,
        "/loki/api/v1/query_range",
        query='{job="shopper-events"}',
        start=str(T0),
        end=stamp,
        direction="forward",
    )
    assert status == 200
    assert len(lines(body)) == 10


async def test_step_formats_agree(loki: Client) -> None:
    """`15000ms`, `15s` and `15` are the same step."""
    bodies = []
    for step in ("15000ms", "15s", "15"):
        status, body = await get(
            loki,
            "/loki/api/v1/query_range",
            query='count_over_time({job="shopper-events"}[15s])',
            start=str(T0),
            end=str(T0 + 60 * SECOND),
            step=step,
        )
        assert status == 200
        bodies.append(body["data"]["result"])
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]


async def test_unknown_event_types_are_labelled_other(aiohttp_client: ClientFactory) -> None:
    """An explicit event of an unknown type is logged with type="other" as its label."""
    client = await aiohttp_client(create_app(Settings()))
    explicit = {
        "type": "price_drop_seen",
        "userId": "dan",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    assert (await client.post("/api/events", json=explicit)).status == 200
    _status, body = await get(client, "/loki/api/v1/query_range", query='{type="other"}')
    [(_, line)] = lines(body)
    assert line["type"] == "price_drop_seen"
    assert body["data"]["result"][0]["stream"]["type"] == "other"


async def test_query_range_accepts_form_posts(loki: Client) -> None:
    """Like Loki, query_range also takes its parameters as a form POST."""
    form = {"query": '{type="search"}', "start": str(T0), "end": str(T0 + 60 * SECOND)}
    resp = await loki.post("/loki/api/v1/query_range", data=form)
    assert resp.status == 200
    body = await resp.json()
    assert len(lines(body)) == 3
