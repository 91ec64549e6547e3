"""Live page benchmark at 100,000 tracked shoppers: first paint, search, history, ring memory.

    .venv/bin/python bench/page_bench.py [--shoppers 100000] [--fill 310] [--runs 7]

Starts the exporter as its own process with the demo running ten times faster and pushes
`--shoppers` more over HTTP bulk, then waits `--fill` seconds so the history ring holds a full
5-minute window. Then, side by side in one run:
- page first paint with full charts, in headless Chromium: from navigation start to the frame
  that first draws the charts from /api/history (`data-charts-at`), each chart's points checked;
- search → results in the page: from the input event to the table showing only matches;
- the server's /api/shoppers?q= and /api/history?window= answers, timed over loopback
  (p50 / p95 of `--requests` each) and, for the server's own share, in-process on a store of
  the same size (finder.page and ring.window + JSON encoding);
- the history ring's memory, full (an hour, every activity column), by tracemalloc.
Prints Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from compare import free_port, load_average, machine, wait_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.cli import tune_collector  # noqa: E402
from exporter.eventlog import EventLog, Hub  # noqa: E402
from exporter.finder import ShopperFinder, ShopperQuery  # noqa: E402
from exporter.history import MAX_ACTIVITIES, SECONDS, HistoryRing  # noqa: E402
from exporter.ingest import Ingestor  # noqa: E402
from exporter.settings import Settings  # noqa: E402
from exporter.store import ShopperStore  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FIRST = ("Miguel", "Priya", "James", "Aisha", "Chen", "Olivia", "Mateo", "Grace", "Noah", "Ava")
LAST = ("Garcia", "Patel", "Smith", "Khan", "Wang", "Brown", "Lopez", "Kim", "Singh", "Rossi")
CITIES = ("Austin, TX", "Denver, CO", "Boston, MA", "Seattle, WA", "Miami, FL", "Chicago, IL")
# What people type: a whole id, part of an id, a full name, a first name, a city.
QUERIES = ("customer_004217", "er_00991", "Grace Kim", "priya", "Seattle", "khan", "sarah johnson")
PAGE_QUERIES = ("customer_004217", "Grace Kim", "seattle", "er_00991", "priya")


def crowd(n: int, now_iso: str) -> list[dict[str, Any]]:
    return [
        {
            "userId": f"customer_{i:06d}",
            "userName": f"{FIRST[i % 10]} {LAST[i // 10 % 10]}",
            "company": CITIES[i % 6],
            "timestamp": now_iso,
            "isActive": i % 3 != 0,
            "activeFeature": ("Browsing", "Search", "Product", "Cart")[i % 4],
            "cartValue": float(i % 150),
            "itemsInCart": i % 7,
            "sessionDuration": (i % 40) / 2,
        }
        for i in range(n)
    ]


def iso_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


def post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        reply.read()


def get_ms(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as reply:
        body = reply.read()
    return (time.perf_counter() - started) * 1000, body


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms (n={len(ordered)})"


def timed(call: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def in_process(shoppers: int, requests: int) -> dict[str, str]:
    """The server's own share: a store of the same size, timed without HTTP."""
    settings = Settings()
    store = ShopperStore(settings)
    ingestor = Ingestor(settings, store, EventLog(), Hub())
    records = crowd(shoppers, iso_now())
    for start in range(0, len(records), 10_000):
        ingestor.ingest(records[start : start + 10_000], "http")
    tune_collector()  # as the service does once it is built
    finder = ShopperFinder(store)
    out: dict[str, str] = {}
    out["the index's first sync (every shopper)"] = percentiles(timed(finder.sync, 1))
    search: list[float] = []
    for q in QUERIES:
        query = ShopperQuery(q=q, limit=25)
        search += timed(lambda query=query: finder.page(query), requests // len(QUERIES))
    out["finder.page(q), 25 a page"] = percentiles(search)
    first_page = timed(lambda: finder.page(ShopperQuery(limit=25)), 30)
    out["finder.page() unfiltered, sort=recent"] = percentiles(first_page)
    online = timed(lambda: finder.page(ShopperQuery(online=True, sort="cart", limit=25)), 30)
    out["finder.page(online, sort=cart)"] = percentiles(online)

    ring = HistoryRing(store)
    now = time.time()
    for second in range(SECONDS):
        ring.sample(now - SECONDS + second)
    for window in (300, 3600):
        samples = timed(lambda w=window: orjson.dumps(ring.window(w)), requests)
        out[f"ring.window({window}) + JSON, not cached"] = percentiles(samples)
    return out


def ring_memory() -> tuple[int, int]:
    """Bytes a full ring holds (tracemalloc, and the columns' own count) with every column used."""
    settings = Settings(label_cap=MAX_ACTIVITIES + 10)
    store = ShopperStore(settings)
    ingestor = Ingestor(settings, store, EventLog(), Hub())
    now_iso = iso_now()
    many = [
        {"userId": f"m{i}", "userName": "M", "timestamp": now_iso, "isActive": True,
         "activeFeature": f"Activity {i}"}
        for i in range(MAX_ACTIVITIES + 5)
    ]  # fmt: skip
    ingestor.ingest(many, "http")
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    ring = HistoryRing(store)
    start = time.time() - 2 * SECONDS
    for second in range(2 * SECONDS):
        ring.sample(start + second)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown, ring.nbytes()


def page_runs(base: str, runs: int) -> tuple[list[float], list[dict[str, int]], list[float]]:
    from playwright.sync_api import sync_playwright

    paints: list[float] = []
    points: list[dict[str, int]] = []
    searches: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(base + "/")
            page.wait_for_function("document.documentElement.dataset.chartsPoints", timeout=30_000)
            paints.append(float(page.evaluate("document.documentElement.dataset.chartsAt")))
            points.append(
                json.loads(page.evaluate("document.documentElement.dataset.chartsPoints"))
            )
            context.close()
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(base + "/")
        page.click("#tab-shoppers")
        page.wait_for_selector("#shopper-rows tr[data-user]", timeout=30_000)
        for _ in range(runs):
            for q in PAGE_QUERIES:
                searches.append(page.evaluate(SEARCH_IN_PAGE, q))
                page.evaluate(SEARCH_IN_PAGE, "")
        context.close()
        browser.close()
    return paints, points, searches


# From the input event to the frame in which every row shown matches (or, for "", any rows).
SEARCH_IN_PAGE = """async (q) => {
    const input = document.querySelector('#shopper-search');
    const started = performance.now();
    input.value = q;
    input.dispatchEvent(new Event('input', { bubbles: true }));
    const wanted = q.toLowerCase();
    await new Promise((done, fail) => {
        const check = () => {
            const rows = [...document.querySelectorAll('#shopper-rows tr[data-user]')];
            if (rows.length && rows.every((r) => r.textContent.toLowerCase().includes(wanted))
                && (q || rows.length >= 25)) done();
            else if (performance.now() - started > 10_000) fail(new Error(`no results for ${q}`));
            else requestAnimationFrame(check);
        };
        requestAnimationFrame(check);
    });
    return performance.now() - started;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=100_000)
    parser.add_argument("--fill", type=float, default=310, help="seconds for the ring to fill")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=210)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPPER_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--port", str(port), "--demo", "30",
         "--demo-speed", "10", "--retention", "7200", "--active-window", "3600"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port)
        records = crowd(args.shoppers, iso_now())
        for start in range(0, len(records), 2000):
            post(base + "/api/metrics", orjson.dumps(records[start : start + 2000]))
        pushed_at = time.monotonic()
        while time.monotonic() - pushed_at < args.fill:
            time.sleep(5)
        _, body = get_ms(base + "/api/summary")
        tracked = json.loads(body)["trackedShoppers"]
        held = len(json.loads(get_ms(base + "/api/history?window=300")[1])["time"])

        paints, points, searches = page_runs(base, args.runs)
        http: dict[str, list[float]] = {"search": [], "history300": [], "history3600": []}
        for i in range(args.requests):
            q = QUERIES[i % len(QUERIES)].replace(" ", "%20")
            http["search"].append(get_ms(f"{base}/api/shoppers?q={q}&limit=25")[0])
            http["history300"].append(get_ms(base + "/api/history?window=300")[0])
            http["history3600"].append(get_ms(base + "/api/history?window=3600")[0])
        load = load_average()
    finally:
        server.terminate()
        server.wait(10)

    own = in_process(args.shoppers, args.requests)
    grown, columns = ring_memory()
    print(f"## Live page at {tracked:,} tracked shoppers (`bench/page_bench.py`)\n")
    print(f"{machine()}; load average at the end {load}; the ring held {held} s of the 5-minute")
    print("window when the page was opened.\n")
    print("| Measure | Result |")
    print("|---|---|")
    print(f"| First paint with full charts (navigation → charts drawn from history), {args.runs} "
          f"loads | median {statistics.median(paints):.0f} ms; "
          f"{', '.join(f'{p:.0f}' for p in paints)} ms |")  # fmt: skip
    fewest = min(min(p.values()) for p in points)
    print(f"| Points per chart at first paint | at least {fewest} |")
    print(f"| Search → results in the page (input → only matches shown), {len(searches)} searches "
          f"| {percentiles(searches)}; max {max(searches):.0f} ms |")  # fmt: skip
    print(f"| GET /api/shoppers?q=… over loopback | {percentiles(http['search'])} |")
    print(
        f"| GET /api/history?window=300 over loopback (encoded once a second, shared) | "
        f"{percentiles(http['history300'])} |"
    )
    print(
        f"| GET /api/history?window=3600 over loopback (same) | "
        f"{percentiles(http['history3600'])} |"
    )
    for name, result in own.items():
        print(f"| in-process, {args.shoppers:,} shoppers: {name} | {result} |")
    print(
        f"| History ring, full (an hour, {MAX_ACTIVITIES} activity columns) | "
        f"{grown / 2**20:.2f} MiB by tracemalloc; columns {columns / 2**20:.2f} MiB |"
    )


if __name__ == "__main__":
    main()
