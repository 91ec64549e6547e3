"""Panel builders: queries, the options each panel type requires, field overrides and layout."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Json = dict[str, Any]

# Panels name their datasource through the dashboard's variables, so a dashboard imported into
# another Grafana asks for that Grafana's datasources; provisioning pins the defaults.
PROM = {"type": "prometheus", "uid": "${datasource}"}
LOKI = {"type": "loki", "uid": "${loki}"}

# Every Prometheus selector is narrowed by the dashboard's job and instance variables.
SCOPE = 'job=~"$job", instance=~"$instance"'


def sel(metric: str, **matchers: str) -> str:
    """`metric{job=~"$job", instance=~"$instance", k="v"...}`."""
    extra = "".join(f', {key}="{value}"' for key, value in matchers.items())
    return f"{metric}{{{SCOPE}{extra}}}"


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
    target: Json = {"datasource": LOKI, "editorMode": "code", "expr": expr, "queryType": "range"}
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


def override(matcher: str, name: str, **properties: Any) -> Json:
    """A field override: `matcher` (byName, byFrameRefID) `name` gets `properties`."""
    return {
        "matcher": {"id": matcher, "options": name},
        "properties": [{"id": key.replace("__", "."), "value": v} for key, v in properties.items()],
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
    description: str,
    options: Json,
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    no_value: str | None = None,
    **extra: Any,
) -> Json:
    """A panel; `gridPos` and `id` are filled in by `layout`."""
    datasource = targets[0]["datasource"]
    for index, target in enumerate(targets):
        target["refId"] = chr(ord("A") + index)
    defaults = defaults or {}
    if no_value is not None:
        defaults["noValue"] = no_value
    result: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "targets": targets,
        "options": options,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        **extra,
    }
    if transformations:
        result["transformations"] = transformations
    return result


def stat(
    title: str,
    *targets: Json,
    description: str,
    unit: str = "none",
    w: int = 3,
    h: int = 4,
    steps: Iterable[tuple[float, str]] = (),
    base: str = "green",
    graph: bool = True,
    percent_change: bool = False,
    decimals: int | None = None,
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
    description: str,
    unit: str = "none",
    w: int = 12,
    h: int = 8,
    fill: int = 10,
    stack: bool = False,
    downward: str | None = None,
    **extra: Any,
) -> Json:
    """A time-series panel; `fill` 25+ draws it as an area chart. The query with refId
    `downward` is drawn below the axis (negative-Y), its values staying positive."""
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
    overrides = []
    if downward is None:
        defaults["min"] = 0
    else:
        overrides.append(override("byFrameRefID", downward, custom__transform="negative-Y"))
    return panel(
        "timeseries",
        title,
        list(targets),
        w=w,
        h=h,
        description=description,
        options={"legend": LEGEND_LIST, "tooltip": TOOLTIP},
        defaults=defaults,
        overrides=overrides,
        **extra,
    )


def bargauge(
    title: str,
    *targets: Json,
    description: str,
    unit: str = "none",
    w: int = 8,
    h: int = 8,
    decimals: int | None = None,
    **extra: Any,
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
        **extra,
    )


def barchart(
    title: str,
    *targets: Json,
    description: str,
    x_field: str,
    unit: str,
    w: int = 8,
    h: int = 8,
    **extra: Any,
) -> Json:
    """Horizontal bars from a table-format query, one per `x_field` value."""
    return panel(
        "barchart",
        title,
        list(targets),
        w=w,
        h=h,
        description=description,
        options={
            "xField": x_field,
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
            "unit": unit,
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
        **extra,
    )


def piechart(
    title: str, *targets: Json, description: str, w: int = 8, h: int = 8, **extra: Any
) -> Json:
    """A donut of shares, its legend sorted largest first."""
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
                "sortBy": "Value",
                "sortDesc": True,
            },
            "orientation": "auto",
        },
        defaults={
            "unit": "none",
            "color": {"mode": "palette-classic"},
            "custom": {"hideFrom": HIDE_NOTHING},
        },
        **extra,
    )


def logs(
    title: str, *targets: Json, description: str, w: int = 24, h: int = 12, **extra: Any
) -> Json:
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
        **extra,
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
