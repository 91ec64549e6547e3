"""One writer for every live reader, SSE and WebSocket alike.

On each publish the writer hands each reader its frames, encoded once per batch for all readers
with the same filter and wire, and written straight to the connection in one write (one system
call per reader and wake, not one per frame). A reader whose connection does not drain is
skipped (never awaited), so it falls behind on its own and loses its oldest frames (counted),
while ingestion and the other readers go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from exporter.api.live import FrameFilter, LiveFeed
from exporter.eventlog import Frame, Hub

log = logging.getLogger(__name__)

WRITE_BUFFER_LIMIT = 256 * 1024
"""Bytes queued for a reader beyond which it gets nothing more until its connection drains."""
SHARED_BATCH_BYTES = 8 * 1024 * 1024
"""Encoded batches kept for other readers of the same pass: a few passes' worth at 5k updates/s."""


@dataclass(frozen=True, slots=True)
class Wire:
    """How frames go onto one kind of connection."""

    name: str
    frame: Callable[[Frame], bytes]
    """One frame's bytes (cached on the frame: many readers share it)."""
    batch: Callable[[bytes], bytes]
    """Joined frames → what is written (e.g. framed as one HTTP chunk)."""
    keep_alive: bytes | None = None
    """Written after KEEP_ALIVE_SECONDS without frames, if the wire needs it."""


REPLAY_PACE = 0.01
"""Seconds between passes while a reader still has a resume replay to take."""

KEEP_ALIVE_SECONDS = 15.0
"""Proxies close idle connections after 30–60 s; a comment this often keeps a stream open."""


class SharedBatches:
    """Encoded batches, shared between readers: those served in the same pass with the same
    filter and wire get the same frames, so the batch is joined (and framed) once.

    A batch is recognised by its wire, filter, first and last frame (held, so their identity is
    not reused while cached) and its length: frames are contiguous hub positions. The batches
    held are bounded by their bytes, oldest out first: under a steady stream a count bound let
    a few hundred large batches pile up and leave together (a sawtooth of 150 MiB at 5k
    updates/s), while only the last pass's batches are ever asked for again.
    """

    def __init__(self, max_bytes: int = SHARED_BATCH_BYTES) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._batches: dict[tuple[str, FrameFilter, int, int, int], tuple[Frame, Frame, bytes]] = {}

    def __len__(self) -> int:
        return len(self._batches)

    def encode(self, wire: Wire, wanted: FrameFilter, frames: list[Frame]) -> bytes:
        first, last = frames[0], frames[-1]
        key = (wire.name, wanted, id(first), id(last), len(frames))
        hit = self._batches.get(key)
        if hit is not None and hit[0] is first and hit[1] is last:
            return hit[2]
        data = encode_batch(wire, frames)
        if hit is not None:  # an id reused by a newer frame: the old entry is stale
            self._forget(key)
        self._batches[key] = (first, last, data)
        self.held_bytes += len(data)
        while self.held_bytes > self.max_bytes and len(self._batches) > 1:
            self._forget(next(iter(self._batches)))
        return data

    def _forget(self, key: tuple[str, FrameFilter, int, int, int]) -> None:
        self.held_bytes -= len(self._batches.pop(key)[2])


def encode_batch(wire: Wire, frames: list[Frame]) -> bytes:
    """Frames as written on `wire`, in one piece."""
    return wire.batch(b"".join(map(wire.frame, frames)))


@dataclass(eq=False)
class LiveReader:
    """One open stream as the writer sees it."""

    feed: LiveFeed
    transport: asyncio.Transport
    wire: Wire
    last_write: float
    done: asyncio.Future[None]
    """Resolved when the writer stops serving it: the reader left, or the service is stopping."""
    gone: Callable[[], bool] = lambda: False
    """Whether the connection ended at its protocol's level (e.g. a WebSocket close began)."""


class LiveWriter:
    """Serves every open stream in one pass per publish (and once a second for keep-alives)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.readers: set[LiveReader] = set()
        self.batches = SharedBatches()

    def add(self, reader: LiveReader) -> None:
        """Start serving a reader (at once: it may have a replay waiting)."""
        if self.hub.closed:
            self.remove(reader)
            return
        self.readers.add(reader)
        self._serve(reader, asyncio.get_running_loop().time())

    def remove(self, reader: LiveReader) -> None:
        self.readers.discard(reader)
        if not reader.done.done():
            reader.done.set_result(None)

    async def run(self) -> None:
        """Until the hub shuts down: wait for frames, then serve every reader."""
        clock = asyncio.get_running_loop().time
        while not self.hub.closed:
            # A resume replay goes out in pieces, one per pass, as its reader's connection drains.
            replaying = any(reader.feed.replaying for reader in self.readers)
            await self.hub.changed(REPLAY_PACE if replaying else 1.0)
            now = clock()
            for reader in list(self.readers):
                try:
                    self._serve(reader, now)
                except Exception:  # one broken stream must not stop the others
                    log.exception("live stream failed; closing it")
                    self.remove(reader)
        for reader in list(self.readers):
            self.remove(reader)

    def _serve(self, reader: LiveReader, now: float) -> None:
        transport = reader.transport
        if reader.feed.closed or transport.is_closing() or reader.gone():
            self.remove(reader)
            return
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            return  # not draining: its frames wait in the hub, the oldest fall off (counted)
        feed, wire = reader.feed, reader.wire
        if feed.waiting:
            frames = feed.take()
            if frames:
                if feed.shared:
                    transport.write(self.batches.encode(wire, feed.wanted, frames))
                else:
                    transport.write(encode_batch(wire, frames))
                reader.last_write = now
                return
        if wire.keep_alive is not None and now - reader.last_write >= KEEP_ALIVE_SECONDS:
            transport.write(wire.keep_alive)
            reader.last_write = now


LIVE_WRITER = web.AppKey("live_writer", LiveWriter)


async def _run_writer(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[LIVE_WRITER].run(), name="live writer")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup_fanout(app: web.Application, hub: Hub) -> None:
    """The one writer of live frames, run for the app's lifetime."""
    app[LIVE_WRITER] = LiveWriter(hub)
    app.cleanup_ctx.append(_run_writer)
