"""Write the Grafana dashboards in grafana/dashboards/ (`--check` only compares them).

Usage: python grafana/build_dashboards.py [--check]

The dashboards are plain Grafana JSON; this module keeps their layout and the options every
panel type requires in one place, so that the JSON stays consistent when panels change.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "dashboards"

PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "shopper-events"}

# Every Prometheus selector is narrowed by the dashboard's job and instance variables.
SCOPE = 'job=~"$job", instance=~"$instance"'

Json = dict[str, Any]


def sel(metric: str, **matchers: str) -> str:
    """`metric{job=~"$job", instance=~"$instance", k="v"...}`."""
    extra = "".join(f', {key}="{value}"' for key, value in matchers.items())
    return f"{metric}{{{SCOPE}{extra}}}"


# Expressions used by more than one panel.
ACTIVE_SHOPPERS = f"sum({sel('shopper_active_shoppers')})"
ACTIVE_CARTS = f"sum({sel('shopper_active_carts')})"
AVG_SESSION = f"sum({sel('shopper_active_session_seconds')}) / clamp_min({ACTIVE_SHOPPERS}, 1)"
ORDERS_1H = f"sum(increase({sel('shopper_orders_total')}[1h]))"
ABANDONMENTS_1H = f"sum(increase({sel('shopper_cart_abandonments_total')}[1h]))"
# Abandonments / (abandonments + orders); no value rather than NaN while no cart was closed.
ABANDONMENT_RATIO_1H = f"{ABANDONMENTS_1H} / (({ABANDONMENTS_1H} + {ORDERS_1H}) > 0)"


def prom(expr: str, legend: str = "__auto", *, instant: bool = False, table: bool = False) -> Json:
    """A Prometheus query target."""
    target: Json = {
        "datasource": PROM,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
    }
    if table:
        target["format"] = "table"
    return target


def loki(expr: str, legend: str | None = None, *, max_lines: int | None = None) -> Json:
    """A Loki (shopper event log) query target."""
    target: Json = {
        "datasource": LOKI,
        "editorMode": "code",
        "expr": expr,
        "queryType": "range",
    }
    if legend is not None:
        target["legendFormat"] = legend
    if max_lines is not None:
        target["maxLines"] = max_lines
    return target


def thresholds(*steps: tuple[float, str], base: str = "green") -> Json:
    """Absolute thresholds starting at `base`."""
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": color, "value": value} for value, color in steps],
    }


REDUCE_LAST = {"calcs": ["lastNotNull"], "fields": "", "values": False}
LEGEND_HIDDEN = {"displayMode": "list", "placement": "bottom", "showLegend": False, "calcs": []}
LEGEND_LIST = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
TOOLTIP = {"mode": "multi", "sort": "desc"}
HIDE_NOTHING = {"tooltip": False, "legend": False, "viz": False}


def panel(
    kind: str,
    title: str,
    targets: list[Json],
    *,
    w: int,
    h: int,
    description: str = "",
    options: Json,
    defaults: Json | None = None,
    transformations: list[Json] | None = None,
    **extra: Any,
) -> Json:
    """A panel; `gridPos` and `id` are filled in by `layout`."""
    datasource = targets[0]["datasource"]
    for index, target in enumerate(targets):
        target["refId"] = chr(ord("A") + index)
    result: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "targets": targets,
        "options": options,
        "fieldConfig": {"defaults": defaults or {}, "overrides": []},
        **extra,
    }
    if transformations:
        result["transformations"] = transformations
    return result


def stat(
    title: str,
    *targets: Json,
    unit: str = "none",
    description: str = "",
    w: int = 3,
    h: int = 4,
    steps: Iterable[tuple[float, str]] = (),
    base: str = "green",
    graph: bool = True,
    percent_change: bool = False,
    decimals: int | None = None,
    no_value: str | None = None,
    text_mode: str = "auto",
    **extra: Any,
) -> Json:
    """A single-value panel, with a sparkline unless `graph` is off."""
    defaults: Json = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thresholds(*steps, base=base),
        "mappings": [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if no_value is not None:
        defaults["noValue"] = no_value
    return panel(
        "stat",
        title,
        list(targets),
        w=w,
        h=h,
        description=description,
        options={
            "reduceOptions": REDUCE_LAST,
            "orientation": "auto",
            "textMode": text_mode,
            "colorMode": "value",
            "graphMode": "area" if graph else "none",
            "justifyMode": "auto",
            "wideLayout": True,
            "showPercentChange": percent_change,
            "percentChangeColorMode": "standard",
        },
        defaults=defaults,
        **extra,
    )


def timeseries(
    title: str,
    *targets: Json,
    unit: str = "none",
    description: str = "",
    w: int = 12,
    h: int = 8,
    fill: int = 10,
    stack: bool = False,
    signed: bool = False,
) -> Json:
    """A time-series panel; `fill` 25+ draws it as an area chart, `signed` allows negatives."""
    defaults: Json = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "lineInterpolation": "smooth",
            "lineWidth": 2,
            "fillOpacity": fill,
            "gradientMode": "opacity" if fill else "none",
            "showPoints": "never",
            "spanNulls": True,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "axisPlacement": "auto",
            "hideFrom": HIDE_NOTHING,
        },
    }
    if not signed:
        defaults["min"] = 0
    return panel(
        "timeseries",
        title,
        list(targets),
        w=w,
        h=h,
        description=description,
        options={"legend": LEGEND_LIST, "tooltip": TOOLTIP},
        defaults=defaults,
    )


def bargauge(
    title: str,
    *targets: Json,
    unit: str = "none",
    description: str = "",
    w: int = 8,
    h: int = 8,
    decimals: int | None = None,
) -> Json:
    """Horizontal bars, one per series (top lists, funnel stages)."""
    defaults: Json = {
        "unit": unit,
        "min": 0,
        "color": {"mode": "continuous-BlPu"},
        "thresholds": thresholds(),
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return panel(
        "bargauge",
        title,
        list(targets),
        w=w,
        h=h,
        description=description,
        options={
            "displayMode": "gradient",
            "valueMode": "color",
            "namePlacement": "auto",
            "showUnfilled": True,
            "sizing": "auto",
            "minVizWidth": 8,
            "minVizHeight": 16,
            "maxVizHeight": 300,
            "legend": LEGEND_HIDDEN,
            "reduceOptions": REDUCE_LAST,
            "orientation": "horizontal",
        },
        defaults=defaults,
    )


def piechart(title: str, *targets: Json, description: str = "", w: int = 8, h: int = 8) -> Json:
    """A donut of shares."""
    return panel(
        "piechart",
        title,
        list(targets),
        w=w,
        h=h,
        description=description,
        options={
            "pieType": "donut",
            "displayLabels": ["percent"],
            "tooltip": {"mode": "single", "sort": "none"},
            "reduceOptions": REDUCE_LAST,
            "legend": {
                "values": ["value", "percent"],
                "displayMode": "table",
                "placement": "right",
                "showLegend": True,
                "calcs": [],
            },
            "orientation": "auto",
        },
        defaults={
            "unit": "none",
            "color": {"mode": "palette-classic"},
            "custom": {"hideFrom": HIDE_NOTHING},
        },
    )


def logs(title: str, *targets: Json, description: str = "", w: int = 24, h: int = 12) -> Json:
    """Log lines from the shopper event log, newest first."""
    return panel(
        "logs",
        title,
        list(targets),
        w=w,
        h=h,
        description=description,
        options={
            "showLabels": True,
            "showCommonLabels": False,
            "showTime": True,
            "showLogContextToggle": False,
            "wrapLogMessage": True,
            "prettifyLogMessage": False,
            "enableLogDetails": True,
            "enableInfiniteScrolling": False,
            "sortOrder": "Descending",
            "dedupStrategy": "none",
        },
    )


def row(title: str) -> Json:
    """A dashboard row header."""
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
    }


def layout(items: list[Json]) -> list[Json]:
    """Number the panels and place them left to right, wrapping at 24 columns."""
    x = y = line_height = 0
    for number, item in enumerate(items, start=1):
        item["id"] = number
        pos = item["gridPos"]
        if item["type"] == "row" or x + pos["w"] > 24:
            x, y, line_height = 0, y + line_height, 0
        pos["x"], pos["y"] = x, y
        x += pos["w"]
        line_height = max(line_height, pos["h"])
        if item["type"] == "row":
            x, y, line_height = 0, y + 1, 0
    return items


def query_variable(name: str, label: str, query: str) -> Json:
    """A multi-value Prometheus label variable with an All option."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": PROM,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "hide": 0,
    }


