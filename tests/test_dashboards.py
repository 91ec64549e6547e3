"""Grafana provisioning and dashboards: schemas, datasources, layout and the metrics they query."""

from __future__ import annotations

import json
import re
import urllib.parse
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
    alert_rules,
    promql_metric_names,
    recording_rule_names,
    unaggregated_selectors,
)

from support import ROOT, generator_check, prometheus_module

GRAFANA_DIR = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml"
PROVIDERS_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
SCHEMA_DIR = ROOT / "tests" / "schemas" / "grafana"
"""Grafana's JSON schemas, kept in the repository with their licence (see NOTICE there)."""

LIVE = "live-shopper-metrics"
EXPORTER = "shopper-exporter"
PROMETHEUS_REF = {"type": "prometheus", "uid": "${datasource}"}
LOKI_REF = {"type": "loki", "uid": "${loki}"}


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
    schema = dict(json.loads(path.read_text()))
    # Grafana's CUE source types an override's value and a matcher's options as `_` (anything:
    # `"value": "negative-Y"`, `"options": "B"`); the generated JSON schema narrowed `_` to
    # `object`, which no dashboard Grafana itself writes would pass. Restore "anything".
    definitions = schema.get("definitions", {})
    if "DynamicConfigValue" in definitions:
        definitions["DynamicConfigValue"]["properties"]["value"] = {}
        definitions["MatcherConfig"]["properties"]["options"] = {}
    return schema


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
    result = generator_check(GRAFANA_DIR / "build_dashboards.py")
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
def test_dashboard_names_datasources_through_its_variables(path: Path) -> None:
    """Panels, queries, variables and annotations name their datasource as ${datasource}
    (Prometheus) or ${loki} (the event stream), never a fixed uid, so an import works anywhere."""
    text = path.read_text()
    assert "__inputs" not in text
    assert "__requires" not in text
    assert "${DS_" not in text
    dashboard = load_dashboard(path)
    refs = [v["datasource"] for v in dashboard["templating"]["list"] if "datasource" in v]
    refs += [a["datasource"] for a in dashboard["annotations"]["list"] if not a.get("builtIn")]
    for panel in all_panels(dashboard):
        if panel["type"] != "row":
            refs.append(panel["datasource"])
        refs.extend(target["datasource"] for target in panel.get("targets", []))
    assert refs
    for ref in refs:
        assert ref in (PROMETHEUS_REF, LOKI_REF), ref
    assert LOKI_REF in refs


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_datasource_variables_start_on_the_provisioned_datasources(path: Path) -> None:
    """$datasource picks among Prometheus datasources and $loki among Loki ones, each starting
    on the datasource provisioning creates."""
    variables = {v["name"]: v for v in load_dashboard(path)["templating"]["list"]}
    provisioned = provisioned_datasources()
    for name, kind in (("datasource", "prometheus"), ("loki", "loki")):
        variable = variables[name]
        assert variable["type"] == "datasource"
        assert variable["query"] == kind
        assert provisioned[variable["current"]["value"]] == kind


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
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == PROMETHEUS_REF
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
    """Active shoppers as an area chart, events per second, session duration, cart actions."""
    panels = _panels_by_title(LIVE)
    active = panels["Active shoppers"]
    assert active["type"] == "timeseries"
    assert active["fieldConfig"]["defaults"]["custom"]["fillOpacity"] >= 25
    assert "shopper_active_shoppers_by_membership" in _exprs(active)[0]
    assert panels["Events per second"]["type"] == "timeseries"
    assert "rate(shopper_events_total" in _exprs(panels["Events per second"])[0]
    assert "shopper_session_duration_seconds" in _exprs(panels["Session duration"])[0]
    assert panels["Cart actions"]["type"] == "timeseries"


def test_live_dashboard_shopper_details_view() -> None:
    """A table of the shopper-state stream, parsed with `| json` and organized into columns."""
    table = _panels_by_title(LIVE)["Shoppers"]
    assert table["type"] == "table"
    assert table["datasource"] == LOKI_REF
    assert _exprs(table) == ['{job="shopper-state"} | json']
    organize = next(t for t in table["transformations"] if t["id"] == "organize")
    columns = organize["options"]["indexByName"]
    for field in ("status", "sessionSeconds", "cartValue", "itemsInCart", "activeFeature"):
        assert field in columns


def test_live_dashboard_shopping_behaviour_view() -> None:
    """Activity pie, engagement bar chart, and statistics with a trend against an hour ago."""
    panels = _panels_by_title(LIVE)
    assert panels["Activity distribution"]["type"] == "piechart"
    assert panels["Activity distribution"]["options"]["legend"]["sortDesc"] is True
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


