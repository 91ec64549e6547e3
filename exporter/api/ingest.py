"""POST /api/metrics and /api/events: shopper updates and explicit events over HTTP."""

from __future__ import annotations

from aiohttp import web

from exporter.api.replies import (
    BodyTooLargeError,
    error_reply,
    json_reply,
    not_json_type,
    read_limited,
)
from exporter.keys import INGESTOR, SETTINGS
from exporter.model import BodyError

_STATUS_BY_REASON = {"batch_too_large": 413, "invalid": 422, "not_json": 400}
FULL_RETRY = "60"
"""Retry-After (seconds) when a body is refused because the store is full of online shoppers."""


async def _ingest(request: web.Request, kind: str) -> web.Response:
    ingestor = request.app[INGESTOR]
    refused = not_json_type(request)
    if refused is not None:
        ingestor.refuse("http", "not_json")
        return refused
    limit = request.app[SETTINGS].max_body_bytes
    try:
        raw = await read_limited(request, limit)
    except BodyTooLargeError:
        ingestor.refuse("http", "too_large")
        # Not reading the rest: close so the client cannot keep streaming into the socket.
        return error_reply(
            413,
            "too_large",
            f"body is over the {limit}-byte limit",
            headers={"Connection": "close"},
        )
    try:
        report = ingestor.ingest_bytes(raw, "http", kind)
    except BodyError as err:
        return error_reply(_STATUS_BY_REASON.get(err.reason, 400), err.reason, str(err))
    if report.out_of_room:
        # Room comes back as shoppers go offline: at the latest one active window from now.
        return json_reply(report.to_json(), status=429, headers={"Retry-After": FULL_RETRY})
    return json_reply(report.to_json(), status=422 if report.all_rejected else 200)


async def handle_metrics(request: web.Request) -> web.Response:
    """Shopper updates: one object, an array, or `{"metrics": [...], "events": [...]}`."""
    return await _ingest(request, "metric")


async def handle_events(request: web.Request) -> web.Response:
    """Explicit shopping events: one object, an array, or the envelope."""
    return await _ingest(request, "event")


def setup_ingest(app: web.Application) -> None:
    app.router.add_post("/api/metrics", handle_metrics)
    app.router.add_post("/api/events", handle_events)
