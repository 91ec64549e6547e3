"""Latency of Loki log queries over full 100k- and 1M-event logs (run by hand, not a test).

The log is filled by the demo generator's shopper journeys through the real Ingestor, then
Grafana-shaped `query_range` requests go through the HTTP stack in-process:

    .venv/bin/python bench/loki_query.py [--events 100000,1000000] [--runs 50]
        [--source DIR] [--rounds 2]

Each (checkout, log size) runs in a process of its own; with `--source DIR` (another checkout,
e.g. /work/main) the two checkouts take turns, round after round, so both see the same load.
Reports p50/p99 in milliseconds per query, and beside them `speed`, the milliseconds of a
fixed pure-Python loop timed in the same process (lower is a quicker machine at that moment).
Targets: selector + line filter p50 ≤ 20 ms;
json + label filter (limit 1000) p50 ≤ 100 ms; sum by type count_over_time over 60 steps
p50 ≤ 30 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from exporter.app import create_app
from exporter.cli import tune_collector
from exporter.demo import DemoGenerator
from exporter.keys import EVENT_LOG, INGESTOR
from exporter.settings import Settings

QUERIES = {
    "selector + line filter, limit 1000": '{job="shopper-events", type=~"cart_.*"} |= "Austin"',
    "selector only, limit 1000": '{job="shopper-events"}',
    "half the log's streams, limit 1000": '{job="shopper-events", membership="Free"}',
    "selector + rare line filter, limit 1000": '{job="shopper-events"} |= "Premium+"',
    "json + label filter, limit 1000": '{job="shopper-events"} | json | cartValue > 100',
    "sum by type count_over_time, 60 steps": (
        'sum by (type) (count_over_time({job="shopper-events"}[1m]))'
    ),
}


def fill(app: Any, events: int, seed: int = 7) -> float:
    """Run demo journeys through the Ingestor until the log holds `events`; returns seconds."""
    ingestor = app[INGESTOR]
    log = app[EVENT_LOG]
    generator = DemoGenerator(2_000, seed=seed, pace=0.5)
    started = time.perf_counter()
    now = time.time() - 3_000
    while log.last_id < events:
        updates, explicit = generator.tick(now)
        if updates or explicit:
            ingestor.ingest({"metrics": updates, "events": explicit}, "demo")
        now += 0.25
    return time.perf_counter() - started


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def measure(client: TestClient[Any, Any], query: str, runs: int) -> tuple[list[float], int]:
    now_ns = time.time_ns()
    params = {
        "query": query,
        "start": str(now_ns - 3_600_000_000_000),
        "end": str(now_ns),
        "limit": "1000",
        "step": "60000ms",
        "direction": "backward",
    }
    timings: list[float] = []
    returned = 0
    for _ in range(runs):
        started = time.perf_counter()
        resp = await client.get("/loki/api/v1/query_range", params=params)
        raw = await resp.read()
        # The clock stops when the reply is in: decoding it is the client's cost, not ours.
        timings.append((time.perf_counter() - started) * 1000)
        body = orjson.loads(raw)
        assert resp.status == 200, body
        result = body["data"]["result"]
        if body["data"]["resultType"] == "streams":
            returned = sum(len(s["values"]) for s in result)
        else:
            returned = len(result)
    return timings, returned


def machine_speed() -> float:
    """Milliseconds of a fixed pure-Python loop (best of 5), timed just before the queries.

    This machine's speed changes by 2.5 to 3 times from one stretch of minutes to the next (the
    same code, the same query); this figure, beside each row, tells the stretches apart.
    """
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - started)
    return best * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def worker(events: int, runs: int) -> dict[str, Any]:
    """Fill one log of `events` and time every query; the figures as a JSON-able dict."""
    app = create_app(Settings(event_log_size=events, retention=7_200.0))
    tune_collector()  # as the service does once its app is built
    out: dict[str, Any] = {"events": events, "queries": {}}
    async with TestClient(TestServer(app)) as client:
        out["fill_s"] = fill(app, events)
        out["held"] = len(app[EVENT_LOG])
        out["speed_ms"] = machine_speed()
        for name, query in QUERIES.items():
            await measure(client, query, 3)  # warm up
            timings, returned = await measure(client, query, runs)
            out["queries"][name] = {
                "p50": statistics.median(timings),
                "p99": percentile(timings, 0.99),
                "returned": returned,
            }
    return out


ROOT = Path(__file__).resolve().parent.parent


def run_in(source: Path, events: int, runs: int) -> dict[str, Any]:
    """One worker process with `source` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(events)]
    done = subprocess.run(
        [*command, "--runs", str(runs)], env=env, cwd=source, capture_output=True, check=True
    )
    return dict(orjson.loads(done.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--source", type=Path, help="another checkout, measured in turn")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(orjson.dumps(asyncio.run(worker(args.worker, args.runs))).decode())
        return
    sizes = [int(size) for size in args.events.split(",")]
    checkouts = [ROOT] + ([args.source.resolve()] if args.source else [])
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")
    header = f"{'round':>5} {'checkout':28} {'events':>9} {'query':42} {'p50 ms':>8} {'p99 ms':>8}"
    print(header + f" {'returned':>9} {'load':>5} {'speed':>6}")
    for round_no in range(1, args.rounds + 1):
        for events in sizes:
            for source in checkouts:
                result = run_in(source, events, args.runs)
                load = os.getloadavg()[0]
                for name, figures in result["queries"].items():
                    print(
                        f"{round_no:5d} {str(source)[-28:]:28} {result['held']:9d} {name:42} "
                        f"{figures['p50']:8.2f} {figures['p99']:8.2f} "
                        f"{figures['returned']:9d} {load:5.1f} {result['speed_ms']:6.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
