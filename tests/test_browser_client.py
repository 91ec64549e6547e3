"""The browser client (clients/js) in real Chromium: a shop page on another origin imports it from
the real exporter and runs the brief's code; real WebSocket, REST and SSE backends feed it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from exporter.sharding import shard_of

from browser_shop import (
    CLIENT,
    OriginServer,
    ShopBackend,
    checked_page,
    get_json,
    metric,
    open_shop,
    run_sample,
    shoppers,
)
from support import (
    RunningProcess,
    free_port,
    iso,
    run_exporter,
    run_haproxy,
    scraped,
    shopper,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TOKEN = "write-token-for-the-shop"
READ = "read-token-for-the-office"
TOKENS = ("--write-token", TOKEN, "--read-token", READ)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; fails the test if a script on it throws."""
    with checked_page(browser) as tab:
        yield tab


@pytest.fixture
def shop() -> Iterator[OriginServer]:
    """The shop's web server: an origin the exporter lists in --cors-origins."""
    server = OriginServer()
    yield server
    server.close()


@pytest.fixture
def backend() -> Iterator[ShopBackend]:
    """The shop's own WebSocket, REST and SSE servers."""
    servers = ShopBackend()
    servers.start()
    yield servers
    servers.close()


def client_url(base_url: str) -> str:
    return f"{base_url}/client/metrics-service.js"


@contextmanager
def shop_on_exporter(
    page: Page, shop: OriginServer, tmp_path: Path, setup: str = "", *flags: str, port: int = 0
) -> Iterator[RunningProcess]:
    """The real exporter allowing the shop's origin, with the shop's page open and importing the
    client from it; `setup` runs in the page once `metricsService` is imported."""
    with run_exporter(
        tmp_path, "--cors-origins", shop.origin, *flags, port=port or None
    ) as exporter:
        open_shop(page, shop.serve_page(client_url(exporter.base_url), setup))
        yield exporter


def shop_state(page: Page, expression: str) -> Any:
    return page.evaluate(f"() => {expression}")


