"""Typed application keys: where handlers, background tasks and tests find shared objects."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.compaction import MapCompactor
from exporter.demo import DemoControl
from exporter.eventlog import EventLog, Hub
from exporter.finder import ShopperFinder
from exporter.history import HistoryRing
from exporter.ingest import Ingestor
from exporter.settings import Settings
from exporter.status import ServiceStatus
from exporter.store import ShopperStore

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", ShopperStore)
EVENT_LOG = web.AppKey("event_log", EventLog)
HUB = web.AppKey("hub", Hub)
INGESTOR = web.AppKey("ingestor", Ingestor)
REGISTRY = web.AppKey("registry", CollectorRegistry)
STATUS = web.AppKey("status", ServiceStatus)
DEMO = web.AppKey("demo", DemoControl)
HISTORY = web.AppKey("history", HistoryRing)
FINDER = web.AppKey("finder", ShopperFinder)
COMPACTOR = web.AppKey("compactor", MapCompactor)
#: Open WebSockets and SSE responses (each handler removes its own), closed on shutdown.
STREAMS: web.AppKey[set[web.StreamResponse]] = web.AppKey("streams")
