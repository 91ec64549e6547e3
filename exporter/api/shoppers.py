"""Read and erase shopper state: /api/shoppers, a shopper's timeline, /api/summary, /api/history."""

from __future__ import annotations

from aiohttp import web

from exporter.api.replies import error_reply, json_reply
from exporter.finder import QueryError, ShopperQuery
from exporter.history import SECONDS
from exporter.keys import EVENT_LOG, FINDER, HISTORY, INGESTOR, STORE

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


def _online(request: web.Request) -> bool | None:
    raw = request.query.get("online", "").lower()
    if raw in {"", "any", "all"}:
        return None
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise QueryError("online", "true, false or absent")


async def handle_list(request: web.Request) -> web.Response:
    """Shoppers matching `q` (id, name or location), `online` and `activity`, one page in
    `sort` order (recent, cart, session); `total` counts every match, `nextCursor` goes on."""
    store = request.app[STORE]
    params = request.query
    try:
        query = ShopperQuery(
            q=params.get("q", ""),
            online=_online(request),
            activity=params.get("activity") or None,
            sort=params.get("sort", "recent"),
            limit=_limit(request, 100),
            cursor=params.get("cursor") or None,
        )
        page = request.app[FINDER].page(query)
    except QueryError as err:
        return json_reply(
            {"error": "invalid", "field": err.field, "message": err.message}, status=400
        )
    return json_reply(
        {
            "shoppers": [store.view(s) for s in page.shoppers],
            "total": page.total,
            "nextCursor": page.next_cursor,
        }
    )


async def handle_history(request: web.Request) -> web.Response:
    """The page's series, one sample a second, for the last `window` seconds (at most 3600)."""
    raw = request.query.get("window", "300")
    try:
        window = int(raw)
    except ValueError:
        window = 0
    if not 1 <= window <= SECONDS:
        return json_reply(
            {
                "error": "invalid",
                "field": "window",
                "message": f"seconds, an integer from 1 to {SECONDS}",
            },
            status=400,
        )
    body = request.app[HISTORY].window_json(window)
    return web.Response(body=body, content_type="application/json")


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
    """The key metrics of the brief, and the shard of the shoppers they cover (null: all)."""
    return json_reply(request.app[INGESTOR].summary())


def setup_shoppers(app: web.Application) -> None:
    app.router.add_get("/api/shoppers", handle_list)
    app.router.add_get("/api/shoppers/{user_id}", handle_get)
    app.router.add_delete("/api/shoppers/{user_id}", handle_delete)
    app.router.add_get("/api/shoppers/{user_id}/events", handle_timeline)
    app.router.add_get("/api/summary", handle_summary)
    app.router.add_get("/api/history", handle_history)
