"""create_app(settings): composes the service from its setup_* pieces and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

from aiohttp import WSCloseCode, web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from exporter import snapshot
from exporter.api.alerts import setup_alerts
from exporter.api.auth import setup_auth
from exporter.api.client_files import setup_client_files
from exporter.api.cors import setup_cors
from exporter.api.debug import setup_debug
from exporter.api.demo import setup_demo
from exporter.api.errors import json_errors
from exporter.api.ingest import setup_ingest
from exporter.api.openapi import setup_openapi
from exporter.api.pages import setup_pages
from exporter.api.shoppers import setup_shoppers
from exporter.api.stream import setup_stream
from exporter.collector import ShopperCollector, build_registry
from exporter.compaction import MapCompactor
from exporter.demo import DemoControl
from exporter.eventlog import EventLog, Hub
from exporter.finder import ShopperFinder
from exporter.gc_policy import TEND_EVERY, GcPolicy
from exporter.history import HistoryRing, run_sampler
from exporter.ingest import Ingestor
from exporter.keys import (
    COMPACTOR,
    DEMO,
    EVENT_LOG,
    FINDER,
    HISTORY,
    HUB,
    INGESTOR,
    REGISTRY,
    SETTINGS,
    STATUS,
    STORE,
    STREAMS,
)
from exporter.loki.drilldown import setup_drilldown
from exporter.loki.routes import setup_loki
from exporter.settings import Settings
from exporter.snapshot_writer import SnapshotWriter
from exporter.sources import setup_sources
from exporter.status import ServiceStatus, SnapshotStatus
from exporter.store import ShopperStore

log = logging.getLogger(__name__)

SWEEP_SLICE = 5_000
"""Sessions ended (and shoppers forgotten) per slice of an expiry sweep."""


async def _every(interval: float, job: Callable[[], object], name: str) -> None:
    """Run `job` (plain or async) every `interval` seconds; a failing run is logged, never fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            result = job()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s failed; continuing", name)


