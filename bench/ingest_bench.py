"""Ingest and scrape benchmark, with its baselines measured in the same run.

    .venv/bin/python bench/ingest_bench.py [--quick]

Measures, side by side: an aiohttp no-op POST handler and pydantic-only validation (ceilings);
the exporter's single-record POST (wrk) and bulk ingest (1,000-record batches); /metrics latency
with 100 and 1,000,000 tracked shoppers; resident memory per tracked shopper. Prints a Markdown
table for bench/RESULTS.md. Needs `wrk` (Debian package) for the request-rate figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.demo import DemoGenerator  # noqa: E402
from exporter.model import ShopperUpdate  # noqa: E402

NOOP_SERVER = """
import sys
from aiohttp import web
async def noop(request):
    await request.read()
    return web.json_response({"accepted": 1})
app = web.Application()
app.router.add_post("/api/metrics", noop)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def demo_records(count: int, shoppers: int) -> list[dict[str, Any]]:
    """Realistic updates: many shoppers, each advancing through a journey."""
    generator = DemoGenerator(shoppers, seed=7, pace=4.0)
    now, out = 1_800_000_000.0, []
    while len(out) < count:
        updates, _ = generator.tick(now)
        out.extend(updates)
        now += 0.25
    return out[:count]


def wrk_rate(url: str, body: bytes, seconds: int) -> float:
    """Requests per second that wrk reaches POSTing `body` (2 threads, 32 connections).

    wrk shares the machine's two cores with the server, so both figures are conservative.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        return float("nan")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        # Each request names a new shopper (__N__ → a counter), so none is a duplicate.
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"local template = {json.dumps(body.decode())}\n"
            "local n = 0\n"
            "request = function()\n"
            "  n = n + 1\n"
            '  local id = tostring(n) .. "_" .. tostring(math.random(1e9))\n'
            '  local b = string.gsub(template, "__N__", id)\n'
            "  return wrk.format(nil, nil, nil, b)\n"
            "end\n"
        )
    out = subprocess.run(
        [wrk, "-t2", "-c32", f"-d{seconds}s", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else float("nan")


def pydantic_rate(records: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for record in records:
        ShopperUpdate.model_validate(record)
    return len(records) / (time.perf_counter() - started)


async def bulk_rate(url: str, batches: list[bytes], concurrency: int = 4) -> float:
    """Records per second for pre-encoded 1,000-record batches, `concurrency` in flight."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    accepted = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                reply = await resp.json()
                accepted += reply["accepted"] + reply.get("ignored", 0)

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return accepted / elapsed


SCRAPE_PROBE = """
import gc, os, sys, time, statistics
sys.path.insert(0, sys.argv[2])
from prometheus_client import generate_latest
from exporter.collector import ShopperCollector, build_registry
from exporter.eventlog import EventLog, Hub
from exporter.ingest import Ingestor
from exporter.demo import DemoGenerator
from exporter.model import ShopperUpdate
from exporter.settings import Settings
from exporter.status import ServiceStatus
from exporter.store import ShopperStore

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

n = int(sys.argv[1])
template = DemoGenerator(50, seed=1).tick(1_800_000_000.0)[0]
updates = [ShopperUpdate.model_validate(u) for u in template]
settings = Settings(retention=1e9, active_window=1e9)
store = ShopperStore(settings)
log = EventLog(settings.event_log_size)
ingestor = Ingestor(settings, store, log, Hub())
registry = build_registry(ShopperCollector(store, ingestor, log, ingestor.hub, ServiceStatus()))
gc.collect()
before = rss()
now = 1_800_000_000.0
for i in range(n):
    who = {"user_id": f"shopper_{i:07d}", "user_name": f"Shopper {i}"}
    u = updates[i % len(updates)].model_copy(update=who)
    ingestor.record(store.apply(u, now))
del u
gc.collect()
after = rss()
times = []
for _ in range(30):
    t = time.perf_counter()
    generate_latest(registry)
    times.append(time.perf_counter() - t)
print(n, statistics.median(times) * 1000, (after - before) / n)
"""


