"""Every HTTP error answers JSON: `{"error": code, "message": ...}` with its status and headers.

Handlers reply with `error_reply` themselves; this middleware catches what aiohttp raises on its
own (no route: 404, wrong method: 405, a body over the limit: 413, ...) and anything a handler
raises, so no error reaches a client as plain text or HTML.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from exporter.api.replies import error_reply

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}
KEPT_HEADERS: Final = ("Allow", "Retry-After", "WWW-Authenticate", "Connection")
"""Headers of the raised error that tell the client what to do next: they stay."""


def _message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "nothing here: see /api/openapi.json for the paths this service answers"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{request.method} is not allowed here; allowed: {allowed}"
    if exc.text and exc.text != f"{exc.status}: {exc.reason}":
        return exc.text  # a message given where the error was raised
    return exc.reason.lower()


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn raised HTTP errors (and unexpected failures) into JSON replies."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {name: exc.headers[name] for name in KEPT_HEADERS if name in exc.headers}
        if exc.content_type == "application/json" and exc.text:
            return web.Response(
                text=exc.text, status=exc.status, content_type="application/json", headers=headers
            )
        code = CODES.get(exc.status, "client_error" if exc.status < 500 else "server_error")
        return error_reply(exc.status, code, _message(request, exc), headers=headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("failed to answer %s %s", request.method, request.path)
        return error_reply(500, "internal", "the service failed to answer; the failure is logged")
