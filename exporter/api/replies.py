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


class BodyTooLargeError(Exception):
    """The request body is over the configured limit."""


BODY_TIMEOUT = 30.0
"""Seconds a client may take to send a body: a slow sender does not hold a handler forever."""


async def read_limited(request: web.Request, limit: int, within: float = BODY_TIMEOUT) -> bytes:
    """Read a body of at most `limit` bytes; refuse larger ones without reading them whole.

    Raises BodyTooLargeError past the limit, and answers 408 when the body takes too long.
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
            text='{"error": "timeout", "message": "the body was not sent in time"}',
            content_type="application/json",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)
