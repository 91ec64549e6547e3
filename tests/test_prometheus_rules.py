"""Prometheus config, recording rules and alerts: promtool checks, unit tests and conventions."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import ROOT, generator_check, prometheus_module, require_binary

PROMETHEUS_DIR = ROOT / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_CONFIG = PROMETHEUS_DIR / "alertmanager.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))

# The exporter's metric catalog (CONTRACT.md), as Prometheus stores it: histograms as their
# _bucket/_sum/_count series. Rules and dashboards may use only these, `up`, and recorded names.
CATALOG = frozenset(
    {
        "shopper_active_shoppers",
        "shopper_active_shoppers_by_activity",
        "shopper_active_shoppers_by_membership",
        "shopper_active_shoppers_by_delivery_window",
        "shopper_active_shoppers_by_location",
        "shopper_tracked_shoppers",
        "shopper_active_carts",
        "shopper_cart_items",
        "shopper_cart_value_dollars",
        "shopper_active_session_seconds",
        "shopper_events_total",
        "shopper_cart_items_added_total",
        "shopper_cart_items_removed_total",
        "shopper_orders_total",
        "shopper_order_value_dollars_total",
        "shopper_cart_abandonments_total",
        "shopper_abandoned_cart_value_dollars_total",
        "shopper_page_views_total",
        "shopper_clicks_total",
        "shopper_product_views_total",
        "shopper_searches_total",
        "shopper_coupons_applied_total",
        "shopper_activity_seconds_total",
        "shopper_funnel_sessions_total",
        "shopper_sessions_started_total",
        "shopper_sessions_ended_total",
        *(f"shopper_session_duration_seconds_{s}" for s in ("bucket", "sum", "count")),
        # CONTRACT.md names this histogram shopper_order_value_dollars, which would share its
        # family name with the counter shopper_order_value_dollars_total; the exporter
        # exposes it as shopper_order_dollars.
        *(f"shopper_order_dollars_{s}" for s in ("bucket", "sum", "count")),
        "shopper_updates_received_total",
        "shopper_updates_rejected_total",
        "shopper_updates_ignored_total",
        "shopper_exporter_build_info",
        "shopper_exporter_last_update_timestamp_seconds",
        "shopper_exporter_stream_subscribers",
        "shopper_exporter_stream_dropped_frames_total",
        "shopper_exporter_source_up",
        "shopper_exporter_source_reconnects_total",
        "shopper_exporter_source_last_success_timestamp_seconds",
        "shopper_exporter_label_overflow_total",
        "shopper_exporter_scrape_duration_seconds",
        "shopper_exporter_event_log_entries",
        # Beyond CONTRACT.md's list: forwarding of the event log to an external Loki.
        "shopper_exporter_loki_forwarded_events_total",
        "shopper_exporter_loki_forward_dropped_events_total",
    }
)
SCRAPE_METRICS = frozenset({"up"})

# Words of PromQL that look like identifiers but are not metric names.
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_BRACES = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords and label names left out)."""
    text = _STRING.sub('""', expr)
    text = _LABEL_LIST.sub(" ", text)
    text = _BRACES.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


_AGGREGATED = re.compile(
    r"(?:sum|min|max|absent)(?: by \([^)]*\))?\s*\(\s*(?:(?:rate|increase)\(\s*)?$"
)


def unaggregated_selectors(expr: str) -> list[str]:
    """Selectors of exporter metrics not directly inside sum/min/max (optionally of a rate)."""
    found = []
    for name in promql_metric_names(expr) - recording_rule_names():
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])", expr):
            if not _AGGREGATED.search(expr[: match.start()]):
                found.append(f"{name} at {match.start()}")
    return found


