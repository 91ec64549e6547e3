"""GET /api/stream: live frames as Server-Sent Events, resumable with Last-Event-ID.

One writer serves every open stream: on each publish it hands each reader its frames, encoded
once per batch for all readers with the same filter and written straight to the connection.
A reader whose connection does not drain is skipped (never awaited), so it falls behind on its
own and loses its oldest frames (counted), while ingestion and the other readers go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from exporter.api.live import FilterError, FrameFilter, LiveFeed, parse_event_id, split_kinds
from exporter.api.replies import error_reply, streams_full
from exporter.api.websocket import setup_websocket
from exporter.eventlog import Frame, Hub
from exporter.keys import EVENT_LOG, HUB, SETTINGS, STATUS, STREAMS

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 15.0
"""Proxies close idle connections after 30–60 s; a comment this often keeps the stream open."""
RETRY_MS = 5000
"""How long a browser waits before reconnecting (the brief's five seconds)."""
WRITE_BUFFER_LIMIT = 256 * 1024
"""Bytes queued for a reader beyond which it gets nothing more until its connection drains."""
_KEEP_ALIVE = b": keep-alive\n\n"


def sse_bytes(frame: Frame) -> bytes:
    """One frame on the wire, encoded once for all readers. JSON data holds no raw newline, so
    one `data:` line suffices."""
    wire = frame.encoded.get("sse")
    if wire is None:
        wire = frame.encoded["sse"] = (
            f"id: {frame.id}\nevent: {frame.kind}\ndata: {frame.data}\n\n".encode()
        )
    return wire


def http_chunk(body: bytes) -> bytes:
    """`body` as one chunk of a chunked HTTP/1.1 response."""
    return b"%x\r\n%b\r\n" % (len(body), body)


class SharedBatches:
    """Encoded batches, shared between readers: those served in the same pass with the same
    filter get the same frames, so the batch is joined (and chunk-framed) once.

    A batch is recognised by its filter, its first and last frame (held, so their identity is
    not reused while cached) and its length: frames are contiguous hub positions.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._batches: dict[tuple[FrameFilter, int, int, int], tuple[Frame, Frame, bytes]] = {}

    def encode(self, wanted: FrameFilter, frames: list[Frame]) -> bytes:
        first, last = frames[0], frames[-1]
        key = (wanted, id(first), id(last), len(frames))
        hit = self._batches.get(key)
        if hit is not None and hit[0] is first and hit[1] is last:
            return hit[2]
        wire = http_chunk(b"".join(map(sse_bytes, frames)))
        if len(self._batches) >= self.size:
            self._batches.clear()
        self._batches[key] = (first, last, wire)
        return wire


@dataclass(eq=False)
class SseReader:
    """One open stream as the writer sees it."""

    feed: LiveFeed
    transport: asyncio.Transport
    last_write: float
    done: asyncio.Future[None]
    """Resolved when the stream ends: the reader left, or the service is stopping."""


class SseWriter:
    """Serves every open stream in one pass per publish (and once a second for keep-alives)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.readers: set[SseReader] = set()
        self.batches = SharedBatches()

    def add(self, reader: SseReader) -> None:
        """Start serving a reader (at once: it may have a replay waiting)."""
        if self.hub.closed:
            self.remove(reader)
            return
        self.readers.add(reader)
        self._serve(reader, asyncio.get_running_loop().time())

    def remove(self, reader: SseReader) -> None:
        self.readers.discard(reader)
        if not reader.done.done():
            reader.done.set_result(None)

    async def run(self) -> None:
        """Until the hub shuts down: wait for frames, then serve every reader."""
        clock = asyncio.get_running_loop().time
        while not self.hub.closed:
            await self.hub.changed(1.0)
            now = clock()
            for reader in list(self.readers):
                try:
                    self._serve(reader, now)
                except Exception:  # one broken stream must not stop the others
                    log.exception("SSE stream failed; closing it")
                    self.remove(reader)
        for reader in list(self.readers):
            self.remove(reader)

    def _serve(self, reader: SseReader, now: float) -> None:
        transport = reader.transport
        if reader.feed.closed or transport.is_closing():
            self.remove(reader)
            return
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            return  # not draining: its frames wait in the hub, the oldest fall off (counted)
        if reader.feed.waiting:
            frames = reader.feed.take()
            if frames:
                if reader.feed.shared:
                    transport.write(self.batches.encode(reader.feed.wanted, frames))
                else:
                    transport.write(http_chunk(b"".join(map(sse_bytes, frames))))
                reader.last_write = now
                return
        if now - reader.last_write >= KEEP_ALIVE_SECONDS:
            transport.write(http_chunk(_KEEP_ALIVE))
            reader.last_write = now


SSE_WRITER = web.AppKey("sse_writer", SseWriter)


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
    feed = LiveFeed(app[HUB], app[EVENT_LOG], wanted, last_id, app[SETTINGS].stream_backlog)
    streams, status, writer = app[STREAMS], app[STATUS], app[SSE_WRITER]
    streams.add(response)
    status.streams["sse"] += 1
    loop = asyncio.get_running_loop()
    reader = SseReader(feed, transport, loop.time(), loop.create_future())
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


async def _run_writer(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[SSE_WRITER].run(), name="sse writer")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup_stream(app: web.Application) -> None:
    """Add the SSE stream and the WebSocket endpoint."""
    app[SSE_WRITER] = SseWriter(app[HUB])
    app.cleanup_ctx.append(_run_writer)
    app.router.add_get("/api/stream", handle_stream)
    setup_websocket(app)