async def _sweep(ingestor: Ingestor) -> None:
    """Expiry a slice at a time, yielding between slices: when a great many shoppers fall due at
    once (a restored state whose sessions all idled while the service was down), ingest,
    scrapes and streams go on meanwhile."""
    more = True
    while more:
        more = ingestor.expire(limit=SWEEP_SLICE)
        if more:
            await asyncio.sleep(0)


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Expiry sweeps, the once-a-second summary frame and history sample, the search index
    catching up, the shopper map kept compact, and the demo if asked for at start."""
    settings, ingestor = app[SETTINGS], app[INGESTOR]
    tasks = [
        asyncio.create_task(_every(settings.sweep_interval, partial(_sweep, ingestor), "expiry")),
        asyncio.create_task(_every(settings.summary_interval, ingestor.publish_summary, "summary")),
        asyncio.create_task(run_sampler(app[HISTORY], ingestor.clock)),
        asyncio.create_task(_every(1.0, app[FINDER].keep_up, "search index")),
        asyncio.create_task(_every(1.0, app[COMPACTOR].tend, "shopper map")),
    ]
    if settings.demo_shoppers:
        app[DEMO].start(settings.demo_shoppers)
    app[STATUS].ready = True
    yield
    app[STATUS].ready = False
    await app[DEMO].stop()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _garbage(app: web.Application) -> AsyncIterator[None]:
    """Time every garbage collection, and keep the long-lived state frozen (exporter/gc_policy)."""
    policy = app[STATUS].gc
    policy.start()
    task = asyncio.create_task(_every(TEND_EVERY, policy.tend, "garbage collection"))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    policy.stop()


async def _snapshots(app: web.Application) -> AsyncIterator[None]:
    """Snapshot the state every interval without stopping the service, and once more on the way
    out."""
    settings, ingestor, status = app[SETTINGS], app[INGESTOR], app[STATUS]
    if settings.state_file is None or status.snapshot is None:
        yield
        return
    policy = status.gc
    writer = SnapshotWriter(Path(settings.state_file), ingestor, status.snapshot, policy.tend)
    policy.writer_at_work = lambda: writer.running
    task = asyncio.create_task(writer.run(settings.snapshot_interval))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # The state stops changing now: write it here, in place of a writer still at an older one.
    writer.close()
    if writer.save_here():
        log.info("state saved to %s", settings.state_file)


async def _close_streams(app: web.Application) -> None:
    """Wake every live reader so streams end (WebSockets close with GOING_AWAY)."""
    app[HUB].close_all()
    open_streams: set[web.StreamResponse] = app[STREAMS]
    for stream in list(open_streams):
        if isinstance(stream, web.WebSocketResponse):
            await stream.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def scrape_handler(registry: CollectorRegistry) -> Handler:
    """/metrics: prometheus_client's exposition, gzipped on the loop when asked.

    aiohttp gzips bodies over 4 KiB in a worker thread, which then waits for the interpreter
    lock behind whatever runs on the loop (a Loki query's turn): tens of milliseconds. A scrape
    body is a few KiB and compresses in well under a millisecond, so it is done in place.
    """
    expose = make_aiohttp_handler(registry, disable_compression=True)

    async def scrape(request: web.Request) -> web.StreamResponse:
        exposed = await expose(request)
        assert isinstance(exposed, web.Response)
        response = web.Response(
            status=exposed.status,
            headers=exposed.headers,
            body=exposed.body,
            zlib_executor_size=1 << 24,
        )
        response.enable_compression()
        return response

    return scrape


def create_app(settings: Settings) -> web.Application:
    """The whole service for one set of settings."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    hub = Hub(max(4096, settings.stream_backlog))
    status = ServiceStatus()

    def fresh() -> Ingestor:
        return Ingestor(settings, ShopperStore(settings), bounded_event_log(settings), hub)

    if settings.state_file is None:
        ingestor = fresh()
    else:
        restored = snapshot.load(Path(settings.state_file), fresh)
        ingestor = restored.ingestor
        status.snapshot = SnapshotStatus(taken_at=restored.taken_at)
    store, event_log = ingestor.store, ingestor.log
    status.gc = GcPolicy(store.__len__)
    app[SETTINGS] = settings
    app[STORE] = store
    app[EVENT_LOG] = event_log
    app[HUB] = hub
    app[STATUS] = status
    app[INGESTOR] = ingestor
    app[STREAMS] = set()
    app[HISTORY] = HistoryRing(store)
    app[FINDER] = ShopperFinder(store)
    app[COMPACTOR] = MapCompactor(store.tables().shoppers, lambda: sum(ingestor.received.values()))
    app[REGISTRY] = build_registry(ShopperCollector(store, ingestor, event_log, hub, status))
    app[DEMO] = DemoControl(
        ingestor,
        settings.demo_shoppers or 30,
        settings.demo_seed,
        settings.demo_control,
        settings.demo_speed,
    )

    setup_cors(app)  # first: it answers preflights before the token check
    app.middlewares.append(json_errors)  # errors raised below it answer JSON (with CORS headers)
    setup_auth(app)
    setup_pages(app)
    setup_client_files(app)
    setup_ingest(app)
    setup_shoppers(app)
    setup_demo(app)
    setup_openapi(app)
    setup_alerts(app)
    setup_loki(app)
    setup_drilldown(app)
    setup_stream(app)
    setup_sources(app)
    setup_debug(app)
    app.router.add_get("/metrics", scrape_handler(app[REGISTRY]))
    app.cleanup_ctx.append(_garbage)
    app.cleanup_ctx.append(_snapshots)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_streams)
    return app


def bounded_event_log(settings: Settings) -> EventLog:
    """An empty event log with the bounds the settings give."""
    return EventLog(
        settings.event_log_size or None,
        retention_ns=int(settings.event_log_retention * 1e9),
        max_bytes=settings.event_log_max_bytes,
    )
