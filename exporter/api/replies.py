"""Reply helpers shared by the HTTP handlers: JSON bodies and bounded body reading."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from exporter.keys import SETTINGS, STREAMS


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_reply(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A whole-request error: `{"error": reason, "message": ...}`."""
    return json_reply({"error": reason, "message": message}, status=status, headers=headers)


def streams_full(request: web.Request) -> web.Response | None:
    """A 503 with Retry-After when the service already holds its cap of live connections."""
    cap = request.app[SETTINGS].max_streams
    if len(request.app[STREAMS]) < cap:
        return None
    return error_reply(
        503,
        "too_many_streams",
        f"the service holds its limit of {cap} live connections; retry later",
        headers={"Retry-After": "5"},
    )


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def not_json_type(request: web.Request) -> web.Response | None:
    """A 415 for a form body (never JSON); any other type is read as JSON, so `sendBeacon`'s
    text/plain and a missing type work."""
    if request.content_type not in FORM_TYPES:
        return None
    return error_reply(
        415,
        "unsupported_media_type",
        f"{request.content_type} bodies are not read: send JSON (Content-Type: application/json)",
    )


class BodyTooLargeError(Exception):
    """The request body is over the configured limit."""


async def read_limited(request: web.Request, limit: int, within: float | None = None) -> bytes:
    """Read a body of at most `limit` bytes; refuse larger ones without reading them whole.

    Raises BodyTooLargeError past the limit, and answers 408 when the body takes longer than
    `within` seconds (default: --body-timeout), so a slow sender cannot hold a handler forever.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLargeError
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (most small bodies do): nothing to wait for.
        body = content.read_nowait()
        if len(body) > limit:
            raise BodyTooLargeError
        return body
    if within is None:
        within = request.app[SETTINGS].body_timeout
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise BodyTooLargeError
                chunks.append(chunk)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the body was not sent within {within:g} s (--body-timeout)",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)