def load_rules() -> list[dict[str, Any]]:
    """Every rule of every rule file, in file order."""
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def recording_rule_names() -> set[str]:
    """Names of the series the recording rules write."""
    return {rule["record"] for rule in load_rules() if "record" in rule}


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules."""
    return [rule for rule in load_rules() if "alert" in rule]


def _unit_tests() -> list[dict[str, Any]]:
    return [case for path in TEST_FILES for case in yaml.safe_load(path.read_text())["tests"]]


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_rule_and_test_files_exist() -> None:
    """The rules directory holds the recording and alert files, and tests/ their unit tests."""
    assert {p.name for p in RULE_FILES} == {"shopper-recording.yml", "shopper-alerts.yml"}
    assert TEST_FILES


def test_prometheus_config_is_valid() -> None:
    """promtool accepts prometheus.yml together with the rule files it loads."""
    result = _promtool("check", "config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_prometheus_config_scrapes_the_exporter_and_alerts_alertmanager() -> None:
    """prometheus.yml scrapes exporter:9462 as shopper-exporter and alerts alertmanager:9093."""
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["shopper-exporter"]["static_configs"] for t in sc["targets"]]
    assert targets == ["exporter:9462"]
    assert config["rule_files"] == ["rules/*.yml"]
    managers = config["alerting"]["alertmanagers"]
    assert [t for m in managers for sc in m["static_configs"] for t in sc["targets"]] == [
        "alertmanager:9093"
    ]


def test_rules_are_valid() -> None:
    """promtool check rules passes on every rule file with lint errors fatal."""
    result = _promtool("check", "rules", "--lint=all", "--lint-fatal", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    """Every promtool unit test (alerts firing and silent, recorded values) passes."""
    result = _promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    """Each alert has a unit test where it fires and one where it stays silent: in the files of
    prometheus/tests/ or the generated week (test_traffic_alerts.py); the Watchdog only fires."""
    firing: set[str] = set()
    silent: set[str] = set()
    for case in _unit_tests():
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    scenarios = prometheus_module("traffic_scenarios")
    firing |= {exp.alert for s in scenarios.SCENARIOS for exp in s.expected}
    silent |= set(scenarios.CHECKED)
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts without a firing test"
    assert names - silent == {"Watchdog"}, "alerts without a silent test"
    assert (firing | silent) - names == set(), "tests for alerts that do not exist"


def test_every_recording_rule_has_an_expression_test() -> None:
    """Each recorded series is checked by a promql_expr_test with expected samples."""
    tested = {
        check["expr"]
        for case in _unit_tests()
        for check in case.get("promql_expr_test", [])
        if check.get("exp_samples")
    }
    assert recording_rule_names() - tested == set()


def test_required_alerts_exist() -> None:
    """The alert set covers traffic, business and exporter health."""
    assert {rule["alert"] for rule in alert_rules()} >= {
        "ShopperTrafficSpike",
        "ShopperTrafficDrop",
        "ShopperCartAbandonmentHigh",
        "ShopperOrdersStalled",
        "ShopperIngestStalled",
        "ShopperIngestRejectsHigh",
        "ShopperExporterDown",
        "ShopperStreamDropping",
        "Watchdog",
    }


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_follows_mixin_style(rule: dict[str, Any]) -> None:
    """An alert is CamelCase with the Shopper prefix (or the Watchdog), has severity, summary,
    a description naming its job, a runbook and a dashboard link, and `for`."""
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
    assert annotations["summary"].endswith(".")
    assert annotations["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"
    assert annotations["dashboard_url"].startswith("http://localhost:3000/d/")
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    if rule["alert"] == "Watchdog":
        assert rule["labels"] == {"severity": "none"}
        assert rule["expr"].strip() == "vector(1)"
        return
    assert re.fullmatch(r"Shopper(?:[A-Z][a-z]+)+", rule["alert"])
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert "{{ $labels.job }}" in annotations["description"]
    assert "job=" in annotations["dashboard_url"]


RUNBOOKS = ROOT / "docs" / "runbooks.md"


def _runbook_sections() -> dict[str, str]:
    """`## Heading` → its text, of docs/runbooks.md."""
    parts = re.split(r"^## (\S+)\n", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_runbook_section(rule: dict[str, Any]) -> None:
    """docs/runbooks.md has a section per alert (its runbook_url anchor): what it means, first
    checks, and the dashboard panel its dashboard_url opens."""
    sections = _runbook_sections()
    name = rule["alert"]
    assert rule["annotations"]["runbook_url"].endswith("#" + name.lower())
    text = sections[name]
    assert "**What it means.**" in text
    assert "**First checks.**" in text
    uid, title = prometheus_module("mixin_alerts").PANELS[name]
    dashboard = {
        "live-shopper-metrics": "Live Shopper Metrics",
        "shopper-exporter": "Shopper Exporter",
    }[uid]
    assert f"**Dashboard:** {dashboard}{' → ' + title if title else ''}" in text
    assert set(sections) == {r["alert"] for r in alert_rules()}


# Alerts that read raw series: per-instance facts no recording rule (summed by job) keeps, and
# the Watchdog, which reads nothing.
RAW_ALERTS = {"ShopperIngestStalled", "ShopperExporterDown", "Watchdog"}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alerts_reuse_the_recording_rules(rule: dict[str, Any]) -> None:
    """Every alert but the per-instance ones reads recorded series only."""
    names = promql_metric_names(rule["expr"])
    if rule["alert"] in RAW_ALERTS:
        return
    assert names
    assert names <= recording_rule_names(), names - recording_rule_names()


def test_committed_rules_match_their_generator() -> None:
    """prometheus/build_rules.py reproduces the committed rule files exactly."""
    result = generator_check(PROMETHEUS_DIR / "build_rules.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_job_selector_is_one_setting() -> None:
    """Generated with another job selector, every selector of every rule carries it and the
    default job appears nowhere in an expression."""
    build_rules = prometheus_module("build_rules")
    config = prometheus_module("mixin_config").MixinConfig(job_selector='job="grocery"')
    selectors = 0
    for text in build_rules.rule_files(config).values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                assert "shopper-exporter" not in rule["expr"]
                for name in promql_metric_names(rule["expr"]) - recording_rule_names():
                    for match in re.finditer(rf"{name}(\{{[^}}]*\}})?", rule["expr"]):
                        assert (match.group(1) or "").startswith('{job="grocery"'), match.group()
                        selectors += 1
    assert selectors >= 30


def test_traffic_rates_leave_out_alert_events() -> None:
    """The traffic the spike and drop alerts judge excludes `alert` events, which Alertmanager
    posts back to the exporter."""
    rules = {r.get("record"): r["expr"] for r in load_rules() if "record" in r}
    for name in ("job:shopper_events:rate5m", "job:shopper_events:rate30m"):
        assert 'event!="alert"' in rules[name]


@pytest.mark.parametrize("rule", load_rules(), ids=lambda rule: rule.get("record") or rule["alert"])
def test_rule_aggregates_replicas(rule: dict[str, Any]) -> None:
    """Every recording rule aggregates by job, and every rule reads exporter series only through
    sum/max/min, so that N exporter replicas read as one."""
    if "record" in rule:
        assert re.search(r"\b(?:sum|max|min|count) by \(job[,)]", rule["expr"]), rule["expr"]
    assert unaggregated_selectors(rule["expr"]) == []


@pytest.mark.parametrize("rule", load_rules(), ids=lambda rule: rule.get("record") or rule["alert"])
def test_rule_uses_only_catalog_metrics(rule: dict[str, Any]) -> None:
    """A rule reads only metrics of the exporter's catalog, Prometheus' `up` and recorded
    series (the Watchdog reads nothing)."""
    names = promql_metric_names(rule["expr"])
    assert names or rule.get("alert") == "Watchdog"
    assert names - CATALOG - SCRAPE_METRICS - recording_rule_names() == set()


def test_recording_rules_are_named_level_metric_operation() -> None:
    """Recording rule names follow level:metric:operation, with the level naming the kept labels."""
    for rule in load_rules():
        if "record" not in rule:
            continue
        level, metric, operation = rule["record"].split(":")
        assert metric.startswith("shopper_"), rule["record"]
        assert not metric.endswith("_total"), rule["record"]
        assert re.fullmatch(r"[a-z0-9_]+", operation), rule["record"]
        kept = re.search(r"(?:sum|max|min) by \(([^)]*)\)", rule["expr"])
        assert kept is not None
        labels = [label.strip() for label in kept.group(1).split(",")]
        # label_replace(..., "ago", ...) adds a label the level names too.
        labels += sorted(set(re.findall(r'label_replace\([^"]*"(\w+)"', rule["expr"])))
        assert level == "_".join(labels), rule["record"]


def test_unaggregated_selectors_finds_bare_metrics() -> None:
    """The aggregation check accepts sum/max of a metric or its rate and flags bare selectors."""
    assert unaggregated_selectors("sum by (job) (rate(shopper_orders_total[5m]))") == []
    assert unaggregated_selectors("time() - max(shopper_exporter_build_info)") == []
    assert unaggregated_selectors("rate(shopper_orders_total[5m]) > 0") != []
    assert unaggregated_selectors("sum(shopper_orders_total) / shopper_active_shoppers") != []


def test_promql_metric_names_ignores_functions_labels_and_variables() -> None:
    """The metric-name extractor skips functions, matchers, grouping and Grafana variables."""
    expr = (
        'topk(5, sum by (activity) (rate(shopper_activity_seconds_total{job=~"$job"}'
        "[$__rate_interval] offset 1h))) / ignoring (stage) group_left () "
        "job:shopper_orders:increase1h and on (job) up > bool 0"
    )
    assert promql_metric_names(expr) == {
        "shopper_activity_seconds_total",
        "job:shopper_orders:increase1h",
        "up",
    }
