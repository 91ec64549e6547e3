"""Grafana provisioning and dashboards: schemas, datasources, layout and the metrics they query."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from test_prometheus_rules import (
    CATALOG,
    SCRAPE_METRICS,
    promql_metric_names,
    recording_rule_names,
    unaggregated_selectors,
)

from support import IN_CI, ROOT

GRAFANA_DIR = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml"
PROVIDERS_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
SCHEMA_DIR = ROOT.parent / "shared" / "schemas" / "grafana"

LIVE = "live-shopper-metrics"
EXPORTER = "shopper-exporter"


def load_dashboard(uid_or_path: str | Path) -> dict[str, Any]:
    """A committed dashboard, by file path or by uid (= file stem)."""
    path = Path(uid_or_path)
    if not path.suffix:
        path = GRAFANA_DIR / "dashboards" / f"{uid_or_path}.json"
    return dict(json.loads(path.read_text()))


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels nested in collapsed rows."""
    for item in dashboard["panels"]:
        yield item
        yield from item.get("panels", [])


def dashboard_targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard uid, panel, target) for every query of every committed dashboard."""
    for path in DASHBOARD_FILES:
        dashboard = load_dashboard(path)
        for panel in all_panels(dashboard):
            for target in panel.get("targets", []):
                yield dashboard["uid"], panel, target


def _target_id(item: tuple[str, dict[str, Any], dict[str, Any]]) -> str:
    uid, panel, target = item
    return f"{uid}/{panel['title']}/{target['refId']}"


def prometheus_targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Dashboard queries that go to the Prometheus datasource."""
    return [t for t in dashboard_targets() if t[2]["datasource"]["type"] == "prometheus"]


def loki_targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Dashboard queries that go to the exporter's Loki API."""
    return [t for t in dashboard_targets() if t[2]["datasource"]["type"] == "loki"]


def shopper_table_fields() -> list[str]:
    """The ShopperView fields the Shoppers table keeps from the labels `| json` extracts."""
    table = next(p for p in all_panels(load_dashboard(LIVE)) if p["title"] == "Shoppers")
    keep = next(t for t in table["transformations"] if t["id"] == "filterFieldsByName")
    return list(keep["options"]["include"]["names"])


