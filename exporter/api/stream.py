"""GET /api/stream: live frames as Server-Sent Events, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio

from aiohttp import web

from exporter.api.live import FilterError, FrameFilter, LiveFeed, parse_event_id, split_kinds
from exporter.api.replies import error_reply
from exporter.api.websocket import setup_websocket
from exporter.eventlog import Frame
from exporter.keys import EVENT_LOG, HUB, SETTINGS, STATUS, STREAMS

KEEP_ALIVE_SECONDS = 15.0
"""Proxies close idle connections after 30–60 s; a comment this often keeps the stream open."""
RETRY_MS = 5000
"""How long a browser waits before reconnecting (the brief's five seconds)."""


def sse_bytes(frame: Frame) -> bytes:
    """One frame on the wire. JSON data holds no raw newline, so one `data:` line suffices."""
    return f"id: {frame.id}\nevent: {frame.kind}\ndata: {frame.data}\n\n".encode()


async def handle_stream(request: web.Request) -> web.StreamResponse:
    """Stream user_metric, event and summary frames; filters `types` and `user`; resume with
    the Last-Event-ID header or `?lastEventId=`."""
    app = request.app
    try:
        wanted = FrameFilter.parse(
            split_kinds(request.query.get("types")), request.query.get("user")
        )
    except FilterError as err:
        return error_reply(400, "invalid", str(err))
    last_id = parse_event_id(request.headers.get("Last-Event-ID", request.query.get("lastEventId")))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx would otherwise hold frames back
        }
    )
    await response.prepare(request)
    feed = LiveFeed(app[HUB], app[EVENT_LOG], wanted, last_id, app[SETTINGS].stream_backlog)
    streams, status = app[STREAMS], app[STATUS]
    streams.add(response)
    status.streams["sse"] += 1
    clock = asyncio.get_running_loop().time
    try:
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        last_write = clock()
        while True:
            frames = await feed.next_batch(KEEP_ALIVE_SECONDS)
            if feed.closed:
                break
            if frames:
                await response.write(b"".join(map(sse_bytes, frames)))
            elif clock() - last_write >= KEEP_ALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")
            else:
                continue  # woken by frames this subscriber filters out
            last_write = clock()
    except ConnectionResetError:
        pass  # the subscriber went away
    finally:
        feed.close()
        streams.discard(response)
        status.streams["sse"] -= 1
    return response


def setup_stream(app: web.Application) -> None:
    """Add the SSE stream and the WebSocket endpoint."""
    app.router.add_get("/api/stream", handle_stream)
    setup_websocket(app)
