"""Logs Drilldown's requests, replayed as Grafana sends them to a real exporter process, answer
in the shapes Loki documents, with what was pushed."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from support import http_get, http_request, iso, run_exporter, shopper

FIXTURE = Path(__file__).parent / "fixtures" / "drilldown-requests.json"
REQUESTS: list[dict[str, Any]] = orjson.loads(FIXTURE.read_bytes())["requests"]


def _iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _is_number_string(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit()


def check_shape(shape: str, body: Any) -> None:
    """Loki's documented response shape for each endpoint (docs/loki-drilldown.md)."""
    if shape in ("vector", "matrix"):
        assert body["status"] == "success"
        assert body["data"]["resultType"] == shape
        assert body["data"]["result"], "nothing pushed shows up"
        for item in body["data"]["result"]:
            assert all(isinstance(v, str) for v in item["metric"].values())
            points = [item["value"]] if shape == "vector" else item["values"]
            for at, value in points:
                assert isinstance(at, float)
                assert _is_number_string(value)
    elif shape == "detected_labels":
        assert set(body) == {"detectedLabels"}
        for item in body["detectedLabels"]:
            assert set(item) == {"label", "cardinality"}
            assert item["cardinality"] >= 1
    elif shape == "detected_fields":
        assert set(body) == {"fields", "limit"}
        for item in body["fields"]:
            assert set(item) == {"label", "type", "cardinality", "parsers", "jsonPath"}
            assert item["type"] in {"string", "int", "float", "boolean", "duration", "bytes"}
            assert item["parsers"] == ["json"]
    elif shape == "field_values":
        assert set(body) == {"values", "limit"}
        assert all(isinstance(v, str) for v in body["values"])
    elif shape == "patterns":
        assert body["status"] == "success"
        for item in body["data"]:
            assert set(item) == {"pattern", "samples", "level"}
            for at, count in item["samples"]:
                assert isinstance(at, int)
                assert isinstance(count, int)
    elif shape == "limits":
        assert set(body) == {"limits", "pattern_ingester_enabled", "version"}
        assert body["limits"]["volume_enabled"] is True
        assert "service_name" in body["limits"]["discover_service_name"]
    elif shape == "buildinfo":
        assert set(body) == {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}
        assert body["version"].split(".")[0] == "3"
    else:
        raise AssertionError(f"no shape {shape}")


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real exporter holding a few shoppers and their events."""
    with run_exporter(tmp_path_factory.mktemp("drilldown")) as proc:
        now = time.time()
        body = [
            shopper(
                f"s{i}",
                timestamp=iso(now),
                activeFeature="Cart",
                company="Austin, TX",
                cartValue=10.0 + i,
                itemsInCart=i % 4,
            )
            for i in range(20)
        ]
        assert http_request(proc.base_url + "/api/metrics", body)[0] == 200
        events = [{"type": "cart_abandoned", "userId": "s1", "timestamp": iso(now)}]
        assert http_request(proc.base_url + "/api/events", events)[0] == 200
        yield proc


@pytest.mark.integration
@pytest.mark.parametrize("request_", REQUESTS, ids=[r["name"] for r in REQUESTS])
def test_drilldown_requests_answer_in_lokis_shapes(exporter: Any, request_: dict[str, Any]) -> None:
    """Each request Drilldown sends (as recorded in the fixture) answers 200 in Loki's shape."""
    now = time.time()
    replaced = {"START": _iso(now - 900), "END": _iso(now + 1), "SERVICE": "shopper-events"}
    params = {}
    for name, value in request_["params"].items():
        for placeholder, actual in replaced.items():
            value = value.replace(placeholder, actual)
        params[name] = value
    url = exporter.base_url + request_["path"] + ("?" + urlencode(params) if params else "")
    status, raw = http_get(url)
    assert status == 200, raw
    check_shape(request_["shape"], orjson.loads(raw))


@pytest.mark.integration
def test_volumes_count_what_was_pushed_by_service_and_level(exporter: Any) -> None:
    """The service list holds both streams; by level, the abandoned cart is the one `warn`,
    and the events' volume is their entries times a line's size (bytes, as Loki reports)."""
    now = time.time()
    base = exporter.base_url + "/loki/api/v1/index/volume?"
    span = {"start": _iso(now - 900), "end": _iso(now + 1)}
    status, raw = http_get(base + urlencode({"query": '{service_name=~".+"}', **span}))
    assert status == 200
    services = {r["metric"]["service_name"] for r in orjson.loads(raw)["data"]["result"]}
    assert services == {"shopper-events", "shopper-state"}
    query = {"query": '{service_name="shopper-events"}', "targetLabels": "detected_level", **span}
    status, raw = http_get(base + urlencode(query))
    levels = {
        r["metric"]["detected_level"]: int(r["value"][1])
        for r in orjson.loads(raw)["data"]["result"]
    }
    assert set(levels) == {"info", "warn"}
    assert 100 < levels["warn"] < 1000  # one line of a few hundred bytes
    assert levels["info"] > 20 * 100  # twenty sessions started, at least


@pytest.mark.integration
def test_detected_fields_and_values_come_from_the_lines(exporter: Any) -> None:
    """Fields are the JSON keys of the event lines (a key a stream label has is `_extracted`,
    as Loki's json parser names it), typed; a field's values are the ones pushed."""
    now = time.time()
    span = {"start": _iso(now - 900), "end": _iso(now + 1)}
    url = exporter.base_url + "/loki/api/v1/detected_fields?"
    status, raw = http_get(url + urlencode({"query": '{service_name="shopper-events"}', **span}))
    assert status == 200
    fields = {f["label"]: f for f in orjson.loads(raw)["fields"]}
    assert fields["cartValue"]["type"] == "float"
    assert fields["itemsInCart"]["type"] == "int"
    assert fields["userId"]["cardinality"] == 20
    assert fields["type_extracted"]["jsonPath"] == ["type"]
    url = exporter.base_url + "/loki/api/v1/detected_field/location/values?"
    status, raw = http_get(url + urlencode({"query": '{service_name="shopper-events"}', **span}))
    assert orjson.loads(raw)["values"] == ["Austin, TX"]


@pytest.mark.integration
def test_bad_drilldown_requests_are_400_naming_the_parameter(exporter: Any) -> None:
    """A missing query, an unknown aggregateBy or a bad limit are 400 with the reason."""
    base = exporter.base_url + "/loki/api/v1/"
    cases = [
        ("index/volume", {}, "query"),
        ("index/volume", {"query": '{job="x"}', "aggregateBy": "pods"}, "aggregateBy"),
        ("index/volume", {"query": '{job="x"}', "limit": "-3"}, "limit"),
        ("detected_fields", {"query": 'sum(rate({job="x"}[1m]))'}, "log query"),
        ("patterns", {"query": "{job="}, ""),
    ]
    for path, params, named in cases:
        status, raw = http_get(base + path + "?" + urlencode(params))
        assert status == 400, (path, params, raw)
        assert named in raw.decode()
