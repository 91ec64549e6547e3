"""Keeps one pull source running: reconnects with backoff, tracks its health, logs state changes."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from exporter.ingest import Ingestor
from exporter.model import BodyError
from exporter.status import SourceStatus

log = logging.getLogger("exporter.sources")


class SourceError(Exception):
    """An upstream answered, but not with something we can read (wrong status or content)."""


def source_name(url: str) -> str:
    """The URL without credentials, query or fragment: safe for logs and metric labels."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Backoff:
    """Reconnect delays: `base` first, then doubling up to `cap`, each jittered down by up to a
    quarter (never below `base`) so many exporters do not reconnect in step."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return max(self.base, self._rng.uniform(0.75 * ceiling, ceiling))

    def reset(self) -> None:
        self.failures = 0


class SourceLink:
    """What a source reports through: records it received, and whether it is connected."""

    def __init__(self, name: str, transport: str, ingestor: Ingestor, status: SourceStatus) -> None:
        self.name = name
        self.transport = transport
        self.ingestor = ingestor
        self.status = status
        self.healthy = False
        """Connected at least once since the last failure (the backoff starts over)."""
        self._state: bool | None = None

    def connected(self) -> None:
        """The upstream accepted us; logged when that is news."""
        self.healthy = True
        self.status.up = True
        if self._state is not True:
            log.info("source %s is up", self.name)
        self._state = True

    def delivered(self) -> None:
        """The upstream delivered data (or a poll succeeded)."""
        self.status.last_success = time.time()

    def ingest(self, raw: bytes | str, kind: str = "metric") -> bool:
        """Apply one message; an unreadable one is counted (as rejected) and skipped."""
        self.delivered()
        try:
            self.ingestor.ingest_bytes(raw, self.transport, kind)
        except BodyError as err:
            log.debug("source %s sent an unreadable message: %s", self.name, err)
            return False
        return True

    def failed(self, error: str) -> None:
        """The connection ended or could not be made; logged once per outage, not per retry."""
        self.status.up = False
        self.status.last_error = error
        if self._state is not False:
            log.warning("source %s is down: %s (retrying)", self.name, error)
        else:
            log.debug("source %s still down: %s", self.name, error)
        self._state = False


class Source(Protocol):
    """A pull source: `run` connects, feeds the link until the connection ends, then returns or
    raises; the supervisor decides when to call it again."""

    name: str
    transport: str

    async def run(self, link: SourceLink) -> None: ...


def describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


async def supervise(source: Source, link: SourceLink, backoff: Backoff) -> None:
    """Run a source forever: after each disconnect wait (backoff), then count a reconnect."""
    while True:
        link.healthy = False
        try:
            await source.run(link)
            error = "connection closed by upstream"
        except asyncio.CancelledError:
            raise
        except Exception as err:
            error = describe(err)
        link.failed(error)
        if link.healthy:
            backoff.reset()
        await asyncio.sleep(backoff.next_delay())
        link.status.reconnects += 1
