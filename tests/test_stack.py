"""The stack without Docker: every dashboard and rule query answered by live processes.

The exporter and the demo generator run as their own processes, a real `prometheus` scrapes the
exporter with the repo's prometheus.yml (target, intervals and alerting adjusted for a test) and
evaluates the repo's rules. Every PromQL query of every dashboard panel and every rule expression
is then sent to Prometheus' HTTP API, and every Loki query to the exporter's Loki API.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_dashboards import (
    DASHBOARD_FILES,
    LIVE,
    all_panels,
    load_dashboard,
    loki_targets,
    prometheus_targets,
    shopper_table_fields,
)
from test_prometheus_rules import (
    CONFIG,
    RULE_FILES,
    alert_rules,
    load_rules,
    recording_rule_names,
)

from support import (
    RunningProcess,
    free_port,
    http_get,
    require_binary,
    run_exporter,
    run_process,
    wait_until,
)

pytestmark = pytest.mark.integration

# Recorded from history a day old or more: a fresh Prometheus has none, and records nothing.
NEEDS_HISTORY = frozenset(
    {
        "job_ago:shopper_events:rate30m",
        "job:shopper_events:rate30m_usual_max",
        "job:shopper_events:rate30m_usual_min",
    }
)
RECORDED_NOW = sorted(recording_rule_names() - NEEDS_HISTORY)

# Grafana's template variables, as Grafana would expand them for this stack.
RATE_INTERVAL = "30s"
RANGE = "1h"
AUTO = "1m"
WINDOW_SECONDS = 60
FEED_BODY = b'{"metrics": [], "events": []}'


@dataclass
class Stack:
    """The running processes and the values Grafana's variables take for them."""

    exporter: RunningProcess
    prometheus: RunningProcess
    instance: str

    def expand(self, expr: str) -> str:
        """The expression with dashboard variables replaced as Grafana would."""
        return (
            expr.replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__range", RANGE)
            .replace("$__auto", AUTO)
            .replace("$job", "shopper-exporter")
            # A regex inside a PromQL string literal: backslashes doubled, as Grafana does.
            .replace("$instance", re.escape(self.instance).replace("\\", "\\\\"))
        )

    def promql(self, expr: str, *, instant: bool = True) -> dict[str, Any]:
        """Prometheus' answer to an instant query at now, or a range query over the last minute."""
        now = time.time()
        if instant:
            params = {"query": expr, "time": f"{now:.3f}"}
            path = "/api/v1/query"
        else:
            params = {
                "query": expr,
                "start": f"{now - WINDOW_SECONDS:.3f}",
                "end": f"{now:.3f}",
                "step": "1",
            }
            path = "/api/v1/query_range"
        status, body = http_get(
            f"{self.prometheus.base_url}{path}?{urllib.parse.urlencode(params)}", timeout=10
        )
        answer = dict(json.loads(body))
        assert status == 200, answer
        return answer

    def promql_rules(self) -> list[dict[str, Any]]:
        """The rule groups Prometheus loaded, with each rule's health."""
        status, body = http_get(f"{self.prometheus.base_url}/api/v1/rules", timeout=10)
        assert status == 200, body[:500]
        return list(json.loads(body)["data"]["groups"])

    def loki(self, expr: str, limit: int) -> dict[str, Any]:
        """The exporter's Loki answer to a range query over the last minute, as Grafana sends it."""
        end = time.time_ns()
        params = {
            "query": expr,
            "start": str(end - WINDOW_SECONDS * 1_000_000_000),
            "end": str(end),
            "step": "1000ms",
            "limit": str(limit),
            "direction": "backward",
        }
        status, body = http_get(
            f"{self.exporter.base_url}/loki/api/v1/query_range?{urllib.parse.urlencode(params)}",
            timeout=10,
        )
        assert status == 200, body[:500]
        return dict(json.loads(body))