def test_brief_quick_start_and_mock_data_run_from_another_origin(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """The brief's Step 2 and bulk example, imported from the exporter by a page on a listed
    origin, reach /api/shoppers; onMetricsUpdate's activeUsers matches /api/summary."""
    with shop_on_exporter(
        page,
        shop,
        tmp_path,
        "metricsService.onMetricsUpdate((m) => window.shop.summaries.push(m));",
    ) as exporter:
        base = exporter.base_url
        run_sample(page, "quick-start.ts")
        run_sample(page, "mock-data.ts")

        found = wait_until(lambda: len(shoppers(base)) == 11 and shoppers(base))
        assert isinstance(found, dict)
        sarah = found["shopper_123"]
        assert sarah["userName"] == "Sarah Johnson"
        assert sarah["location"] == "San Francisco, CA"
        assert (sarah["cartValue"], sarah["itemsInCart"]) == (127.5, 12)
        assert "email" not in sarah
        assert {f"shopper_mock_{i}" for i in range(1, 11)} <= set(found)

        def matches_summary() -> bool:
            delivered = shop_state(page, "window.shop.summaries.at(-1)")
            expected = get_json(f"{base}/api/summary")["activeShoppers"]
            return delivered is not None and delivered["activeUsers"] == expected == 11

        wait_until(matches_summary, timeout=10)
        latest = shop_state(page, "window.shop.summaries.at(-1)")
        assert latest["activeShoppers"] == latest["activeUsers"]
        stats = shop_state(page, "window.shop.service.stats")
        assert stats["accepted"] == 11
        assert stats["requests"] <= 2, stats  # one body per batch window, not one per push
        assert shop_state(page, "window.shop.errors") == []


def test_a_page_on_an_origin_not_listed_is_refused_and_nothing_applied(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """From an origin not in --cors-origins the browser refuses the client's import and its
    pushes (preflight), a push that needs no preflight is refused by the exporter, and no
    shopper is applied."""
    stranger = OriginServer()
    try:
        with run_exporter(tmp_path, "--cors-origins", shop.origin) as exporter:
            base = exporter.base_url
            stranger.serve("/page", "<!doctype html><title>elsewhere</title>", "text/html")
            page.goto(stranger.origin + "/page")
            imported = page.evaluate(
                "(url) => import(url).then(() => 'loaded', (error) => `refused: ${error}`)",
                client_url(base),
            )
            assert imported.startswith("refused"), imported

            # The same page with its own copy of the client (as an npm user bundles it).
            stranger.serve(
                "/vendor/metrics-service.js",
                (CLIENT / "metrics-service.js").read_bytes(),
                "text/javascript",
            )
            open_shop(
                page,
                stranger.serve_page(
                    stranger.origin + "/vendor/metrics-service.js",
                    f"metricsService.configure({{ baseUrl: '{base}', retryBaseMs: 200 }});",
                ),
            )
            run_sample(page, "quick-start.ts")
            wait_until(lambda: shop_state(page, "window.shop.service.stats.retries") >= 2)
            errors = shop_state(page, "window.shop.errors")
            assert errors[0]["reason"] == "unreachable"
            assert "--cors-origins" in errors[0]["message"]

            # A plain-text POST goes without a preflight; the exporter itself refuses it.
            status = page.evaluate(
                """async ([url, body]) => {
                    try {
                        await fetch(url, { method: 'POST', mode: 'no-cors', body,
                                           headers: { 'Content-Type': 'text/plain' } });
                        return 'sent';
                    } catch (error) { return `failed: ${error}`; }
                }""",
                [
                    f"{base}/api/metrics",
                    '{"userId": "x", "userName": "X", "timestamp": "'
                    + iso()
                    + '", "isActive": true}',
                ],
            )
            assert status == "sent"
            time.sleep(0.5)  # let the refused request land before counting
            assert shoppers(base) == {}
            assert metric(base, "shopper_updates_received_total", transport="http") == 0
    finally:
        stranger.close()


def test_pagehide_sends_the_last_update_of_a_closing_page(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """An update still waiting for its batch when the page goes away is sent with keepalive
    (CORS preflight and bearer token included) and reaches the exporter."""
    with shop_on_exporter(
        page,
        shop,
        tmp_path,
        f"metricsService.configure({{ token: '{TOKEN}', batchMs: 600000 }});",
        *TOKENS,
    ) as exporter:
        base = exporter.base_url
        page.evaluate(
            "(update) => window.shop.service.pushUserMetric(update)",
            shopper("leaving_1", lastAction="Closed the tab"),
        )
        assert shop_state(page, "window.shop.service.stats.queued") == 1
        page.goto("about:blank")  # pagehide
        found = wait_until(lambda: shoppers(base, READ).get("leaving_1"), timeout=10)
        assert isinstance(found, dict)
        assert found["lastAction"] == "Closed the tab"


def test_refused_records_reach_on_error_with_field_names(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """A 4xx reaches onError: refused records with their field names (the valid record of the
    batch is applied), and a wrong token as unauthorized."""
    with shop_on_exporter(
        page, shop, tmp_path, f"metricsService.configure({{ token: '{TOKEN}' }});", *TOKENS
    ) as exporter:
        base = exporter.base_url
        good = shopper("valid_1")
        bad = {"userId": "invalid_1", "timestamp": iso(), "isActive": True, "scrollDepth": 500}
        page.evaluate("(records) => window.shop.service.pushBulkMetrics(records)", [good, bad])
        wait_until(lambda: shop_state(page, "window.shop.errors.length") == 1)
        error = shop_state(page, "window.shop.errors[0]")
        assert error["reason"] == "rejected"
        assert error["status"] == 200
        (refused,) = error["rejected"]
        assert refused["index"] == 1
        assert refused["record"]["userId"] == "invalid_1"
        assert {e["field"] for e in refused["errors"]} == {"userName", "scrollDepth"}
        assert set(shoppers(base, READ)) == {"valid_1"}

        page.evaluate(
            """(update) => { window.shop.service.configure({ token: 'wrong' });
                             window.shop.service.pushUserMetric(update); }""",
            shopper("intruder_1"),
        )
        wait_until(lambda: shop_state(page, "window.shop.errors.length") == 2)
        error = shop_state(page, "window.shop.errors[1]")
        assert (error["reason"], error["status"]) == ("unauthorized", 401)
        assert "token" in error["message"]
        assert shop_state(page, "window.shop.service.stats.queued") == 0  # not retried


def _feed(backend: ShopBackend, round_: int) -> int:
    """Give each backend source a new shopper (and the WebSocket a cart event); the old
    records stay, so every source replays them. Returns the records added."""
    backend.ws_messages.append({"type": "user_metric", "metric": shopper(f"ws_{round_}")})
    backend.ws_messages.append(
        {
            "metrics": [],
            "events": [{"type": "cart_add", "userId": f"ws_{round_}", "timestamp": iso()}],
        }
    )
    backend.rest_body["metrics"].append(shopper(f"poll_{round_}"))
    backend.sse_messages.append({"type": "user_metric", "metric": shopper(f"sse_{round_}")})
    return 4


def test_sources_reconnect_after_a_restart_without_counting_twice(
    page: Page, shop: OriginServer, backend: ShopBackend, tmp_path: Path
) -> None:
    """connectWebSocket, startPolling and connectSSE forward a real backend's records; when the
    backend stops and comes back, the WebSocket reconnects about 5 s after it dropped, new
    records arrive, and records sent again are not counted again."""
    sent = _feed(backend, 1)
    with shop_on_exporter(
        page,
        shop,
        tmp_path,
        f"""metricsService.configure({{ batchMs: 100 }});
                metricsService.connectWebSocket('ws://127.0.0.1:{backend.port}/ws');
                metricsService.startPolling('{backend.url}/metrics', 300);
                metricsService.connectSSE('{backend.url}/sse');""",
    ) as exporter:
        base = exporter.base_url
        wait_until(lambda: set(shoppers(base)) == {"ws_1", "poll_1", "sse_1"})
        wait_until(lambda: backend.polls >= 3)  # the unchanged poll body came back again

        backend.stop()
        dropped_at = time.monotonic()
        sent += _feed(backend, 2)
        time.sleep(1.0)  # down for a second: reconnects fail meanwhile
        backend.start()
        wait_until(
            lambda: (
                set(shoppers(base)) == {f"{s}_{r}" for s in ("ws", "poll", "sse") for r in (1, 2)}
            ),
            timeout=15,
        )
        reconnect = backend.ws_connected_at[-1] - dropped_at
        assert len(backend.ws_connected_at) == 2
        assert 4.0 <= reconnect <= 6.5, reconnect  # the brief's 5 s, jittered by ±10 %

        wait_until(lambda: backend.polls >= 10)  # more unchanged polls and replays
        time.sleep(0.5)  # a replay forwarded by mistake would land within the batch window
        assert metric(base, "shopper_updates_received_total", transport="http") == sent
        assert metric(base, "shopper_updates_ignored_total", reason="duplicate") == 0
        assert metric(base, "shopper_events_total", event="cart_add") == 2
        assert shop_state(page, "window.shop.errors.filter((e) => !e.retrying)") == []


def test_queued_pushes_arrive_after_the_exporter_returns(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """Pushes made while the exporter is killed are kept, retried with backoff, and arrive
    once it is back on the same port."""
    port = free_port()
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with shop_on_exporter(
        page,
        shop,
        tmp_path / "first",
        "metricsService.configure({ batchMs: 50, retryBaseMs: 250, retryMaxMs: 2000 });",
        port=port,
    ) as first:
        base = first.base_url
        page.evaluate("(u) => window.shop.service.pushUserMetric(u)", shopper("before_1"))
        wait_until(lambda: "before_1" in shoppers(base))
        first.stop(signal.SIGKILL)
        page.evaluate(
            "(us) => window.shop.service.pushBulkMetrics(us)",
            [shopper(f"while_down_{i}") for i in range(3)],
        )
        wait_until(lambda: shop_state(page, "window.shop.service.stats.retries") >= 2)
        time.sleep(2.0)  # down for a few seconds
        assert shop_state(page, "window.shop.service.stats.queued") == 3
    with run_exporter(tmp_path / "second", "--cors-origins", shop.origin, port=port) as second:
        wait_until(
            lambda: {f"while_down_{i}" for i in range(3)} <= set(shoppers(second.base_url)),
            timeout=15,
        )
        stats = shop_state(page, "window.shop.service.stats")
        assert (stats["queued"], stats["dropped"]) == (0, 0)
        assert shop_state(page, "window.shop.errors[0].reason") == "unreachable"


OPEN_SOCKETS = """
window.__opened = [];
for (const name of ['WebSocket', 'EventSource']) {
  const Original = window[name];
  window[name] = class extends Original {
    constructor(...args) { super(...args); window.__opened.push(this); }
  };
}
"""
"""Counts every WebSocket and EventSource a page opens (set up before the page's scripts)."""


def test_disconnect_leaves_no_socket_open(
    page: Page, shop: OriginServer, backend: ShopBackend, tmp_path: Path
) -> None:
    """After disconnect(), every WebSocket and EventSource the client opened is closed, the
    backend and the exporter see no open stream, and polling has stopped."""
    _feed(backend, 1)
    page.add_init_script(OPEN_SOCKETS)
    with shop_on_exporter(
        page,
        shop,
        tmp_path,
        f"""metricsService.connectWebSocket('ws://127.0.0.1:{backend.port}/ws');
                metricsService.connectWebSocket();
                metricsService.startPolling('{backend.url}/metrics', 200);
                metricsService.connectSSE('{backend.url}/sse');
                metricsService.onMetricsUpdate((m) => window.shop.summaries.push(m));
                metricsService.onEvent(() => {{}});""",
    ) as exporter:
        base = exporter.base_url
        wait_until(lambda: backend.open_sockets and backend.open_streams == 1)
        wait_until(lambda: metric(base, "shopper_exporter_stream_subscribers", stream="sse") == 1)
        wait_until(lambda: shop_state(page, "window.shop.summaries.length") >= 2)
        assert shop_state(page, "window.__opened.length") == 4  # 2 WebSockets, 2 EventSources

        page.evaluate("() => window.shop.service.disconnect()")
        wait_until(
            lambda: shop_state(page, "window.__opened.every((s) => s.readyState === s.CLOSED)")
        )
        wait_until(lambda: not backend.open_sockets and backend.open_streams == 0)
        wait_until(lambda: metric(base, "shopper_exporter_stream_subscribers", stream="sse") == 0)
        polls = backend.polls
        time.sleep(1.0)  # five poll intervals
        assert backend.polls == polls
        assert shop_state(page, "window.__opened.length") == 4  # nothing reopened


def test_connect_websocket_without_url_pushes_over_the_exporters_ws(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """connectWebSocket() with no URL opens the exporter's /ws and pushes go over it (acks
    included: a refused record still reaches onError)."""
    with shop_on_exporter(page, shop, tmp_path, "metricsService.connectWebSocket();") as exporter:
        base = exporter.base_url
        page.wait_for_timeout(200)
        page.evaluate(
            "(us) => window.shop.service.pushBulkMetrics(us)",
            [shopper("over_ws_1"), {"userId": "over_ws_bad", "timestamp": iso(), "isActive": 1}],
        )
        wait_until(lambda: "over_ws_1" in shoppers(base))
        assert metric(base, "shopper_updates_received_total", transport="ws") == 2
        assert metric(base, "shopper_updates_received_total", transport="http") == 0
        wait_until(lambda: shop_state(page, "window.shop.errors.length") == 1)
        fields = shop_state(page, "window.shop.errors[0].rejected[0].errors.map((e) => e.field)")
        assert set(fields) == {"userName", "isActive"}


def test_the_live_page_takes_its_live_data_through_the_client(page: Page, tmp_path: Path) -> None:
    """The built-in page imports /client/metrics-service.js, and its one live stream is the
    client's (summary, events and shoppers), which fills the page."""
    page.add_init_script(OPEN_SOCKETS)
    with run_exporter(tmp_path, "--demo", "5") as exporter:
        page.goto(exporter.base_url + "/")
        page.wait_for_function("document.querySelector('.kpis').dataset.updated")
        loaded = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
        assert client_url(exporter.base_url) in loaded
        streams = shop_state(page, "window.__opened.map((s) => s.url)")
        assert streams == [f"{exporter.base_url}/api/stream?types=summary%2Cevent%2Cuser_metric"]
        assert page.get_by_test_id("connection-state").inner_text() == "live"


def test_bodies_follow_the_exporters_limits(page: Page, shop: OriginServer, tmp_path: Path) -> None:
    """Against an exporter with small limits, a bulk push is split (by maxBatch, and after a
    413 by halving) and every record arrives, with nothing reported as lost."""
    with shop_on_exporter(
        page,
        shop,
        tmp_path,
        "metricsService.configure({ maxBatch: 8 });",
        "--max-batch",
        "5",
        "--max-body-bytes",
        "2048",
    ) as exporter:
        page.evaluate(
            "(us) => window.shop.service.pushBulkMetrics(us)",
            [shopper(f"limited_{i}", lastAction="x" * 100) for i in range(40)],
        )
        wait_until(lambda: len(shoppers(exporter.base_url)) == 40)
        # The client counts a body once its answer is in, which may come after the exporter
        # shows the records.
        wait_until(lambda: shop_state(page, "window.shop.service.stats.accepted") >= 40)
        stats = shop_state(page, "window.shop.service.stats")
        assert (stats["accepted"], stats["dropped"], stats["rejected"]) == (40, 0, 0)
        assert stats["requests"] >= 8
        assert metric(exporter.base_url, "shopper_updates_rejected_total") > 0  # the 413s
        assert shop_state(page, "window.shop.errors") == []


def test_a_body_on_its_way_when_the_page_closes_still_arrives(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """A body too large to always go with keepalive, still unanswered when the page closes
    (the exporter is paused), arrives once the exporter goes on."""
    with shop_on_exporter(
        page, shop, tmp_path, "metricsService.configure({ batchMs: 20 });"
    ) as exporter:
        page.evaluate("(u) => window.shop.service.pushUserMetric(u)", shopper("first"))
        wait_until(lambda: "first" in shoppers(exporter.base_url))  # the preflight is cached
        exporter.proc.send_signal(signal.SIGSTOP)
        try:
            page.evaluate(
                "(us) => window.shop.service.pushBulkMetrics(us)",
                [shopper(f"in_flight_{i}", lastAction="y" * 150) for i in range(100)],
            )
            wait_until(lambda: shop_state(page, "window.shop.service.stats.queued") == 0)
            assert shop_state(page, "window.shop.service.stats.requests") == 2
            page.goto("about:blank")  # pagehide while the body waits for its reply
        finally:
            exporter.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: len(shoppers(exporter.base_url)) == 101, timeout=15)


def test_a_full_queue_drops_the_oldest_and_says_so_once(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """While the exporter cannot be reached the queue keeps at most maxQueue records: older ones
    are dropped and counted, reported once, and nothing is thrown into the page."""
    with shop_on_exporter(page, shop, tmp_path) as exporter:
        nowhere = f"http://127.0.0.1:{free_port()}/"
        page.evaluate(
            "([url, us]) => { window.shop.service.configure({ baseUrl: url, maxQueue: 3 });"
            " for (const u of us) window.shop.service.pushUserMetric(u); }",
            [nowhere, [shopper(f"queued_{i}") for i in range(8)]],
        )
        wait_until(lambda: shop_state(page, "window.shop.service.stats.retries") >= 1)
        stats = shop_state(page, "window.shop.service.stats")
        assert (stats["queued"], stats["dropped"]) == (3, 5)
        reasons = shop_state(page, "window.shop.errors.map((e) => e.reason)")
        assert reasons.count("queue_full") == 1
        assert shoppers(exporter.base_url) == {}


def test_shards_send_each_shards_records_through_haproxy_to_its_replica(
    page: Page, shop: OriginServer, tmp_path: Path
) -> None:
    """configure({shards: 3}) behind real HAProxy (deploy/haproxy.cfg): each body names its
    shard in X-Shopper-Shard, so every replica gets exactly its own shoppers and refuses none."""
    ports = [free_port() for _ in range(3)]
    ids = [f"js_shopper_{i}" for i in range(30)]
    with ExitStack() as stack:
        replicas = [
            stack.enter_context(
                run_exporter(tmp_path, "--shard", f"{i}/3", "--cors-origins", shop.origin, port=p)
            )
            for i, p in enumerate(ports)
        ]
        proxy = stack.enter_context(run_haproxy(tmp_path, ports))
        setup = "metricsService.configure({ batchMs: 50, shards: 3 });"
        open_shop(page, shop.serve_page(client_url(proxy.base_url), setup))
        page.evaluate("(us) => window.shop.service.pushBulkMetrics(us)", [shopper(u) for u in ids])
        for index, replica in enumerate(replicas):
            own = {u for u in ids if shard_of(u, 3) == index}
            wait_until(lambda r=replica, o=own: set(shoppers(r.base_url)) == o, timeout=15)
            refused = scraped(
                replica.base_url, "shopper_updates_rejected_total", reason="wrong_shard"
            )
            assert refused == 0
        stats = shop_state(page, "window.shop.service.stats")
        assert (stats["accepted"], stats["rejected"], stats["queued"]) == (len(ids), 0, 0)
        assert stats["requests"] >= 3
