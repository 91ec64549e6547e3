"""What surrounds the panels: datasource and label variables, alert annotations, links."""

from __future__ import annotations

from typing import Any

from panels import PROM, Json, layout

# The provisioned datasources (provisioning/datasources/datasources.yml): the defaults the
# datasource variables start on. Imported elsewhere, Grafana offers its own of each type.
PROVISIONED = {
    "datasource": ("prometheus", "Prometheus", "prometheus"),
    "loki": ("loki", "Shopper events", "shopper-events"),
}
# Dashboards are files under provisioning with allowUiUpdates off: edits could not be saved.
EDITABLE = False

# Firing shopper alerts, marked on every time series (Watchdog, always firing, is left out).
ALERTS = 'ALERTS{alertname=~"Shopper.*", alertstate="firing", job=~"$job"}'


def datasource_variable(name: str, label: str) -> Json:
    """A datasource picker of one type, starting on the provisioned datasource."""
    kind, text, uid = PROVISIONED[name]
    return {
        "type": "datasource",
        "name": name,
        "label": label,
        "query": kind,
        "current": {"selected": True, "text": text, "value": uid},
        "options": [],
        "regex": "",
        "refresh": 1,
        "hide": 0,
        "multi": False,
        "includeAll": False,
    }


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


def annotations() -> Json:
    """Grafana's own annotations, and the firing shopper alerts from Prometheus' ALERTS."""
    return {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            },
            {
                "name": "Shopper alerts",
                "datasource": PROM,
                "enable": True,
                "hide": False,
                "iconColor": "red",
                "expr": ALERTS,
                "step": "1m",
                "titleFormat": "{{alertname}}",
                "textFormat": "{{severity}} {{instance}}",
                "tagKeys": "severity",
                "useValueForTime": False,
            },
        ]
    }


def dashboard(uid: str, title: str, description: str, panels: list[Json]) -> Json:
    """A dashboard with the datasource, job and instance variables and links to its sibling."""
    variables: list[Any] = [
        datasource_variable("datasource", "Prometheus"),
        datasource_variable("loki", "Event stream"),
        query_variable("job", "Job", "label_values(shopper_tracked_shoppers, job)"),
        query_variable(
            "instance", "Instance", 'label_values(shopper_tracked_shoppers{job=~"$job"}, instance)'
        ),
    ]
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["shopper", "live-shopper-metrics"],
        "timezone": "browser",
        "editable": EDITABLE,
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
        "annotations": annotations(),
        "templating": {"list": variables},
        "panels": layout(panels),
    }
