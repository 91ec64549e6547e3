"""GET /api/stream: live frames as Server-Sent Events, resumable with Last-Event-ID.

The frames are written by the one live writer (exporter.api.fanout), as HTTP chunks of
`id:`/`event:`/`data:` records; this module opens and closes the streams.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from exporter.api.fanout import LIVE_WRITER, LiveReader, Wire, setup_fanout
from exporter.api.live import FilterError, FrameFilter, LiveFeed, parse_event_id, split_kinds
from exporter.api.replies import error_reply, streams_full
from exporter.api.websocket import setup_websocket
from exporter.eventlog import Frame
from exporter.keys import EVENT_LOG, HUB, INGESTOR, SETTINGS, STATUS, STREAMS

RETRY_MS = 5000
"""How long a browser waits before reconnecting (the brief's five seconds)."""


def sse_bytes(frame: Frame) -> bytes:
    """One frame on the wire, encoded once for all readers."""
    return frame.encoded("sse", _sse_encoding)


def _sse_encoding(frame: Frame) -> bytes:
    # JSON data holds no raw newline, so one `data:` line suffices.
    return f"id: {frame.id}\nevent: {frame.kind}\ndata: {frame.data}\n\n".encode()


def http_chunk(body: bytes) -> bytes:
    """`body` as one chunk of a chunked HTTP/1.1 response."""
    return b"%x\r\n%b\r\n" % (len(body), body)


SSE = Wire("sse", sse_bytes, http_chunk, keep_alive=http_chunk(b": keep-alive\n\n"))


async def handle_stream(request: web.Request) -> web.StreamResponse:
    """Stream user_metric, event and summary frames; filters `types` and `user`; resume with
    the Last-Event-ID header or `?lastEventId=`."""
    app = request.app
    full = streams_full(request)
    if full is not None:
        return full
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
    # The writer frames its batches as HTTP chunks itself; HTTP/1.0 has no chunks.
    if request.version < (1, 1):
        return error_reply(505, "http_version", "the stream needs HTTP/1.1")
    response.enable_chunked_encoding()
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        return response
    feed = LiveFeed(
        app[HUB],
        app[EVENT_LOG],
        wanted,
        last_id,
        app[SETTINGS].stream_backlog,
        app[INGESTOR].states_since,
    )
    streams, status, writer = app[STREAMS], app[STATUS], app[LIVE_WRITER]
    streams.add(response)
    status.streams["sse"] += 1
    loop = asyncio.get_running_loop()
    reader = LiveReader(feed, transport, SSE, loop.time(), loop.create_future())
    try:
        # Also sends the headers, so what the writer adds follows them on the wire.
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        writer.add(reader)
        await reader.done
    except ConnectionResetError:
        pass  # the reader went away
    finally:
        writer.remove(reader)
        feed.close()
        streams.discard(response)
        status.streams["sse"] -= 1
    return response


def setup_stream(app: web.Application) -> None:
    """Add the live writer, the SSE stream and the WebSocket endpoint."""
    setup_fanout(app, app[HUB])
    app.router.add_get("/api/stream", handle_stream)
    setup_websocket(app)
