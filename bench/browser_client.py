"""Browser client benchmark: one page pushing 1,000 updates/s through metrics-service.js.

    .venv/bin/python bench/browser_client.py [--rate 1000] [--seconds 30] [--runs 3]
        [--batch-ms 250] [--shoppers 1000] [--poll-ms 10]

A shop page on another origin (headless Chromium) imports the client from the exporter and
calls `pushUserMetric` at `--rate` per second, spread over `--shoppers` shoppers; each update
carries its sequence number as `pageViews` (a plain count, shown as sent) and the page notes
when it pushed it. Measured:
- requests/s the exporter received from the page (every request bearing the page's Origin,
  preflights included), counted by the exporter process itself through a hook on its replies;
- push → visible in /api/shoppers: every ~300 ms (jittered, so it does not lock to the batch
  window) one of the updates goes to the shopper `bench_probe`, and a poller reads
  /api/shoppers/bench_probe every `--poll-ms`; latency = first seen minus pushed (an upper bound:
  the poll interval adds up to `--poll-ms`). Reading the whole list instead costs more than the
  client being measured (~18 ms a read of 500 shoppers here);
- push → visible for every update: an SSE reader of /api/stream?types=user_metric, whose frame
  is published by the same ingest call that makes the update visible in /api/shoppers;
- what the client itself adds: how long the oldest record of each body waited before the body
  left, and the request round trips (fetch start → reply), to tell batching from server delay.
Targets: requests/s ≤ 10, p99 latency ≤ batchMs + 100 ms. Prints Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_shop import OriginServer, chromium  # noqa: E402
from support import free_port, wait_until  # noqa: E402

# The real service, plus a count of the requests that carry an Origin header (the page's), read
# back at /bench/requests (which carries none, so it does not count itself).
EXPORTER = """
import sys
from aiohttp import web
from exporter.app import create_app
from exporter.cli import settings_from_args, tune_collector
settings = settings_from_args(sys.argv[1:])
app = create_app(settings)
counted = {"requests": 0, "preflights": 0}
async def count(request, response):
    if "Origin" in request.headers:
        counted["preflights" if request.method == "OPTIONS" else "requests"] += 1
async def report(request):
    return web.json_response(counted)