def _all_panels() -> Iterator[tuple[str, dict[str, Any]]]:
    """(dashboard uid, panel) for every panel but rows, of every dashboard."""
    for path in DASHBOARD_FILES:
        dashboard = load_dashboard(path)
        for panel in all_panels(dashboard):
            if panel["type"] != "row":
                yield dashboard["uid"], panel


def _overrides(panel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Matcher option (field name or refId) → the properties overridden for it."""
    found: dict[str, dict[str, Any]] = {}
    for o in panel["fieldConfig"]["overrides"]:
        properties = found.setdefault(o["matcher"]["options"], {})
        properties.update({p["id"]: p["value"] for p in o["properties"]})
    return found


def test_every_panel_has_a_description() -> None:
    """Each panel says what it shows in its description (the (i) beside its title)."""
    missing = [f"{uid}/{p['title']}" for uid, p in _all_panels() if not p["description"].strip()]
    assert missing == []


def test_no_two_panels_share_a_query() -> None:
    """No query appears in two panels (of either dashboard): every panel shows something of
    its own."""
    seen: dict[str, str] = {}
    for uid, panel in _all_panels():
        for target in panel["targets"]:
            expr = " ".join(target["expr"].split())
            where = f"{uid}/{panel['title']}"
            assert expr not in seen or seen[expr] == where, f"{where} repeats {seen.get(expr)}"
            seen[expr] = where
    assert len(seen) >= 40


def test_value_panels_have_units() -> None:
    """Every stat, time series, bar gauge and bar chart states its unit."""
    for uid, panel in _all_panels():
        if panel["type"] in {"stat", "timeseries", "bargauge", "barchart"}:
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{uid}/{panel['title']}"


def test_every_table_column_has_a_unit() -> None:
    """Each column the Shoppers table shows has a unit (`string` for text), and the userId it
    keeps for its link is hidden."""
    table = _panels_by_title(LIVE)["Shoppers"]
    organize = next(t for t in table["transformations"] if t["id"] == "organize")
    renamed = organize["options"]["renameByName"]
    overrides = _overrides(table)
    for field in organize["options"]["indexByName"]:
        if field == "userId":
            assert overrides["userId"]["custom.hidden"] is True
            continue
        assert overrides[renamed[field]]["unit"], field
    assert overrides[renamed["cartValue"]]["unit"] == "currencyUSD"
    assert overrides[renamed["sessionSeconds"]]["unit"] == "s"


def test_shopper_rows_link_to_their_events_in_explore() -> None:
    """The shopper's name links to Explore on $loki, querying that userId's events over the
    dashboard's time range."""
    table = _panels_by_title(LIVE)["Shoppers"]
    (link,) = _overrides(table)["Shopper"]["links"]
    path, _, query = link["url"].partition("?")
    assert path == "/explore"
    panes = json.loads(urllib.parse.parse_qs(query)["panes"][0])
    (pane,) = panes.values()
    assert pane["datasource"] == "${loki}"
    assert pane["range"] == {"from": "${__from}", "to": "${__to}"}
    (explore_query,) = pane["queries"]
    assert explore_query["datasource"] == LOKI_REF
    assert explore_query["expr"] == (
        '{job="shopper-events"} | json | userId="${__data.fields.userId:percentencode}"'
    )


def test_cart_removals_are_drawn_downward_by_an_override() -> None:
    """Removed items are a positive rate drawn below the axis by a negative-Y override; no
    query is negated."""
    panel = _panels_by_title(LIVE)["Cart actions"]
    removed = next(t for t in panel["targets"] if "items_removed" in t["expr"])
    assert _overrides(panel)[removed["refId"]] == {"custom.transform": "negative-Y"}
    for _, any_panel in _all_panels():
        for target in any_panel["targets"]:
            assert not target["expr"].lstrip().startswith("-"), target["expr"]


def test_thresholds_are_relative_not_dollar_amounts() -> None:
    """No dollar value is coloured by a fixed amount; abandoned revenue is coloured by its share
    of closed cart value, as the abandonment KPI is."""
    for uid, panel in _all_panels():
        defaults = panel["fieldConfig"]["defaults"]
        if defaults.get("unit") == "currencyUSD" and "thresholds" in defaults:
            steps = defaults["thresholds"]["steps"]
            assert [s["value"] for s in steps] == [None], f"{uid}/{panel['title']}"
    revenue = _panels_by_title(LIVE)["Abandoned revenue, last hour"]
    share = _overrides(revenue)["B"]
    assert share["unit"] == "percentunit"
    assert [s["value"] for s in share["thresholds"]["steps"]] == [None, 0.75, 0.85]


# Counters that may move once in a while: rated over a few scrapes, one event jumps the line.
RARE_COUNTERS = (
    "shopper_orders_total",
    "shopper_cart_abandonments_total",
    "shopper_order_value_dollars_total",
    "shopper_abandoned_cart_value_dollars_total",
    "shopper_coupons_applied_total",
    "shopper_session_duration_seconds",
    "shopper_exporter_source_reconnects_total",
    "shopper_exporter_label_overflow_total",
    "shopper_exporter_stream_dropped_frames_total",
    "shopper_updates_rejected_total",
    "shopper_updates_ignored_total",
)


def test_rare_counters_are_rated_over_minutes() -> None:
    """A rare counter is rated over 5m or more, the selected range, or $__rate_interval in a
    panel whose minimum interval is 1m."""
    checked = 0
    for uid, panel in _all_panels():
        for target in panel["targets"]:
            for name in RARE_COUNTERS:
                for window in re.findall(rf"{name}\w*\{{[^}}]*\}}\[([^\]]+)\]", target["expr"]):
                    checked += 1
                    where = f"{uid}/{panel['title']}: {window}"
                    if window == "$__rate_interval":
                        assert panel.get("interval") == "1m", where
                    else:
                        assert window in {"5m", "1h", "$__range"}, where
    assert checked >= 10


def test_targets_up_shows_replicas_down() -> None:
    """Targets up shows how many replicas are up and how many are down, the latter red from 1."""
    panel = _panels_by_title(EXPORTER)["Targets up"]
    down = next(t for t in panel["targets"] if "== bool 0" in t["expr"])
    steps = _overrides(panel)[down["refId"]]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 1}
    assert panel["options"]["textMode"] == "value_and_name"


