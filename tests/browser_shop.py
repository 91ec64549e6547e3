"""Browser tests' shared parts: Debian's Chromium, pages that fail on script errors, and a shop on
another origin (its page server and its backend) for the browser client's tests and benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiohttp import web
from playwright.sync_api import Browser, Page, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from support import ROOT, free_port, require_binary

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

BRIEF = ROOT / "tests" / "brief"
CLIENT = ROOT / "clients" / "js"
PACKAGE = "live-shopper-metrics-client"
"""The client's npm name: the import path the brief's samples use here."""


class OriginServer:
    """Another web origin: a plain HTTP server (in a thread) serving a shop's page and scripts."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = files.get(self.path.split("?")[0])
                if found is None:
                    self.send_error(404)
                    return
                body, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        for sample in BRIEF.glob("*.ts"):
            # The samples are TypeScript that is also plain JavaScript: served as scripts.
            self.serve(f"/brief/{sample.name}", sample.read_bytes(), "text/javascript")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, body: str | bytes, content_type: str) -> None:
        self.files[path] = (body.encode() if isinstance(body, str) else body, content_type)

    def serve_page(self, client_url: str, setup: str = "", path: str = "/") -> str:
        """A shop page importing the client from `client_url` (as the npm name, by import map);
        `setup` runs after `metricsService` is imported; `window.shop` records what happens."""
        imports = json.dumps({"imports": {PACKAGE: client_url}})
        html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A shop</title>
<script type="importmap">{imports}</script>
<script type="module">
import {{ metricsService }} from '{PACKAGE}';
window.shop = {{ service: metricsService, errors: [], summaries: [] }};
metricsService.onError((error) => window.shop.errors.push(error));
{setup}
window.shop.ready = true;
</script></head><body><h1>A shop</h1></body></html>"""
        self.serve(path, html, "text/html; charset=utf-8")
        return self.origin + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    executable = require_binary("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def checked_page(browser: Browser, **context_options: Any) -> Iterator[Page]:
    """A page in a fresh context; fails the test if a script on the page throws."""
    context = browser.new_context(**context_options)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def open_shop(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("window.shop?.ready === true", timeout=15_000)


def run_sample(page: Page, name: str) -> None:
    """Run one of the brief's samples (tests/brief/NAME) as a module of the shop's page."""
    page.evaluate("(name) => import(`/brief/${name}`)", name)


def get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as reply:
        return json.load(reply)


def shoppers(base_url: str, token: str | None = None) -> dict[str, dict[str, Any]]:
    """The exporter's shoppers by userId."""
    body = get_json(f"{base_url}/api/shoppers?limit=1000", token)
    return {s["userId"]: s for s in body["shoppers"]}


def metric(base_url: str, name: str, **labels: str) -> float:
    """The sum of the exporter's /metrics samples of `name` with these labels (0 when none)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


class ShopBackend:
    """The shop's own servers from the brief's "Backend Integration", in a thread: a WebSocket
    server sending `{"type": "user_metric", "metric": ...}` messages to each client on connect
    (Option A), a REST endpoint answering `{metrics, events}` (Option B) and an SSE source.
    It can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.ws_messages: list[Any] = []
        self.sse_messages: list[Any] = []
        self.rest_body: dict[str, list[Any]] = {"metrics": [], "events": []}
        self.ws_connected_at: list[float] = []
        self.polls = 0
        self.open_sockets: set[web.WebSocketResponse] = set()
        self.open_streams = 0
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        if self._runner is not None:
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/metrics", self._rest)
        app.router.add_get("/sse", self._sse)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _stop(self) -> None:
        self._stopping.set()
        for ws in list(self.open_sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_connected_at.append(time.monotonic())
        self.open_sockets.add(ws)
        try:
            for message in list(self.ws_messages):
                await ws.send_json(message)
            async for _ in ws:
                pass
        finally:
            self.open_sockets.discard(ws)
        return ws

    async def _rest(self, request: web.Request) -> web.Response:
        self.polls += 1
        return web.json_response(self.rest_body, headers={"Access-Control-Allow-Origin": "*"})

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Access-Control-Allow-Origin": "*"}
        )
        await response.prepare(request)
        self.open_streams += 1
        try:
            for message in list(self.sse_messages):
                await response.write(f"data: {json.dumps(message)}\n\n".encode())
            # Open until the backend stops or the reader leaves.
            while not self._stopping.is_set() and not _gone(request):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 0.1)
        finally:
            self.open_streams -= 1
        return response


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
