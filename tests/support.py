"""Shared test helpers: free ports, real processes, waiting on effects, required binaries."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def prometheus_module(name: str) -> Any:
    """A module of prometheus/ (the rule generator and its helpers), imported as they import
    each other: with that directory on the path."""
    directory = str(ROOT / "prometheus")
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return importlib.import_module(name)


def generator_check(script: Path) -> subprocess.CompletedProcess[str]:
    """`python script --check`: whether the files a generator writes are as it would write them."""
    return subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str) -> str:
    """Path of a real component the test needs; under CI its absence fails, never skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (the README's test command installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_until(
    check: Callable[[], object], timeout: float = 10.0, interval: float = 0.05
) -> object:
    """Poll `check` until it returns something truthy; fail with its last value at `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the thing may not be up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def async_wait_until(
    check: Callable[[], Awaitable[object]], timeout: float = 10.0, interval: float = 0.05
) -> object:
    """The asyncio form of `wait_until`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except Exception as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET, without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def http_request(
    url: str,
    body: Any = None,
    method: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], Any]:
    """Status, headers and parsed JSON body (text when not JSON) of a request; `body` is sent
    as JSON unless it is bytes. Never raises on 4xx/5xx."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, got, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, got, raw = err.code, dict(err.headers), err.read()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, got, parsed


@dataclass
class RunningProcess:
    """A real process the test started, with the base URL it serves on (if any)."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


@contextmanager
def run_process(
    args: list[str],
    log_path: Path,
    base_url: str = "",
    ready_path: str | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Iterator[RunningProcess]:
    """Start a process, wait until `base_url + ready_path` answers 200 (if given), stop it after."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
    running = RunningProcess(proc, base_url, log_path)
    try:
        if ready_path is not None:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"{args[0]} exited early:\n{running.log()}")
                return http_get(base_url + ready_path, timeout=1.0)[0] == 200

            try:
                wait_until(ready, timeout=timeout, interval=0.1)
            except AssertionError as err:
                raise AssertionError(f"{err}\n--- log ---\n{running.log()}") from None
        yield running
    finally:
        running.stop()


@contextmanager
def run_exporter(
    tmp_path: Path, *extra: str, port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[RunningProcess]:
    """The real exporter as its own process (`python -m exporter`), ready on a free port."""
    port = port or free_port()
    args = [sys.executable, "-m", "exporter", "--host", "127.0.0.1", "--port", str(port), *extra]
    with run_process(
        args, tmp_path / f"exporter-{port}.log", f"http://127.0.0.1:{port}", "/readyz", env=env
    ) as running:
        yield running


HAPROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"


@contextmanager
def run_haproxy(tmp_path: Path, replica_ports: list[int]) -> Iterator[RunningProcess]:
    """Real HAProxy running deploy/haproxy.cfg on a free port, in front of the replicas on
    `replica_ports` (shard order), ready once a replica answers /readyz through it."""
    haproxy = require_binary("haproxy")
    port = free_port()
    env = {"SHOPPER_PROXY_BIND": f"127.0.0.1:{port}"}
    env |= {f"SHOPPER_SHARD_{i}": f"127.0.0.1:{p}" for i, p in enumerate(replica_ports)}
    with run_process(
        [haproxy, "-db", "-f", str(HAPROXY_CONFIG)],
        tmp_path / f"haproxy-{port}.log",
        f"http://127.0.0.1:{port}",
        "/readyz",
        env=env,
    ) as running:
        yield running


def iso(moment: float | None = None) -> str:
    """An ISO 8601 UTC timestamp (now, or `moment` seconds since the epoch)."""
    when = datetime.now(UTC) if moment is None else datetime.fromtimestamp(moment, UTC)
    return when.isoformat()


def shopper(user_id: str = "shopper_1", **fields: Any) -> dict[str, Any]:
    """A minimal valid update, with overrides."""
    body: dict[str, Any] = {
        "userId": user_id,
        "userName": "Test Shopper",
        "timestamp": iso(),
        "isActive": True,
    }
    body.update(fields)
    return body


def brief_example() -> dict[str, Any]:
    """The record from the brief's "Push your data" step, as a producer would send it."""
    now = datetime.now(UTC).isoformat()
    return {
        "userId": "shopper_123",
        "userName": "Sarah Johnson",
        "email": "sarah@email.com",
        "company": "San Francisco, CA",  # Location
        "timestamp": now,
        "sessionDuration": 15,  # minutes
        "pageViews": 28,
        "clickCount": 87,
        "scrollDepth": 65,
        "featuresUsed": ["Browsing", "Cart", "Checkout"],
        "activeFeature": "Cart",
        "featureTime": {"Browsing": 8, "Cart": 5, "Checkout": 2},
        "eventsTriggered": 18,
        # E-commerce specific fields
        "cartValue": 127.50,
        "itemsInCart": 12,
        "productsViewed": 35,
        "searchesPerformed": 4,
        "couponsApplied": 1,
        "membershipType": "Premium",
        "deliveryWindow": "Today",
        "queriesRun": 4,
        "reportsCreated": 0,
        "dashboardsViewed": 0,
        "isActive": True,
        "lastAction": "Added item to cart",
        "lastActionTime": now,
    }


def scraped(base_url: str, name: str, **labels: str) -> float | None:
    """The value of one sample on a live /metrics page (counters by their `_total` name)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(base_url + "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


class SseClient:
    """A real SSE client of /api/stream (aiohttp, the service's own parser), keeping every
    frame it reads and the last id, as a browser's EventSource does."""

    def __init__(self, base_url: str, last_event_id: str | None = None, query: str = "") -> None:
        self.url = base_url + "/api/stream" + query
        self.last_event_id = last_event_id
        self.frames: list[Any] = []
        self._session: Any = None
        self._response: Any = None

    async def __aenter__(self) -> SseClient:
        import aiohttp

        from exporter.sources.sse import SseParser

        self._parser = SseParser()
        self._session = aiohttp.ClientSession()
        headers = {} if self.last_event_id is None else {"Last-Event-ID": self.last_event_id}
        self._response = await self._session.get(self.url, headers=headers)
        assert self._response.status == 200
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._response.close()
        await self._session.close()

    async def read_until(self, done: Callable[[SseClient], bool], timeout: float = 30.0) -> None:
        """Read frames until `done(self)`; fail after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not done(self):
                chunk = await self._response.content.readany()
                if not chunk:
                    raise EOFError(f"stream ended after {len(self.frames)} frames")
                for frame in self._parser.feed(chunk):
                    self.frames.append(frame)
                    if frame.last_event_id:
                        self.last_event_id = frame.last_event_id

    def data(self, kind: str) -> list[dict[str, Any]]:
        """The parsed data of every frame of this kind read so far."""
        return [json.loads(f.data) for f in self.frames if f.type == kind]

    def table(self) -> dict[str, dict[str, Any]]:
        """The shopper table a client builds: the last user_metric frame of each shopper."""
        return {row["userId"]: row for row in self.data("user_metric")}


AXE_SCRIPT = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


def require_axe() -> Path:
    """axe-core's browser script (installed from npm by .ci/test); under CI its absence fails."""
    if not AXE_SCRIPT.is_file():
        message = "axe-core is not installed (bash .ci/test installs it from npm)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return AXE_SCRIPT