@pytest.mark.parametrize(
    ("uid", "title"),
    [
        (LIVE, "Cart Abandonment"),
        (LIVE, "Shoppers"),
        (LIVE, "Events by type (event log)"),
        (EXPORTER, "Rejected share"),
        (EXPORTER, "Stream subscribers"),
        (EXPORTER, "Source up"),
        (EXPORTER, "Source reconnects"),
        (EXPORTER, "Since last success"),
        (EXPORTER, "Event log lines (Loki API)"),
        (EXPORTER, "Forwarding to Loki"),
    ],
)
def test_panels_say_why_they_are_empty(uid: str, title: str) -> None:
    """Where no data is the normal state (no pull sources, no subscribers, no carts closed
    yet), the panel says so instead of "No data"."""
    assert _panels_by_title(uid)[title]["fieldConfig"]["defaults"]["noValue"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_time_series_mark_firing_shopper_alerts(path: Path) -> None:
    """An annotation query over ALERTS marks every firing Shopper* alert of the selected job."""
    queries = [a for a in load_dashboard(path)["annotations"]["list"] if not a.get("builtIn")]
    (alerts,) = queries
    assert alerts["datasource"] == PROMETHEUS_REF
    assert alerts["enable"] is True
    assert alerts["expr"] == 'ALERTS{alertname=~"Shopper.*", alertstate="firing", job=~"$job"}'
    assert "filter" not in alerts


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboards_are_editable_only_if_provisioning_saves_edits(path: Path) -> None:
    """`editable` matches the provider's allowUiUpdates: no edit mode for changes that could
    not be saved."""
    (provider,) = yaml.safe_load(PROVIDERS_FILE.read_text())["providers"]
    assert load_dashboard(path)["editable"] is provider["allowUiUpdates"]


def test_alert_dashboard_links_open_existing_panels() -> None:
    """Every alert's dashboard_url opens a dashboard and panel that exist, the one its runbook
    names."""
    panels = prometheus_module("mixin_alerts").PANELS
    for rule in alert_rules():
        url = urllib.parse.urlparse(rule["annotations"]["dashboard_url"])
        uid = url.path.rsplit("/", 1)[1]
        query = urllib.parse.parse_qs(url.query)
        expected_uid, title = panels[rule["alert"]]
        assert uid == expected_uid
        if title:
            (panel_id,) = query["viewPanel"]
            by_id = {p["id"]: p["title"] for p in all_panels(load_dashboard(uid))}
            assert by_id[int(panel_id)] == title, rule["alert"]
