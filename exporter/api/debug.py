"""GET /debug/memory: the allocation census, served only when the service runs with
--debug-memory (allocations are then traced from start)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web

from exporter import memory_census
from exporter.api.replies import error_reply, json_reply
from exporter.keys import SETTINGS, STATUS

MAX_TOP = 100_000
POLL = 0.1
WRITER_WAIT = 10.0
"""Seconds a census waits for a snapshot writer to end: walking every object while a forked
writer shares the pages would copy them all, so past the wait objects are not counted."""


async def handle_memory(request: web.Request) -> web.Response:
    """The census: `?top=N` allocation sites, largest first (30; 0 = every site)."""
    raw = request.query.get("top", "30")
    try:
        top = int(raw)
    except ValueError:
        top = -1
    if not 0 <= top <= MAX_TOP:
        return error_reply(422, "invalid", f"top: must be a whole number from 0 to {MAX_TOP}")
    writer_at_work = request.app[STATUS].gc.writer_at_work
    for _ in range(int(WRITER_WAIT / POLL)):
        if not writer_at_work():
            break
        await asyncio.sleep(POLL)
    started = time.perf_counter()
    # Under a busy writer (one after another), the census comes without its object counts.
    body = memory_census.census(top, count_objects=not writer_at_work())
    body["seconds"] = round(time.perf_counter() - started, 3)
    return json_reply(body)


async def _tracing(app: web.Application) -> AsyncIterator[None]:
    """Trace allocations while the app runs, unless something traced them already (the command
    line starts tracing before the state is built or restored, so that is counted too)."""
    started = memory_census.start()
    yield
    if started:
        with contextlib.suppress(RuntimeError):
            memory_census.stop()


def setup_debug(app: web.Application) -> None:
    """The census route, only with --debug-memory: otherwise /debug/memory is a 404."""
    if app[SETTINGS].debug_memory:
        app.cleanup_ctx.append(_tracing)
        app.router.add_get("/debug/memory", handle_memory)
