"""Start and stop the in-process demo generator (the page's Start Demo button)."""

from __future__ import annotations

import orjson
from aiohttp import web

from exporter.api.replies import error_reply, json_reply
from exporter.keys import DEMO
from exporter.settings import MAX_DEMO_SPEED, MIN_DEMO_SPEED

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


async def handle_announce(request: web.Request) -> web.Response:
    """A standalone demo says it pushes here: body `{"speed": n, "shoppers": n}`."""
    raw = await request.content.read(4096)
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        return error_reply(400, "not_json", "body is not valid JSON")
    if not isinstance(body, dict):
        return error_reply(422, "invalid", "body: must be a JSON object")
    speed, shoppers = body.get("speed", 1), body.get("shoppers", 0)
    if not _number(speed) or not MIN_DEMO_SPEED <= speed <= MAX_DEMO_SPEED:
        return error_reply(
            422, "invalid", f"speed: must be a number from {MIN_DEMO_SPEED:g} to {MAX_DEMO_SPEED:g}"
        )
    if not _number(shoppers) or not 0 <= shoppers <= 10**9 or shoppers != int(shoppers):
        return error_reply(422, "invalid", "shoppers: must be a whole number from 0")
    request.app[DEMO].announce(float(speed), int(shoppers))
    return json_reply(request.app[DEMO].state())


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
    app.router.add_post("/api/demo/announce", handle_announce)