class _FeedHandler(BaseHTTPRequestHandler):
    """A pull source's upstream: an empty `{"metrics": [], "events": []}` envelope."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(FEED_BODY)))
        self.end_headers()
        self.wfile.write(FEED_BODY)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture(scope="module")
def feed_url() -> Iterator[str]:
    """URL of a tiny HTTP upstream for the exporter's poll source (source health panels)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _test_config(exporter_port: int, path: Path) -> Path:
    """The repo's prometheus.yml, scraping the test exporter every second, with no Alertmanager."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config.pop("alerting")
    config["rule_files"] = [str(p) for p in RULE_FILES]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{exporter_port}"]}]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, feed_url: str) -> Iterator[Stack]:
    """Exporter with a poll source, 60 demo shoppers pushing over HTTP, Prometheus scraping."""
    prometheus_bin = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("stack")
    exporter_port, prometheus_port = free_port(), free_port()
    exporter_args = ("--source", f"poll+{feed_url}", "--poll-interval", "1")
    with run_exporter(tmp, *exporter_args, port=exporter_port) as exporter:
        demo_args = [
            sys.executable, "-m", "exporter", "demo", "--url", exporter.base_url,
            "--shoppers", "60", "--pace", "2", "--seed", "11", "--report-every", "60",
        ]  # fmt: skip
        prometheus_args = [
            prometheus_bin,
            f"--config.file={_test_config(exporter_port, tmp / 'prometheus.yml')}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ]
        with (
            run_process(demo_args, tmp / "demo.log"),
            run_process(
                prometheus_args,
                tmp / "prometheus.log",
                f"http://127.0.0.1:{prometheus_port}",
                "/-/ready",
                timeout=60,
            ) as prometheus,
        ):
            running = Stack(exporter, prometheus, f"127.0.0.1:{exporter_port}")

            # Orders, abandonments, ended and new sessions must happen while Prometheus scrapes, so
            # that increase() over them and the ratios built on them exist; the poll source
            # must have succeeded for the source-health panels.
            awaited = (
                "sum(increase(shopper_orders_total[1h])) > 0",
                "sum(increase(shopper_cart_abandonments_total[1h])) > 0",
                "sum(increase(shopper_sessions_ended_total[1h])) > 0",
                'sum(increase(shopper_funnel_sessions_total{stage="browsing"}[1h])) > 0',
                "sum(shopper_exporter_source_up) > 0",
                # Every recording rule has recorded after that: each group evaluates at its own
                # offset within the second, so one group having recorded says nothing of another.
                *RECORDED_NOW,
            )

            def missing() -> list[str]:
                return [e for e in awaited if not running.promql(e)["data"]["result"]]

            try:
                wait_until(lambda: not missing(), timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(
                    f"still empty after 120s: {missing()}"
                    f"\n--- prometheus log ---\n{prometheus.log()}"
                    f"\n--- exporter log ---\n{exporter.log()[-3000:]}"
                    f"\n--- demo log ---\n{(tmp / 'demo.log').read_text()[-2000:]}"
                ) from None
            yield running


def _target_id(item: tuple[str, dict[str, Any], dict[str, Any]]) -> str:
    uid, panel, target = item
    return f"{uid}/{panel['title']}/{target['refId']}"


def test_prometheus_scrapes_the_exporter_as_the_configured_job(stack: Stack) -> None:
    """Prometheus scrapes the exporter as job shopper-exporter and the target is up."""
    result = stack.promql('up{job="shopper-exporter"}')["data"]["result"]
    assert [(r["metric"]["instance"], r["value"][1]) for r in result] == [(stack.instance, "1")]


def test_rule_groups_load_and_evaluate_without_errors(stack: Stack) -> None:
    """Prometheus loaded every rule of the repo and reports each as healthy."""
    groups = stack.promql_rules()
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    expected = {r.get("record") or r["alert"] for r in load_rules()}
    assert set(rules) == expected
    assert {name: rule["health"] for name, rule in rules.items() if rule["health"] != "ok"} == {}


@pytest.mark.parametrize("name", RECORDED_NOW)
def test_recording_rule_records_a_series(stack: Stack, name: str) -> None:
    """Each recording rule's expression returns data, and Prometheus has recorded its series."""
    rule = next(r for r in load_rules() if r.get("record") == name)
    for expr in (rule["expr"], name):
        answer = stack.promql(expr)
        assert answer["status"] == "success"
        assert answer["data"]["result"], f"{expr} returned nothing"


@pytest.mark.parametrize("name", sorted(NEEDS_HISTORY))
def test_traffic_references_wait_for_a_day_of_history(stack: Stack, name: str) -> None:
    """The same-time-of-day references evaluate without error and, on a Prometheus younger than
    a day, record nothing, so the traffic alerts have no baseline to misread."""
    rule = next(r for r in load_rules() if r.get("record") == name)
    for expr in (rule["expr"], name):
        answer = stack.promql(expr)
        assert answer["status"] == "success"
        assert answer["data"]["result"] == []
    assert stack.promql("job:shopper_events:rate30m")["data"]["result"]


def test_recorded_ratios_are_plausible(stack: Stack) -> None:
    """The abandonment ratio lies in (0, 1); the funnel is relative to browsing, with orders."""
    (ratio,) = stack.promql("job:shopper_cart_abandonment:ratio1h")["data"]["result"]
    assert 0 < float(ratio["value"][1]) < 1
    funnel = {
        r["metric"]["stage"]: float(r["value"][1])
        for r in stack.promql("job_stage:shopper_funnel_conversion:ratio1h")["data"]["result"]
    }
    assert funnel["browsing"] == 1
    # Within a short window later stages can outnumber browsing (sessions that started
    # browsing before Prometheus did), so only presence is checked, not the funnel's order.
    assert set(funnel) == {"browsing", "cart", "checkout", "order"}
    assert funnel["order"] > 0


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_expression_evaluates(stack: Stack, rule: dict[str, Any]) -> None:
    """Each alert expression evaluates without error against live data."""
    answer = stack.promql(rule["expr"])
    assert answer["status"] == "success"
    assert answer["data"]["resultType"] == "vector"