@cache
def _schema(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / f"{name}.jsonschema.json"
    if not SCHEMA_DIR.is_dir():
        message = f"Grafana schemas not found at {SCHEMA_DIR}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return dict(json.loads(path.read_text()))


def _validator(name: str, definition: str | None = None) -> Draft7Validator:
    schema = _schema(name)
    if definition is not None:
        schema = {**schema, "$ref": f"#/definitions/{definition}"}
    return Draft7Validator(schema)


def _errors(validator: Draft7Validator, instance: object) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def provisioned_datasources() -> dict[str, str]:
    """uid → type of every provisioned datasource."""
    config = yaml.safe_load(DATASOURCES_FILE.read_text())
    return {source["uid"]: source["type"] for source in config["datasources"]}


def test_dashboards_exist() -> None:
    """Both dashboards are committed."""
    assert [p.name for p in DASHBOARD_FILES] == [f"{LIVE}.json", f"{EXPORTER}.json"]


def test_committed_dashboards_match_their_source() -> None:
    """grafana/build_dashboards.py reproduces the committed JSON exactly."""
    result = subprocess.run(
        [sys.executable, str(GRAFANA_DIR / "build_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_validates_against_schema(path: Path) -> None:
    """The dashboard JSON is valid against Grafana's dashboard schema."""
    assert _errors(_validator("dashboard"), load_dashboard(path)) == []


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_panels_validate_against_panel_schemas(path: Path) -> None:
    """Each panel's options and custom field config match its panel plugin's schema."""
    checked = set()
    problems = []
    for panel in all_panels(load_dashboard(path)):
        kind = panel["type"]
        if kind == "row":
            continue
        assert (SCHEMA_DIR / f"{kind}.jsonschema.json").exists(), f"no schema for {kind}"
        checked.add(kind)
        for error in _errors(_validator(kind, "Options"), panel["options"]):
            problems.append(f"{panel['title']} options {error}")
        if "FieldConfig" in _schema(kind)["definitions"]:
            custom = panel["fieldConfig"]["defaults"].get("custom", {})
            for error in _errors(_validator(kind, "FieldConfig"), custom):
                problems.append(f"{panel['title']} fieldConfig.custom {error}")
    assert problems == []
    assert checked


@pytest.mark.parametrize("item", list(dashboard_targets()), ids=_target_id)
def test_target_validates_against_query_schema(item: tuple[str, Any, dict[str, Any]]) -> None:
    """Each query matches the Prometheus or Loki dataquery schema."""
    target = item[2]
    assert _errors(_validator(target["datasource"]["type"]), target) == []


def test_dashboard_uids_and_titles_are_unique() -> None:
    """Dashboard uids (8-40 characters) and titles are unique."""
    dashboards = [load_dashboard(p) for p in DASHBOARD_FILES]
    uids = [d["uid"] for d in dashboards]
    titles = [d["title"] for d in dashboards]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)
    assert all(8 <= len(uid) <= 40 for uid in uids)
    assert {p.stem for p in DASHBOARD_FILES} == set(uids)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_references_only_provisioned_datasources(path: Path) -> None:
    """Panels, queries and variables name datasources by a provisioned uid and its type."""
    provisioned = provisioned_datasources()
    text = path.read_text()
    assert "__inputs" not in text
    assert "__requires" not in text
    assert "${DS_" not in text
    dashboard = load_dashboard(path)
    refs = [v["datasource"] for v in dashboard["templating"]["list"] if "datasource" in v]
    for panel in all_panels(dashboard):
        if panel["type"] != "row":
            refs.append(panel["datasource"])
        refs.extend(target["datasource"] for target in panel.get("targets", []))
    assert refs
    for ref in refs:
        assert set(ref) == {"type", "uid"}, ref
        assert provisioned.get(ref["uid"]) == ref["type"], ref


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_panel_grid_positions_fit_and_do_not_overlap(path: Path) -> None:
    """Every panel lies inside the 24-column grid and no two panels overlap."""
    dashboard = load_dashboard(path)
    cells: dict[tuple[int, int], str] = {}
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        pos = panel["gridPos"]
        assert min(pos["w"], pos["h"]) >= 1, panel["title"]
        assert min(pos["x"], pos["y"]) >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("item", prometheus_targets(), ids=_target_id)
def test_promql_uses_catalog_metrics_and_aggregates(item: tuple[str, Any, dict[str, Any]]) -> None:
    """A panel's PromQL reads only catalog metrics or recorded series, summed over replicas."""
    expr = item[2]["expr"]
    names = promql_metric_names(expr)
    assert names
    assert names - CATALOG - SCRAPE_METRICS - recording_rule_names() == set()
    assert unaggregated_selectors(expr) == []
    for name in names - recording_rule_names():
        assert re.search(rf'{name}\{{job=~"\$job", instance=~"\$instance"', expr), name


@pytest.mark.parametrize("item", loki_targets(), ids=_target_id)
def test_loki_queries_select_the_exporter_streams(item: tuple[str, Any, dict[str, Any]]) -> None:
    """A Loki query selects one of the exporter's streams: shopper-events or shopper-state."""
    selectors = re.findall(r'\{job="([^"]+)"', item[2]["expr"])
    assert selectors
    assert set(selectors) <= {"shopper-events", "shopper-state"}


def test_datasources_are_provisioned_with_fixed_uids() -> None:
    """Prometheus (default) and the exporter's Loki API are provisioned under fixed uids."""
    config = yaml.safe_load(DATASOURCES_FILE.read_text())
    sources = {source["uid"]: source for source in config["datasources"]}
    assert set(sources) == {"prometheus", "shopper-events"}
    prometheus, events = sources["prometheus"], sources["shopper-events"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True
    assert events["type"] == "loki"
    assert events["url"] == "http://exporter:9462"
    assert events["jsonData"]["maxLines"] == 1000
    assert not events.get("isDefault", False)


def test_datasource_time_interval_matches_scrape_interval() -> None:
    """Grafana's Prometheus timeInterval equals Prometheus' scrape interval."""
    config = yaml.safe_load(DATASOURCES_FILE.read_text())
    prometheus = next(s for s in config["datasources"] if s["uid"] == "prometheus")
    scrape = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]


def test_dashboard_provider_loads_the_mounted_directory() -> None:
    """One file provider reads the directory the dashboards are mounted at."""
    providers = yaml.safe_load(PROVIDERS_FILE.read_text())["providers"]
    assert len(providers) == 1
    assert providers[0]["type"] == "file"
    assert providers[0]["options"]["path"] == "/etc/grafana/dashboards"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_has_job_and_instance_variables(path: Path) -> None:
    """Job and instance are Prometheus query variables over the exporter's series; refresh is 5s."""
    dashboard = load_dashboard(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["job"]["query"] == "label_values(shopper_tracked_shoppers, job)"
    assert variables["instance"]["query"] == (
        'label_values(shopper_tracked_shoppers{job=~"$job"}, instance)'
    )
    for variable in variables.values():
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    assert dashboard["refresh"] == "5s"


def _panels_by_title(uid: str) -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in all_panels(load_dashboard(uid))}


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [target["expr"] for target in panel["targets"]]


def test_live_dashboard_starts_with_the_kpi_row() -> None:
    """The first line of the product dashboard holds the brief's eight KPIs as stat panels."""
    panels = load_dashboard(LIVE)["panels"]
    kpis = [p for p in panels if p["type"] == "stat" and p["gridPos"]["y"] == 1]
    assert [p["title"] for p in kpis] == [
        "Active Shoppers",
        "Active Carts",
        "Cart Value",
        "Orders/Hour",
        "Avg Session",
        "Cart Abandonment",
        "Product Views",
        "Searches",
    ]
    by_title = {p["title"]: p for p in kpis}
    assert _exprs(by_title["Orders/Hour"]) == [
        'sum(increase(shopper_orders_total{job=~"$job", instance=~"$instance"}[1h]))'
    ]
    assert "shopper_cart_abandonments_total" in _exprs(by_title["Cart Abandonment"])[0]
    assert by_title["Cart Value"]["fieldConfig"]["defaults"]["unit"] == "currencyUSD"


def test_live_dashboard_has_the_four_views_of_the_brief() -> None:
    """Rows for real-time activity, shopper details, shopping behaviour and the event stream."""
    rows = [p["title"] for p in load_dashboard(LIVE)["panels"] if p["type"] == "row"]
    for view in ("Real-time Activity", "Shopper Details", "Shopping Behaviour", "Event Stream"):
        assert view in rows


def test_live_dashboard_realtime_activity_view() -> None:
    """Active shoppers as an area chart, events per second, session duration and the top 5."""
    panels = _panels_by_title(LIVE)
    active = panels["Active shoppers"]
    assert active["type"] == "timeseries"
    assert active["fieldConfig"]["defaults"]["custom"]["fillOpacity"] >= 25
    assert panels["Events per second"]["type"] == "timeseries"
    assert "rate(shopper_events_total" in _exprs(panels["Events per second"])[0]
    assert "shopper_active_session_seconds" in _exprs(panels["Average session duration"])[0]
    top = panels["Top 5 activities"]
    assert top["type"] == "bargauge"
    assert _exprs(top)[0].startswith("topk(5, sum by (activity)")


def test_live_dashboard_shopper_details_view() -> None:
    """A table of the shopper-state stream, parsed with `| json` and organized into columns."""
    table = _panels_by_title(LIVE)["Shoppers"]
    assert table["type"] == "table"
    assert table["datasource"]["uid"] == "shopper-events"
    assert _exprs(table) == ['{job="shopper-state"} | json']
    organize = next(t for t in table["transformations"] if t["id"] == "organize")
    columns = organize["options"]["indexByName"]
    for field in ("status", "sessionSeconds", "cartValue", "itemsInCart", "activeFeature"):
        assert field in columns


def test_live_dashboard_shopping_behaviour_view() -> None:
    """Activity pie, engagement bar chart, and statistics with a trend against an hour ago."""
    panels = _panels_by_title(LIVE)
    assert panels["Activity distribution"]["type"] == "piechart"
    assert panels["Activity engagement"]["type"] in {"barchart", "bargauge"}
    trends = [
        p for p in panels.values() if p["type"] == "stat" and p["options"]["showPercentChange"]
    ]
    assert len(trends) >= 4
    assert all(p["timeFrom"] == "1h" for p in trends)


def test_live_dashboard_event_stream_view() -> None:
    """A logs panel shows the latest shopper events with type and shopper."""
    stream = _panels_by_title(LIVE)["Live shopping events"]
    assert stream["type"] == "logs"
    expr = _exprs(stream)[0]
    assert expr.startswith('{job="shopper-events"}')
    assert "{{.type}}" in expr
    assert "{{.userName}}" in expr
    assert stream["targets"][0]["maxLines"] == 50


def test_live_dashboard_funnel_and_abandoned_revenue() -> None:
    """The funnel sums sessions by stage, and abandoned cart value is shown."""
    panels = _panels_by_title(LIVE)
    funnel = panels["Conversion funnel"]
    assert funnel["type"] == "bargauge"
    assert _exprs(funnel)[0].startswith("sum by (stage) (increase(shopper_funnel_sessions_total")
    assert (
        "shopper_abandoned_cart_value_dollars_total"
        in _exprs(panels["Abandoned revenue, last hour"])[0]
    )


def test_exporter_dashboard_covers_ingest_and_self_metrics() -> None:
    """The exporter dashboard charts ingest, rejects, ignores, streams, sources and itself."""
    used: set[str] = set()
    for panel in _panels_by_title(EXPORTER).values():
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == "prometheus":
                used |= promql_metric_names(target["expr"])
    expected = {name for name in CATALOG if name.startswith("shopper_exporter_")}
    expected |= {
        "shopper_updates_received_total",
        "shopper_updates_rejected_total",
        "shopper_updates_ignored_total",
        "up",
    }
    assert expected - used == set()
