"""Optional bearer tokens: one for writes (pushes, erasure, demo control), one for reads.

A request presents a token as `Authorization: Bearer <token>`, as `?access_token=<token>` (for
EventSource and WebSocket clients that cannot set headers), or as the `shopper_token` cookie that
the live page sets when opened with `/?token=<token>`. The write token also grants reads, and
alone opens the operator's /debug/ endpoints.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.api.replies import json_reply
from exporter.keys import SETTINGS

COOKIE = "shopper_token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Always open: probes, the page and its assets, the browser client, the API description.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/ready", "/", "/api/openapi.json"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: GETs that push data in: WebSocket ingest.
WRITE_PATHS = frozenset({"/ws"})
#: Operator endpoints: they reveal the service's insides and pause it while they look.
ADMIN_PREFIX = "/debug/"


def presented_token(request: web.Request) -> str | None:
    """The token the request carries, wherever it carries it."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("access_token") or request.cookies.get(COOKIE)


def _matches(given: str | None, expected: str | None) -> bool:
    if given is None or expected is None:
        return False
    # Constant time, so response timing does not reveal how much of a guess was right.
    return hmac.compare_digest(given.encode(), expected.encode())


def required_scope(request: web.Request, protect_metrics: bool) -> str | None:
    """ "write", "read", or None (open) for this request."""
    path = request.path
    if path in OPEN_PATHS or path.startswith(("/static/", "/client/")):
        return None
    if path == "/metrics" and not protect_metrics:
        return None
    if request.method in WRITE_METHODS or path in WRITE_PATHS or path.startswith(ADMIN_PREFIX):
        return "write"
    return "read"


def _refuse(scope: str) -> web.Response:
    reply = json_reply(
        {"error": "unauthorized", "message": f"a valid {scope} token is required"}, status=401
    )
    reply.headers["WWW-Authenticate"] = 'Bearer realm="shopper-exporter"'
    return reply


@web.middleware
async def require_tokens(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the token a request needs, if the service was given tokens."""
    settings = request.app[SETTINGS]
    scope = required_scope(request, settings.protect_metrics)
    if scope == "write":
        accepted: tuple[str | None, ...] = (settings.write_token,)
    elif scope == "read":
        accepted = (settings.read_token, settings.write_token)
    else:
        accepted = ()
    # A scope whose own token is unset is open (e.g. only writes protected).
    if accepted and accepted[0] is not None:
        given = presented_token(request)
        if not any(_matches(given, token) for token in accepted):
            return _refuse(scope or "")
    response = await handler(request)
    page_token = request.query.get("token") if request.path == "/" else None
    if page_token and any(
        _matches(page_token, token) for token in (settings.read_token, settings.write_token)
    ):
        # The page's fetch and EventSource calls then carry the token without seeing it.
        response.set_cookie(COOKIE, page_token, httponly=True, samesite="Strict")
    return response


def setup_auth(app: web.Application) -> None:
    """Install the token check when any token is configured."""
    settings = app[SETTINGS]
    if settings.read_token or settings.write_token:
        app.middlewares.append(require_tokens)