def dashboard(uid: str, title: str, description: str, panels: list[Json]) -> Json:
    """A dashboard with the job/instance variables and links to its sibling."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["shopper", "live-shopper-metrics"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m", "15m"]},
        "refresh": "5s",
        "liveNow": False,
        "fiscalYearStartMonth": 0,
        "schemaVersion": 39,
        "version": 1,
        "links": [
            {
                "title": "Shopper dashboards",
                "type": "dashboards",
                "tags": ["shopper"],
                "icon": "external link",
                "tooltip": "",
                "asDropdown": True,
                "targetBlank": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {
            "list": [
                query_variable("job", "Job", "label_values(shopper_tracked_shoppers, job)"),
                query_variable(
                    "instance",
                    "Instance",
                    'label_values(shopper_tracked_shoppers{job=~"$job"}, instance)',
                ),
            ]
        },
        "panels": layout(panels),
    }


def live_shopper_metrics() -> Json:
    """The product dashboard: KPIs and the brief's four views, plus funnel and revenue."""
    kpis = [
        row("Key metrics"),
        stat(
            "Active Shoppers",
            prom(ACTIVE_SHOPPERS, "online"),
            description="Shoppers online: active and seen within the active window.",
        ),
        stat(
            "Active Carts",
            prom(ACTIVE_CARTS, "carts"),
            description="Online shoppers with at least one item in their cart.",
        ),
        stat(
            "Cart Value",
            prom(f"sum({sel('shopper_cart_value_dollars')})", "value"),
            unit="currencyUSD",
            description="Total value of the active carts.",
        ),
        stat(
            "Orders/Hour",
            prom(ORDERS_1H, "orders"),
            decimals=0,
            description="Orders completed in the last hour.",
        ),
        stat(
            "Avg Session",
            prom(AVG_SESSION, "session"),
            unit="s",
            description="Mean length of the sessions in progress.",
        ),
        stat(
            "Cart Abandonment",
            prom(ABANDONMENT_RATIO_1H, "abandoned"),
            unit="percentunit",
            steps=[(0.75, "orange"), (0.85, "red")],
            no_value="no carts closed",
            description="Abandoned carts / (abandoned carts + orders) over the last hour.",
        ),
        stat(
            "Product Views",
            prom(
                f"sum(increase({sel('shopper_product_views_total')}[$__range]))",
                "views",
                instant=True,
            ),
            graph=False,
            decimals=0,
            description="Products viewed in the selected time range.",
        ),
        stat(
            "Searches",
            prom(
                f"sum(increase({sel('shopper_searches_total')}[$__range]))",
                "searches",
                instant=True,
            ),
            graph=False,
            decimals=0,
            description="Product searches in the selected time range.",
        ),
    ]
    realtime = [
        row("Real-time Activity"),
        timeseries(
            "Active shoppers",
            prom(ACTIVE_SHOPPERS, "online shoppers"),
            prom(ACTIVE_CARTS, "with items in cart"),
            fill=35,
            description="Shoppers online over time, and how many of them hold a cart.",
        ),
        timeseries(
            "Events per second",
            prom(
                f"sum by (event) (rate({sel('shopper_events_total')}[$__rate_interval]))",
                "{{event}}",
            ),
            unit="ops",
            stack=True,
            description="Shopper events by type: views, searches, cart changes, orders...",
        ),
        timeseries(
            "Average session duration",
            prom(AVG_SESSION, "sessions in progress"),
            prom(
                f"sum(rate({sel('shopper_session_duration_seconds_sum')}[$__rate_interval]))"
                f" / sum(rate({sel('shopper_session_duration_seconds_count')}"
                "[$__rate_interval]))",
                "completed sessions",
            ),
            unit="s",
            w=8,
            fill=35,
            description="Mean length of the sessions in progress and of those that ended.",
        ),
        timeseries(
            "Cart actions",
            prom(
                f"sum(rate({sel('shopper_cart_items_added_total')}[$__rate_interval])) * 60",
                "items added",
            ),
            prom(
                f"-sum(rate({sel('shopper_cart_items_removed_total')}[$__rate_interval])) * 60",
                "items removed",
            ),
            unit="short",
            w=8,
            fill=25,
            signed=True,
            description="Items added to (up) and removed from (down) carts per minute.",
        ),
        bargauge(
            "Top 5 activities",
            prom(
                f"topk(5, sum by (activity) ({sel('shopper_active_shoppers_by_activity')}))",
                "{{activity}}",
                instant=True,
            ),
            decimals=0,
            description="What the online shoppers are doing right now.",
        ),
    ]
    details = [
        row("Shopper Details"),
        panel(
            "table",
            "Shoppers",
            [loki('{job="shopper-state"} | json', max_lines=1000)],
            w=24,
            h=11,
            description="Every shopper the exporter holds: status, session, cart and activity.",
            options={
                "frameIndex": 0,
                "showHeader": True,
                "cellHeight": "sm",
                "footer": {"show": False, "reducer": ["sum"], "countRows": False},
                "sortBy": [{"displayName": "Cart ($)", "desc": True}],
            },
            defaults={
                "custom": {
                    "align": "auto",
                    "inspect": False,
                    "filterable": True,
                },
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "online": {"text": "● online", "color": "green", "index": 0},
                            "offline": {"text": "○ offline", "color": "text", "index": 1},
                        },
                    }
                ],
            },
            transformations=[
                # `| json` turns the ShopperView line into labels; the table shows some of them.
                {"id": "extractFields", "options": {"source": "labels", "replace": True}},
                {
                    "id": "filterFieldsByName",
                    "options": {"include": {"names": list(SHOPPER_COLUMNS)}},
                },
                {
                    "id": "convertFieldType",
                    "options": {
                        "fields": {},
                        "conversions": [
                            {"targetField": name, "destinationType": "number"}
                            for name in (
                                "sessionSeconds",
                                "cartValue",
                                "itemsInCart",
                                "productsViewed",
                            )
                        ],
                    },
                },
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {},
                        "indexByName": {name: i for i, name in enumerate(SHOPPER_COLUMNS)},
                        "renameByName": SHOPPER_COLUMNS,
                    },
                },
            ],
        ),
        bargauge(
            "Online by membership",
            prom(
                f"sum by (membership) ({sel('shopper_active_shoppers_by_membership')})",
                "{{membership}}",
                instant=True,
            ),
            decimals=0,
        ),
        piechart(
            "Online by delivery window",
            prom(
                f"sum by (delivery_window) ({sel('shopper_active_shoppers_by_delivery_window')})",
                "{{delivery_window}}",
                instant=True,
            ),
        ),
        bargauge(
            "Top 10 locations",
            prom(
                f"topk(10, sum by (location) ({sel('shopper_active_shoppers_by_location')}))",
                "{{location}}",
                instant=True,
            ),
            decimals=0,
        ),
    ]
    behaviour = [
        row("Shopping Behaviour"),
        piechart(
            "Activity distribution",
            prom(
                f"sum by (activity) ({sel('shopper_active_shoppers_by_activity')})",
                "{{activity}}",
                instant=True,
            ),
            h=9,
            description="Online shoppers by current activity.",
        ),
        panel(
            "barchart",
            "Activity engagement",
            [
                prom(
                    f"sum by (activity) (increase({sel('shopper_activity_seconds_total')}"
                    "[$__range]))",
                    "{{activity}}",
                    instant=True,
                    table=True,
                )
            ],
            w=16,
            h=9,
            description="Time shoppers spent in each activity over the selected time range.",
            options={
                "xField": "activity",
                "orientation": "horizontal",
                "xTickLabelRotation": 0,
                "xTickLabelMaxLength": 0,
                "stacking": "none",
                "showValue": "auto",
                "barWidth": 0.8,
                "groupWidth": 0.7,
                "legend": LEGEND_HIDDEN,
                "tooltip": {"mode": "single", "sort": "none"},
                "fullHighlight": False,
            },
            defaults={
                "unit": "s",
                "color": {"mode": "palette-classic"},
                "custom": {
                    "fillOpacity": 80,
                    "gradientMode": "hue",
                    "lineWidth": 1,
                    "axisPlacement": "auto",
                    "hideFrom": HIDE_NOTHING,
                },
            },
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        ),
        # Percent change = last value against the first of the panel's one-hour range,
        # i.e. now against an hour ago.
        *(
            stat(
                title,
                prom(expr, legend),
                unit=unit,
                w=4,
                h=5,
                percent_change=True,
                timeFrom="1h",
                description=f"{text} The arrow compares with an hour ago.",
            )
            for title, expr, legend, unit, text in (
                ("Shoppers online", ACTIVE_SHOPPERS, "online", "none", "Shoppers online now."),
                ("Orders, last hour", ORDERS_1H, "orders", "none", "Orders in the last hour."),
                (
                    "Average cart value",
                    f"sum({sel('shopper_cart_value_dollars')}) / clamp_min({ACTIVE_CARTS}, 1)",
                    "cart",
                    "currencyUSD",
                    "Mean value of the active carts.",
                ),
                (
                    "Order conversion",
                    f"sum(increase({sel('shopper_funnel_sessions_total', stage='order')}[1h]))"
                    f" / (sum(increase({sel('shopper_funnel_sessions_total', stage='browsing')}"
                    "[1h])) > 0)",
                    "conversion",
                    "percentunit",
                    "Sessions that ordered / sessions, last hour.",
                ),
                (
                    "Page views per minute",
                    f"sum(rate({sel('shopper_page_views_total')}[5m])) * 60",
                    "views",
                    "none",
                    "Page views per minute over the last 5 minutes.",
                ),
                (
                    "Coupons, last hour",
                    f"sum(increase({sel('shopper_coupons_applied_total')}[1h]))",
                    "coupons",
                    "none",
                    "Coupons applied in the last hour.",
                ),
            )
        ),
    ]
    conversion = [
        row("Conversion & Revenue"),
        bargauge(
            "Conversion funnel",
            prom(
                f"sum by (stage) (increase({sel('shopper_funnel_sessions_total')}[$__range]))",
                "{{stage}}",
                instant=True,
            ),
            decimals=0,
            description="Sessions reaching each stage (browsing → cart → checkout → order) "
            "in the selected time range.",
        ),
        stat(
            "Abandoned revenue, last hour",
            prom(
                f"sum(increase({sel('shopper_abandoned_cart_value_dollars_total')}[1h]))",
                "abandoned",
            ),
            unit="currencyUSD",
            w=4,
            h=8,
            steps=[(1000, "orange")],
            description="Value of the carts abandoned in the last hour.",
        ),
        stat(
            "Order revenue, last hour",
            prom(f"sum(increase({sel('shopper_order_value_dollars_total')}[1h]))", "ordered"),
            unit="currencyUSD",
            w=4,
            h=8,
            description="Value of the orders of the last hour.",
        ),
        timeseries(
            "Orders and abandoned carts per hour",
            prom(f"sum(rate({sel('shopper_orders_total')}[$__rate_interval])) * 3600", "orders"),
            prom(
                f"sum(rate({sel('shopper_cart_abandonments_total')}[$__rate_interval])) * 3600",
                "abandoned carts",
            ),
            w=8,
        ),
    ]
    events = [
        row("Event Stream"),
        logs(
            "Live shopping events",
            # `keep` leaves the stream labels as badges instead of every parsed JSON field.
            loki(
                '{job="shopper-events"} | json | line_format '
                '"{{.type}} · {{.userName}} ({{.location}}): {{.message}}"'
                " | keep type, activity, membership",
                max_lines=50,
            ),
            h=12,
            description="The latest 50 events: type, shopper and what happened.",
        ),
        timeseries(
            "Events by type (event log)",
            loki('sum by (type) (count_over_time({job="shopper-events"}[$__auto]))', "{{type}}"),
            stack=True,
            description="Event-log lines per interval, by event type.",
        ),
        logs(
            "Orders and abandoned carts",
            loki(
                '{job="shopper-events", type=~"order_completed|cart_abandoned"} | json'
                ' | line_format "{{.userName}} ({{.location}}): {{.message}}"'
                " | keep type, membership",
                max_lines=50,
            ),
            w=12,
            h=8,
        ),
    ]
    return dashboard(
        "live-shopper-metrics",
        "Live Shopper Metrics",
        "Live shopper activity of the grocery platform: KPIs, real-time activity, shopper "
        "details, shopping behaviour and the event stream.",
        kpis + realtime + details + behaviour + conversion + events,
    )


