"""POST /api/alerts: an Alertmanager webhook, so firing alerts join the live event stream."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from exporter.api.replies import (
    BodyTooLargeError,
    error_reply,
    json_reply,
    not_json_type,
    read_limited,
)
from exporter.events import ALERT, ShoppingEvent
from exporter.keys import INGESTOR, SETTINGS
from exporter.model import epoch

MAX_ALERTS = 500
_KEPT_LABELS = ("alertname", "severity")


def _when(value: Any, fallback: float) -> float:
    if isinstance(value, str):
        try:
            return epoch(datetime.fromisoformat(value))
        except ValueError:
            pass
    return fallback


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _alert_event(alert: dict[str, Any], now: float) -> ShoppingEvent:
    labels = _mapping(alert.get("labels"))
    notes = _mapping(alert.get("annotations"))
    props: dict[str, Any] = {k: str(labels[k])[:64] for k in _KEPT_LABELS if k in labels}
    props["status"] = str(alert.get("status", "firing"))[:16]
    summary = notes.get("summary") or labels.get("alertname") or "alert"
    props["summary"] = f"{props['status']}: {str(summary)[:200]}"
    at = _when(alert.get("startsAt") if props["status"] == "firing" else alert.get("endsAt"), now)
    return ShoppingEvent(ALERT, "", "", at, props)


async def handle_alerts(request: web.Request) -> web.Response:
    """Alertmanager's webhook payload (version 4): each alert becomes an `alert` event."""
    ingestor = request.app[INGESTOR]
    refused = not_json_type(request)
    if refused is not None:
        return refused
    try:
        raw = await read_limited(request, request.app[SETTINGS].max_body_bytes)
    except BodyTooLargeError:
        return error_reply(413, "too_large", "body is over the limit")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error_reply(400, "not_json", "body is not valid JSON")
    alerts = body.get("alerts") if isinstance(body, dict) else None
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        return error_reply(422, "invalid", "alerts: must be an array of objects")
    if len(alerts) > MAX_ALERTS:
        return error_reply(413, "batch_too_large", f"alerts: at most {MAX_ALERTS}")
    now = ingestor.clock()
    happened = [_alert_event(alert, now) for alert in alerts]
    ingestor.store.count_events(happened, now)
    ingestor.record(happened)
    return json_reply({"accepted": len(happened)})


def setup_alerts(app: web.Application) -> None:
    app.router.add_post("/api/alerts", handle_alerts)