app.on_response_prepare.append(count)
app.router.add_get("/bench/requests", report)
tune_collector()
web.run_app(app, host="127.0.0.1", port=settings.port, print=None, access_log=None)
"""

PUSHER = """
import { metricsService } from 'live-shopper-metrics-client';
const realFetch = window.fetch;
window.bench = { pushed: [], probes: [], trips: [], waits: [], start(rate, shoppers, seconds) {
  window.fetch = async (url, init) => {
    const sent = performance.now();
    // How long the oldest record of this body waited in the client before the body left.
    const oldest = Math.min(...JSON.parse(init.body).map((update) => update.pageViews));
    this.waits.push(performance.timeOrigin + sent - this.pushed[oldest]);
    try { return await realFetch(url, init); }
    finally { this.trips.push(performance.now() - sent); }
  };
  metricsService.configure({ batchMs: BATCH_MS });
  const begun = performance.now();
  let seq = 0;
  let nextProbe = begun + 300;
  const tick = () => {
    const elapsed = performance.now() - begun;
    const due = Math.min(Math.floor((elapsed / 1000) * rate), rate * seconds);
    const now = new Date();
    while (seq < due) {
      let userId = `bench_${seq % shoppers}`;
      if (performance.now() >= nextProbe) {
        userId = 'bench_probe';
        this.probes.push(seq);
        nextProbe = performance.now() + 250 + Math.random() * 100;
      }
      metricsService.pushUserMetric({
        userId, userName: 'Bench Shopper', isActive: true, pageViews: seq,
        timestamp: new Date(now.getTime() + seq).toISOString(),
      });
      this.pushed.push(performance.timeOrigin + performance.now());
      seq += 1;
    }
    if (seq < rate * seconds) setTimeout(tick, 5);
    else this.done = true;
  };
  tick();
} };
"""


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line), "?"
    )
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Watcher:
    """In its own thread: polls /api/shoppers/bench_probe every `interval` s and reads the SSE
    stream of user_metric frames; notes when each sequence number (pageViews) first shows."""

    def __init__(self, base_url: str, interval: float) -> None:
        self.base_url = base_url
        self.interval = interval
        self.probe_seen: dict[int, float] = {}
        self.stream_seen: dict[int, float] = {}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._streaming = threading.Event()

    def start(self) -> None:
        self._thread.start()
        if not self._streaming.wait(10):
            raise RuntimeError("the SSE stream did not open")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            stream = asyncio.create_task(self._read_stream(session))
            while not self._stop.is_set():
                started = time.monotonic()
                async with session.get(f"{self.base_url}/api/shoppers/bench_probe") as reply:
                    body = await reply.read() if reply.status == 200 else None
                if body is not None:
                    self.probe_seen.setdefault(orjson.loads(body)["pageViews"], time.time())
                self.polls += 1
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream

    async def _read_stream(self, session: aiohttp.ClientSession) -> None:
        url = f"{self.base_url}/api/stream?types=user_metric"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as reply:
            self._streaming.set()
            async for line in reply.content:
                if line.startswith(b"data: "):
                    seq = orjson.loads(line[6:])["pageViews"]
                    self.stream_seen.setdefault(seq, time.time())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def one_run(browser: Any, args: argparse.Namespace) -> dict[str, Any]:
    shop = OriginServer()
    port = free_port()
    log = (ROOT / "bench" / "out").joinpath(f"browser-client-exporter-{port}.log")
    log.parent.mkdir(exist_ok=True)
    command = [sys.executable, "-c", EXPORTER, "--port", str(port), "--cors-origins", shop.origin]
    with log.open("wb") as out:
        exporter = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    context = browser.new_context()
    try:
        wait_until(lambda: urllib.request.urlopen(base + "/readyz", timeout=1).status == 200, 30)
        shop.serve("/pusher.js", PUSHER.replace("BATCH_MS", str(args.batch_ms)), "text/javascript")
        page = context.new_page()
        page.goto(
            shop.serve_page(f"{base}/client/metrics-service.js", "await import('/pusher.js');")
        )
        page.wait_for_function("window.shop?.ready === true && window.bench")
        watcher = Watcher(base, args.poll_ms / 1000)
        watcher.start()
        cpu_before = _cpu_seconds(exporter.pid)
        page.evaluate(
            "([rate, shoppers, seconds]) => window.bench.start(rate, shoppers, seconds)",
            [args.rate, args.shoppers, args.seconds],
        )
        page.wait_for_function("window.bench.done === true", timeout=(args.seconds + 30) * 1000)
        page.wait_for_function("window.shop.service.stats.queued === 0", timeout=10_000)
        time.sleep(1.0)  # the last batch becomes visible
        watcher.stop()
        cpu = _cpu_seconds(exporter.pid) - cpu_before
        pushed: list[float] = page.evaluate("window.bench.pushed")
        probes: list[int] = page.evaluate("window.bench.probes")
        trips: list[float] = page.evaluate("window.bench.trips")
        waits: list[float] = page.evaluate("window.bench.waits")
        stats = page.evaluate("window.shop.service.stats")
        errors = page.evaluate("window.shop.errors")
        with urllib.request.urlopen(base + "/bench/requests", timeout=5) as reply:
            counted = json.load(reply)
    finally:
        context.close()
        exporter.terminate()
        exporter.wait(10)
        shop.close()

    def latencies(seen: dict[int, float], seqs: list[int]) -> list[float]:
        return [(seen[seq] - pushed[seq] / 1000) * 1000 for seq in seqs if seq in seen]

    probe = latencies(watcher.probe_seen, probes)
    every = latencies(watcher.stream_seen, list(range(len(pushed))))
    return {
        "pushed": len(pushed),
        "accepted": stats["accepted"],
        "errors": len(errors),
        "requests_per_s": (counted["requests"] + counted["preflights"]) / args.seconds,
        "posts": counted["requests"],
        "preflights": counted["preflights"],
        "probes": len(probes),
        "probes_seen": len(probe),
        "probe_p50": percentile(probe, 50),
        "probe_p99": percentile(probe, 99),
        "probe_max": max(probe),
        "stream_seen_share": len(every) / len(pushed),
        "stream_p50": percentile(every, 50),
        "stream_p99": percentile(every, 99),
        "wait_p50": percentile(waits, 50),
        "wait_p99": percentile(waits, 99),
        "trip_p50": percentile(trips, 50),
        "trip_p99": percentile(trips, 99),
        "exporter_cpu_share": cpu / args.seconds,
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="updates per second")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shoppers", type=int, default=1000, help="shoppers updated in turn")
    parser.add_argument("--batch-ms", type=int, default=250)
    parser.add_argument("--poll-ms", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {machine()}; load before: {load()}", flush=True)
    results = []
    with chromium() as browser:
        for run in range(1, args.runs + 1):
            result = one_run(browser, args)
            results.append(result)
            print(f"run {run}: {json.dumps(result, default=lambda x: round(x, 3))}", flush=True)
    print(f"load after: {load()}\n")
    target = args.batch_ms + 100
    print(
        "| run | pushed | accepted | requests/s (POST + preflight) | /api/shoppers probe "
        "p50 / p99 / max ms (n) | every update, SSE p50 / p99 ms | oldest record's wait in "
        "the client p50 / p99 ms | round trip p50 / p99 ms | exporter CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for run, r in enumerate(results, 1):
        print(
            f"| {run} | {r['pushed']} | {r['accepted']} | {r['requests_per_s']:.2f} "
            f"({r['posts']} + {r['preflights']}) | {r['probe_p50']:.0f} / {r['probe_p99']:.0f} / "
            f"{r['probe_max']:.0f} ({r['probes_seen']} of {r['probes']}) | "
            f"{r['stream_p50']:.0f} / {r['stream_p99']:.0f} ({r['stream_seen_share']:.1%} seen) | "
            f"{r['wait_p50']:.0f} / {r['wait_p99']:.0f} | "
            f"{r['trip_p50']:.0f} / {r['trip_p99']:.0f} | {r['exporter_cpu_share']:.0%} |"
        )
    worst_rate = max(r["requests_per_s"] for r in results)
    worst_p99 = max(r["probe_p99"] for r in results)
    print(
        f"\nworst requests/s {worst_rate:.2f} (target ≤ 10: "
        f"{'met' if worst_rate <= 10 else 'NOT met'}); worst /api/shoppers p99 {worst_p99:.0f} ms "
        f"(target ≤ {target}: {'met' if worst_p99 <= target else 'NOT met'}); median p99 "
        f"{statistics.median(r['probe_p99'] for r in results):.0f} ms"
    )


if __name__ == "__main__":
    main()
