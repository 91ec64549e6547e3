"""Pages on other origins: CORS preflights and headers for the allowed ones, foreign writes refused.

Browsers send `Origin` on cross-origin requests (and on same-origin writes). An origin in
`--cors-origins` gets CORS headers on the push, read, stream and client endpoints; any other
foreign origin gets none, and its writes and `/ws` connections are refused with 403 — a browser
sends some cross-origin POSTs (plain text, forms) without asking first, so headers alone would
not keep them out. Requests without `Origin` (servers, curl, Prometheus) are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from exporter.api.auth import WRITE_METHODS, Handler
from exporter.api.replies import error_reply
from exporter.keys import SETTINGS

SCOPED_PREFIXES = ("/api/", "/client/")
"""Paths a page on an allowed origin may call: pushes, reads, streams and the client itself."""
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, X-Shopper-Shard"
EXPOSE_HEADERS = "Retry-After, WWW-Authenticate"
PREFLIGHT_MAX_AGE = "600"
"""Seconds a browser may reuse a preflight answer: one OPTIONS per ten minutes, not per push."""


class OriginPolicy:
    """Which web origins may use the service from their pages."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(origins)

    def allows(self, origin: str) -> bool:
        return self.any or origin.lower().rstrip("/") in self.origins

    def allow_origin_value(self, origin: str) -> str:
        return "*" if self.any else origin


def in_scope(path: str) -> bool:
    return path.startswith(SCOPED_PREFIXES)


def same_origin(request: web.Request, origin: str) -> bool:
    """Whether `origin` names this service (as the browser reached it, or a proxy in front)."""
    netloc = urlsplit(origin).netloc.lower()
    if not netloc:
        return False  # "null": sandboxed frames, files
    hosts = {request.host.lower(), request.headers.get("X-Forwarded-Host", "").lower()}
    return netloc in hosts


def _preflight(origin: str, policy: OriginPolicy) -> web.Response:
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": policy.allow_origin_value(origin),
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            "Vary": "Origin",
        },
    )


def _foreign(origin: str) -> web.Response:
    return error_reply(
        403,
        "origin_not_allowed",
        f"pages from {origin} may not use this service; "
        "start it with --cors-origins listing that origin to allow them",
    )


def setup_cors(app: web.Application) -> None:
    """Answer preflights, refuse foreign writes, and add CORS headers to allowed replies.

    Installed first, so it also wraps the token check: a preflight carries no token, and a
    refusal (401, 4xx) keeps its CORS headers so the page can read why.
    """
    policy = OriginPolicy(app[SETTINGS].cors_origins)

    @web.middleware
    async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        allowed = policy.allows(origin) or same_origin(request, origin)
        if (
            request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
            and in_scope(request.path)
        ):
            return _preflight(origin, policy) if allowed else _foreign(origin)
        if not allowed and (request.method in WRITE_METHODS or request.path == "/ws"):
            return _foreign(origin)
        return await handler(request)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        # A signal rather than the middleware: streams send their headers before they return.
        if not in_scope(request.path) or "Access-Control-Allow-Origin" in response.headers:
            return
        if policy.origins:
            response.headers.add("Vary", "Origin")  # the reply depends on who asks
        origin = request.headers.get("Origin")
        if origin is not None and policy.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = policy.allow_origin_value(origin)
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS

    app.middlewares.append(check_origin)
    app.on_response_prepare.append(add_headers)