# ShopperView fields shown in the Shoppers table, with their column titles.
SHOPPER_COLUMNS = {
    "status": "Status",
    "userName": "Shopper",
    "membershipType": "Membership",
    "location": "Location",
    "activeFeature": "Activity",
    "sessionSeconds": "Session (s)",
    "cartValue": "Cart ($)",
    "itemsInCart": "Items",
    "productsViewed": "Products viewed",
    "lastAction": "Last action",
}


def shopper_exporter() -> Json:
    """The operator dashboard: ingest, live streams, pull sources and the exporter itself."""
    rate = "[$__rate_interval]"
    ingest = [
        row("Ingest"),
        stat(
            "Updates/s",
            prom(f"sum(rate({sel('shopper_updates_received_total')}[5m]))", "updates"),
            unit="ops",
            w=6,
            description="Records received per second, valid or not, over 5 minutes.",
        ),
        stat(
            "Rejected share",
            prom(
                f"sum(rate({sel('shopper_updates_rejected_total')}[5m]))"
                f" / (sum(rate({sel('shopper_updates_received_total')}[5m])) > 0)",
                "rejected",
            ),
            unit="percentunit",
            w=6,
            steps=[(0.01, "orange"), (0.05, "red")],
            no_value="0%",
            description="Rejected records / received records over 5 minutes.",
        ),
        stat(
            "Last update age",
            prom(f"time() - max({sel('shopper_exporter_last_update_timestamp_seconds')})", "age"),
            unit="s",
            w=6,
            steps=[(60, "orange"), (300, "red")],
            description="Time since the newest accepted shopper update.",
        ),
        stat(
            "Tracked shoppers",
            prom(f"sum({sel('shopper_tracked_shoppers')})", "tracked"),
            w=6,
            description="Shoppers held in memory, online or not, until retention.",
        ),
        timeseries(
            "Updates received by transport",
            prom(
                f"sum by (transport) (rate({sel('shopper_updates_received_total')}{rate}))",
                "{{transport}}",
            ),
            unit="ops",
            stack=True,
        ),
        timeseries(
            "Rejected by reason",
            prom(
                f"sum by (transport, reason) (rate({sel('shopper_updates_rejected_total')}{rate}))",
                "{{transport}} {{reason}}",
            ),
            unit="ops",
            w=6,
        ),
        timeseries(
            "Ignored by reason",
            prom(
                f"sum by (reason) (rate({sel('shopper_updates_ignored_total')}{rate}))",
                "{{reason}}",
            ),
            unit="ops",
            w=6,
            description="Stale or duplicate updates.",
        ),
    ]
    streams = [
        row("Live streams"),
        timeseries(
            "Stream subscribers",
            prom(f"sum by (stream) ({sel('shopper_exporter_stream_subscribers')})", "{{stream}}"),
            description="Connected SSE, WebSocket and Loki tail clients.",
        ),
        timeseries(
            "Dropped frames",
            prom(
                f"sum(rate({sel('shopper_exporter_stream_dropped_frames_total')}{rate}))", "dropped"
            ),
            unit="ops",
            description="Frames dropped for subscribers that read too slowly.",
        ),
    ]
    sources = [
        row("Pull sources"),
        stat(
            "Source up",
            prom(f"min by (source) ({sel('shopper_exporter_source_up')})", "{{source}}"),
            w=8,
            h=8,
            graph=False,
            text_mode="value_and_name",
            steps=[(1, "green")],
            base="red",
            description="1 when every replica's connection to the source is healthy.",
        ),
        timeseries(
            "Source reconnects",
            prom(
                "sum by (source) "
                f"(increase({sel('shopper_exporter_source_reconnects_total')}{rate}))",
                "{{source}}",
            ),
            w=8,
            h=8,
        ),
        bargauge(
            "Since last success",
            prom(
                "time() - max by (source) "
                f"({sel('shopper_exporter_source_last_success_timestamp_seconds')})",
                "{{source}}",
                instant=True,
            ),
            unit="s",
            description="Time since each source last delivered data.",
        ),
    ]
    exporter = [
        row("Exporter"),
        stat(
            "Targets up",
            prom(f"sum({sel('up')})", "up"),
            w=4,
            graph=False,
            description="Exporter instances Prometheus scrapes successfully.",
        ),
        stat(
            "Version",
            prom(f"sum by (version) ({sel('shopper_exporter_build_info')})", "{{version}}"),
            w=4,
            graph=False,
            text_mode="name",
        ),
        timeseries(
            "Scrape duration",
            prom(
                f"sum by (instance) ({sel('shopper_exporter_scrape_duration_seconds')})",
                "{{instance}}",
            ),
            unit="s",
            w=8,
            description="Time the last /metrics collection took.",
        ),
        timeseries(
            "Event log entries",
            prom(
                f"sum by (instance) ({sel('shopper_exporter_event_log_entries')})", "{{instance}}"
            ),
            w=8,
            description="Events held in the ring buffer behind the Loki API.",
        ),
        timeseries(
            "Label overflow",
            prom(
                f"sum by (label) (increase({sel('shopper_exporter_label_overflow_total')}{rate}))",
                "{{label}}",
            ),
            description="Label values folded into `other` after the per-label cap.",
            w=8,
        ),
        timeseries(
            "Event log lines (Loki API)",
            loki('sum(count_over_time({job="shopper-events"}[$__auto]))', "events"),
            description="What Grafana's Loki datasource reads from the exporter.",
            w=8,
        ),
        timeseries(
            "Forwarding to Loki",
            prom(
                f"sum(rate({sel('shopper_exporter_loki_forwarded_events_total')}{rate}))",
                "forwarded",
            ),
            prom(
                f"sum(rate({sel('shopper_exporter_loki_forward_dropped_events_total')}{rate}))",
                "dropped",
            ),
            unit="ops",
            description="Events shipped to an external Loki (--loki-push-url), and drops.",
            w=8,
        ),
    ]
    return dashboard(
        "shopper-exporter",
        "Shopper Exporter",
        "Health of the Live Shopper Metrics exporter: ingest, live streams, pull sources.",
        ingest + streams + sources + exporter,
    )


DASHBOARDS = {
    "live-shopper-metrics.json": live_shopper_metrics,
    "shopper-exporter.json": shopper_exporter,
}


def render(build: Any) -> str:
    """The dashboard as the committed file holds it."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = OUT_DIR / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python grafana/build_dashboards.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
