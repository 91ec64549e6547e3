"""The built-in live page, its static assets, and the liveness and readiness probes."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from exporter.api.replies import json_reply
from exporter.keys import STATUS

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

LINKS = (
    ("/metrics", "Prometheus metrics"),
    ("/api/summary", "Summary (the key metrics)"),
    ("/api/shoppers", "Shoppers"),
    ("/api/stream", "Live stream (SSE)"),
    ("/api/openapi.json", "OpenAPI description"),
    ("/loki/api/v1/labels", "Loki-compatible event log"),
    ("/healthz", "Liveness"),
    ("/readyz", "Readiness"),
)


def _landing() -> str:
    items = "".join(
        f'<li><a href="{href}">{text}</a> <code>{href}</code></li>' for href, text in LINKS
    )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Live Shopper Metrics</title>"
        f"<h1>Live Shopper Metrics</h1><ul>{items}</ul></html>"
    )


async def handle_index(request: web.Request) -> web.StreamResponse:
    """The live page (or a plain list of endpoints when the page is not installed)."""
    page = WEB_DIR / "index.html"
    if page.is_file():
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})
    return web.Response(text=_landing(), content_type="text/html")


async def handle_healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return json_reply({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    """Readiness: startup finished and background tasks run."""
    if request.app[STATUS].ready:
        return json_reply({"status": "ready"})
    body = {"status": "starting", "error": "starting", "message": "the service is starting"}
    return json_reply(body, status=503, headers={"Retry-After": "1"})


def setup_pages(app: web.Application) -> None:
    app.router.add_get("/", handle_index)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    if WEB_DIR.is_dir():
        app.router.add_static("/static/", WEB_DIR, append_version=False)
