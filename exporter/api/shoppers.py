"""Read and erase shopper state: /api/shoppers, a shopper's timeline, and /api/summary."""

from __future__ import annotations

from aiohttp import web

from exporter.api.replies import error_reply, json_reply
from exporter.keys import EVENT_LOG, INGESTOR, STORE

MAX_LIMIT = 1000


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit", str(default))
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "invalid", "field": "limit", "message": "must be an integer"}',
            content_type="application/json",
        ) from None
    return max(1, min(value, MAX_LIMIT))


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in {"1", "true", "yes", "on"}


async def handle_list(request: web.Request) -> web.Response:
    """Shoppers, newest update first; `?online=true` for online only, `?limit=N` (max 1000)."""
    store = request.app[STORE]
    online_only = _flag(request, "online")
    shoppers = store.newest(online_only=online_only, limit=_limit(request, 100))
    total = store.online_count() if online_only else len(store)
    return json_reply({"shoppers": [store.view(s) for s in shoppers], "total": total})


async def handle_get(request: web.Request) -> web.Response:
    """One shopper's current state."""
    store = request.app[STORE]
    shopper = store.get(request.app[INGESTOR].shopper_key(request.match_info["user_id"]))
    if shopper is None:
        return error_reply(404, "not_found", "no shopper with this userId")
    return json_reply(store.view(shopper))


async def handle_delete(request: web.Request) -> web.Response:
    """Erase a shopper: their state, and their identity in the held events."""
    user_id = request.app[INGESTOR].shopper_key(request.match_info["user_id"])
    if not request.app[STORE].erase(user_id):
        return error_reply(404, "not_found", "no shopper with this userId")
    request.app[EVENT_LOG].redact(user_id)
    return web.Response(status=204)


async def handle_timeline(request: web.Request) -> web.Response:
    """A shopper's recent events, newest first (what the live page shows on click)."""
    user_id = request.app[INGESTOR].shopper_key(request.match_info["user_id"])
    log = request.app[EVENT_LOG]
    limit = _limit(request, 50)
    found: list[str] = []
    for event_id in range(log.last_id, log.first_id - 1, -1):
        logged = log.get(event_id)
        if logged is not None and logged.event.user_id == user_id:
            found.append(f'{{"id":{logged.id},{logged.line[1:]}')
            if len(found) >= limit:
                break
    body = '{"events":[' + ",".join(found) + "]}"
    return web.Response(text=body, content_type="application/json")


async def handle_summary(request: web.Request) -> web.Response:
    """The key metrics of the brief."""
    ingestor = request.app[INGESTOR]
    return json_reply(request.app[STORE].summary(ingestor.clock()))


def setup_shoppers(app: web.Application) -> None:
    app.router.add_get("/api/shoppers", handle_list)
    app.router.add_get("/api/shoppers/{user_id}", handle_get)
    app.router.add_delete("/api/shoppers/{user_id}", handle_delete)
    app.router.add_get("/api/shoppers/{user_id}/events", handle_timeline)
    app.router.add_get("/api/summary", handle_summary)