def scrape_probe(shoppers: int) -> tuple[float, float]:
    """(median /metrics render ms, RSS bytes per shopper) in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", SCRAPE_PROBE, str(shoppers), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[1]), float(out[2])


async def http_scrape_ms(url: str, rounds: int = 30) -> float:
    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            started = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, 100k shoppers")
    args = parser.parse_args()
    seconds = 5 if args.quick else 10
    big = 100_000 if args.quick else 1_000_000

    records = demo_records(200_000, shoppers=20_000)
    single = orjson.dumps(records[0] | {"userId": "bench___N__"})
    batches = [orjson.dumps(records[i : i + 1000]) for i in range(0, len(records), 1000)]

    noop_port, exp_port = free_port(), free_port()
    noop = start([sys.executable, "-c", NOOP_SERVER, str(noop_port)])
    exporter = start(
        [sys.executable, "-m", "exporter", "--port", str(exp_port), "--max-body-bytes", "8388608"]
    )
    results: dict[str, float] = {}
    try:
        wait_ready(f"http://127.0.0.1:{noop_port}")
        wait_ready(f"http://127.0.0.1:{exp_port}")
        results["pydantic_rps"] = pydantic_rate(records[:50_000])
        results["noop_single"] = wrk_rate(
            f"http://127.0.0.1:{noop_port}/api/metrics", single, seconds
        )
        # The no-op answers accepted=1 per body; each body holds 1,000 records.
        results["noop_bulk"] = 1000 * asyncio.run(
            bulk_rate(f"http://127.0.0.1:{noop_port}/api/metrics", batches[:100])
        )
        results["exporter_bulk"] = asyncio.run(
            bulk_rate(f"http://127.0.0.1:{exp_port}/api/metrics", batches)
        )
        results["exporter_single"] = wrk_rate(
            f"http://127.0.0.1:{exp_port}/api/metrics", single, seconds
        )
        results["http_scrape_ms"] = asyncio.run(
            http_scrape_ms(f"http://127.0.0.1:{exp_port}/metrics")
        )
    finally:
        for proc in (noop, exporter):
            proc.terminate()
            proc.wait(10)
    gc.collect()
    small_ms, _ = scrape_probe(100)
    big_ms, per_shopper = scrape_probe(big)

    def mark(ok: bool) -> str:
        return "met" if ok else "not met"

    rows = [
        (
            "pydantic-only validation (ceiling)",
            f"{results['pydantic_rps']:,.0f} records/s",
            "1.00",
            "",
        ),
        (
            "aiohttp no-op POST, single (ceiling)",
            f"{results['noop_single']:,.0f} req/s",
            "1.00",
            "",
        ),
        (
            "aiohttp no-op POST, 1,000-record bodies (ceiling)",
            f"{results['noop_bulk']:,.0f} records/s",
            "1.00",
            "",
        ),
        (
            "exporter bulk ingest, 1,000-record batches",
            f"{results['exporter_bulk']:,.0f} records/s",
            f"{results['exporter_bulk'] / results['pydantic_rps']:.2f} of pydantic",
            f"≥ 100k/s: {mark(results['exporter_bulk'] >= 100_000)}",
        ),
        (
            "exporter single-record POST",
            f"{results['exporter_single']:,.0f} req/s",
            f"{results['exporter_single'] / results['noop_single']:.2f} of no-op",
            f"≥ 10k/s: {mark(results['exporter_single'] >= 10_000)}",
        ),
        ("/metrics render, 100 shoppers", f"{small_ms:.2f} ms", "1.00", ""),
        (
            f"/metrics render, {big:,} shoppers",
            f"{big_ms:.2f} ms",
            f"{big_ms / small_ms:.2f}× of 100",
            f"≤ 1.5×: {mark(big_ms <= 1.5 * small_ms)}",
        ),
        ("/metrics over HTTP (after the bulk run)", f"{results['http_scrape_ms']:.2f} ms", "", ""),
        (
            "RSS per tracked shopper",
            f"{per_shopper:,.0f} bytes",
            "",
            f"≤ 1 KiB: {mark(per_shopper <= 1024)}",
        ),
    ]
    print(f"Machine: {machine()}\n")
    print("| Measure | Result | Ratio | Target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
