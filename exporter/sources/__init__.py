"""Pull sources: upstream WebSocket, SSE and HTTP-poll feeds, one supervised task each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from exporter.keys import INGESTOR, SETTINGS, STATUS
from exporter.settings import Settings
from exporter.sources.poll import PollSource
from exporter.sources.sse import SseParser, SseSource
from exporter.sources.supervisor import Backoff, Source, SourceLink, source_name, supervise
from exporter.sources.websocket import WebSocketSource

__all__ = ["SseParser", "build_source", "setup_sources", "source_kind", "source_name"]

SCHEMES = {
    "ws": "ws",
    "wss": "ws",
    "sse+http": "sse",
    "sse+https": "sse",
    "poll+http": "poll",
    "poll+https": "poll",
}


def source_kind(url: str) -> str:
    """ws, sse or poll, by the URL's scheme; raises ValueError for any other scheme."""
    scheme = url.partition("://")[0].lower()
    kind = SCHEMES.get(scheme)
    if kind is None:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"unsupported source {source_name(url)!r}; use one of {known}")
    return kind


def build_source(url: str, settings: Settings, session: aiohttp.ClientSession) -> Source:
    """The source a URL names; raises ValueError for an unsupported scheme."""
    kind = source_kind(url)
    if kind == "ws":
        return WebSocketSource(url, settings.max_body_bytes)
    if kind == "sse":
        return SseSource(url, session)
    return PollSource(url, session, settings.poll_interval, settings.max_body_bytes)


def setup_sources(app: web.Application) -> None:
    """Run one supervised task per `--source` for the app's lifetime."""
    settings = app[SETTINGS]
    for url in settings.sources:
        source_kind(url)  # refuse a bad URL now, not once the service is up
    if settings.sources:
        app.cleanup_ctx.append(_run_sources)


async def _run_sources(app: web.Application) -> AsyncIterator[None]:
    settings, ingestor, status = app[SETTINGS], app[INGESTOR], app[STATUS]
    session = aiohttp.ClientSession()
    tasks: list[asyncio.Task[None]] = []
    for url in settings.sources:
        source = build_source(url, settings, session)
        link = SourceLink(source.name, source.transport, ingestor, status.source(source.name))
        backoff = Backoff(settings.reconnect_delay, settings.reconnect_max_delay)
        tasks.append(
            asyncio.create_task(supervise(source, link, backoff), name=f"source {source.name}")
        )
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await session.close()
