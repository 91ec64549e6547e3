"""Start and stop the in-process demo generator (the page's Start Demo button)."""

from __future__ import annotations

import orjson
from aiohttp import web

from exporter.api.replies import error_reply, json_reply
from exporter.keys import DEMO

MAX_DEMO_SHOPPERS = 5000


async def handle_state(request: web.Request) -> web.Response:
    """Whether the demo may be controlled, whether it runs, and with how many shoppers."""
    return json_reply(request.app[DEMO].state())


async def handle_start(request: web.Request) -> web.Response:
    """Start the demo; optional body `{"shoppers": n}` (1 to 5000)."""
    demo = request.app[DEMO]
    if not demo.enabled:
        return error_reply(403, "disabled", "demo control is disabled on this service")
    shoppers: int | None = None
    raw = await request.content.read(4096)
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error_reply(400, "not_json", "body is not valid JSON")
        value = body.get("shoppers") if isinstance(body, dict) else None
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                return error_reply(422, "invalid", "shoppers: must be an integer")
            if not 1 <= value <= MAX_DEMO_SHOPPERS:
                return error_reply(422, "invalid", f"shoppers: must be 1 to {MAX_DEMO_SHOPPERS}")
            shoppers = value
    demo.start(shoppers)
    return json_reply(demo.state())


async def handle_stop(request: web.Request) -> web.Response:
    """Stop the demo and sign its shoppers out."""
    demo = request.app[DEMO]
    if not demo.enabled:
        return error_reply(403, "disabled", "demo control is disabled on this service")
    await demo.stop()
    return json_reply(demo.state())


def setup_demo(app: web.Application) -> None:
    app.router.add_get("/api/demo", handle_state)
    app.router.add_post("/api/demo/start", handle_start)
    app.router.add_post("/api/demo/stop", handle_stop)
