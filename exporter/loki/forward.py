"""Ship the event log to a real Grafana Loki (`--loki-push-url`), in batches, with retries.

The forwarder reads the event log after the last id it shipped, so nothing is lost while the
ring still holds it. What falls off the ring before it could be sent is counted as dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import time
from collections.abc import AsyncIterator
from itertools import islice
from typing import Final

import aiohttp
import orjson
from aiohttp import web

from exporter.eventlog import EventLog, LoggedEvent
from exporter.keys import EVENT_LOG, SETTINGS, STATUS
from exporter.loki.streams import LABELLER, StreamLabeller
from exporter.status import ServiceStatus

log = logging.getLogger(__name__)

BATCH_SIZE: Final = 500
FLUSH_INTERVAL: Final = 1.0
POLL_INTERVAL: Final = 0.1
SEND_TIMEOUT: Final = 10.0
SHUTDOWN_FLUSH: Final = 2.0


class LokiForwarder:
    """Sends new events every second (or every BATCH_SIZE events) to a Loki push URL.

    A failed send is retried with doubling delays; a 4xx other than 429 means Loki will never
    take that batch, so it is counted as dropped and skipped.
    """

    def __init__(
        self,
        url: str,
        event_log: EventLog,
        labeller: StreamLabeller,
        status: ServiceStatus,
        *,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
        batch_size: int = BATCH_SIZE,
        flush_interval: float = FLUSH_INTERVAL,
        extra_labels: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.log = event_log
        self.labeller = labeller
        self.status = status
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.extra_labels = extra_labels or {}
        """Labels on every stream (`shard` on a sharded replica, so Loki tells replicas apart)."""
        # Ship whatever the log holds at start, then everything after.
        self.cursor = event_log.first_id - 1

    @property
    def backlog(self) -> int:
        """Events logged but not shipped yet (never more than the ring holds)."""
        return self.log.last_id - max(self.cursor, self.log.first_id - 1)

    def take(self) -> list[LoggedEvent]:
        """The next batch to send; counts events that fell off the ring meanwhile as dropped."""
        oldest = self.log.first_id
        if self.cursor + 1 < oldest:
            self.status.forward_dropped += oldest - self.cursor - 1
            self.cursor = oldest - 1
        return list(islice(self.log.after(self.cursor), self.batch_size))

    def payload(self, batch: list[LoggedEvent]) -> bytes:
        """The gzip'd JSON push body: one stream per label set, entries in log order."""
        streams: dict[int, tuple[dict[str, str], list[list[str]]]] = {}
        for logged in batch:
            labels = self.labeller.for_event(logged)
            slot = streams.setdefault(id(labels), (labels, []))
            slot[1].append([str(logged.ts_ns), logged.line])
        extra = self.extra_labels
        body = {
            "streams": [
                {"stream": lab | extra if extra else lab, "values": vals}
                for lab, vals in streams.values()
            ]
        }
        return gzip.compress(orjson.dumps(body), compresslevel=5)

    async def send(self, session: aiohttp.ClientSession, batch: list[LoggedEvent]) -> str:
        """ "sent", "refused" (Loki will never take it) or "failed" (worth retrying)."""
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        try:
            async with session.post(self.url, data=self.payload(batch), headers=headers) as resp:
                if resp.status < 300:
                    return "sent"
                text = (await resp.text())[:200]
                if 400 <= resp.status < 500 and resp.status != 429:
                    log.warning("Loki refused %d events (%d): %s", len(batch), resp.status, text)
                    return "refused"
                log.warning("Loki push failed (%d): %s", resp.status, text)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            log.warning("Loki push failed: %s", err or type(err).__name__)
        return "failed"

    async def ship(self, session: aiohttp.ClientSession) -> None:
        """Send the next batch, retrying with backoff until it goes (or falls off the ring)."""
        delay = self.retry_delay
        while batch := self.take():
            outcome = await self.send(session, batch)
            if outcome == "sent":
                self.status.forward_sent += len(batch)
                self.cursor = batch[-1].id
                return
            if outcome == "refused":
                self.status.forward_dropped += len(batch)
                self.cursor = batch[-1].id
                return
            self.status.forward_failures += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_delay)

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Forever: wait for a full batch or the flush interval, then ship."""
        last_flush = time.monotonic()
        while True:
            pending = self.backlog
            due = time.monotonic() - last_flush >= self.flush_interval
            if pending >= self.batch_size or (pending and due):
                await self.ship(session)
                last_flush = time.monotonic()
            else:
                await asyncio.sleep(POLL_INTERVAL)


async def forwarding(app: web.Application) -> AsyncIterator[None]:
    """Background forwarding while the app runs, when a push URL is configured."""
    settings = app[SETTINGS]
    if not settings.loki_push_url:
        yield
        return
    forwarder = LokiForwarder(
        settings.loki_push_url,
        app[EVENT_LOG],
        app[LABELLER],
        app[STATUS],
        retry_delay=settings.reconnect_delay,
        max_retry_delay=settings.reconnect_max_delay,
        extra_labels=None if settings.shard is None else {"shard": str(settings.shard.index)},
    )
    timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        task = asyncio.create_task(forwarder.run(session))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # One last try for what is left, bounded so a dead Loki cannot hold up shutdown.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_final_flush(forwarder, session), SHUTDOWN_FLUSH)


async def _final_flush(forwarder: LokiForwarder, session: aiohttp.ClientSession) -> None:
    batch = forwarder.take()
    if batch and await forwarder.send(session, batch) == "sent":
        forwarder.status.forward_sent += len(batch)
        forwarder.cursor = batch[-1].id