@pytest.mark.parametrize("variable", ["job", "instance"])
def test_dashboard_variables_find_the_exporter(stack: Stack, variable: str) -> None:
    """label_values(shopper_tracked_shoppers, job/instance) lists the scraped exporter."""
    match = urllib.parse.quote('shopper_tracked_shoppers{job=~"shopper-exporter"}')
    status, body = http_get(
        f"{stack.prometheus.base_url}/api/v1/label/{variable}/values?match[]={match}"
    )
    assert status == 200
    expected = "shopper-exporter" if variable == "job" else stack.instance
    assert json.loads(body)["data"] == [expected]


@pytest.mark.parametrize("item", prometheus_targets(), ids=_target_id)
def test_dashboard_promql_returns_data(
    stack: Stack, item: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    """Each Prometheus query of each dashboard panel returns data, instant or over a range."""
    target = item[2]
    expr = stack.expand(target["expr"])
    assert "$" not in expr
    answer = stack.promql(expr, instant=target["instant"])
    assert answer["status"] == "success"
    assert answer["data"]["result"], f"{expr} returned nothing"


@pytest.mark.parametrize("item", loki_targets(), ids=_target_id)
def test_dashboard_loki_query_returns_data(
    stack: Stack, item: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    """Each Loki query of each dashboard panel returns streams or series from the exporter."""
    target = item[2]
    expr = stack.expand(target["expr"])
    answer = stack.loki(expr, limit=target.get("maxLines", 1000))
    assert answer["status"] == "success"
    data = answer["data"]
    assert data["result"], f"{expr} returned nothing"
    if "count_over_time" in expr:
        assert data["resultType"] == "matrix"
        return
    assert data["resultType"] == "streams"
    lines = [line for stream in data["result"] for _, line in stream["values"]]
    assert 0 < len(lines) <= target.get("maxLines", 1000)


def test_shopper_table_gets_its_columns_from_the_json_labels(stack: Stack) -> None:
    """`{job="shopper-state"} | json` labels carry every column the Shoppers table shows."""
    answer = stack.loki('{job="shopper-state"} | json', limit=1000)
    streams = answer["data"]["result"]
    assert streams
    for stream in streams:
        assert set(shopper_table_fields()) <= set(stream["stream"]), stream["stream"]
        assert stream["stream"]["status"] in {"online", "offline"}
    online = [s for s in streams if s["stream"]["status"] == "online"]
    assert online


def test_event_stream_lines_name_the_type_and_the_shopper(stack: Stack) -> None:
    """The Live shopping events query formats each line as type · shopper (location): message."""
    target = next(
        t for uid, panel, t in loki_targets()
        if uid == LIVE and panel["title"] == "Live shopping events"
    )  # fmt: skip
    answer = stack.loki(stack.expand(target["expr"]), limit=50)
    lines = [line for stream in answer["data"]["result"] for _, line in stream["values"]]
    assert len(lines) == 50
    types = {stream["stream"]["type"] for stream in answer["data"]["result"]}
    for stream in answer["data"]["result"]:
        assert set(stream["stream"]) <= {"type", "activity", "membership"}
    for line in lines:
        kind, _, rest = line.partition(" · ")
        assert kind in types, line
        assert re.fullmatch(r".+ \(.+\): .+", rest), line


def test_alert_annotation_query_evaluates(stack: Stack) -> None:
    """The dashboards' ALERTS annotation query is valid PromQL for this Prometheus."""
    for path in DASHBOARD_FILES:
        for annotation in load_dashboard(path)["annotations"]["list"]:
            if "expr" in annotation:
                answer = stack.promql(stack.expand(annotation["expr"]), instant=False)
                assert answer["status"] == "success"


def test_shopper_link_finds_that_shoppers_events(stack: Stack) -> None:
    """The Shoppers table's link to Explore, filled in for one shopper of the table, finds that
    shopper's events and no one else's."""
    table = next(p for p in all_panels(load_dashboard(LIVE)) if p["title"] == "Shoppers")
    link = next(
        prop["value"][0]
        for o in table["fieldConfig"]["overrides"]
        for prop in o["properties"]
        if prop["id"] == "links"
    )
    panes = json.loads(urllib.parse.parse_qs(link["url"].partition("?")[2])["panes"][0])
    template = next(iter(panes.values()))["queries"][0]["expr"]
    online = '{job="shopper-state", status="online"} | json'
    shoppers = [s["stream"]["userId"] for s in stack.loki(online, limit=20)["data"]["result"]]
    found = 0
    for user_id in shoppers:
        expr = template.replace("${__data.fields.userId:percentencode}", user_id)
        answer = stack.loki(expr, limit=1000)
        assert answer["status"] == "success"
        lines = [json.loads(line) for s in answer["data"]["result"] for _, line in s["values"]]
        assert {line["userId"] for line in lines} <= {user_id}
        found += bool(lines)
    assert found
