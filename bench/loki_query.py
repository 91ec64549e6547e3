"""Latency of Loki log queries over a full 100k-event log (run by hand, not a test).

The log is filled by the demo generator's shopper journeys through the real Ingestor, then
Grafana-shaped `query_range` requests go through the HTTP stack in-process:

    .venv/bin/python bench/loki_query.py [--events 100000] [--runs 200]

Reports p50/p99 in milliseconds per query (target: selector + line filter, limit 1000,
p50 ≤ 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    app = create_app(Settings(event_log_size=args.events, retention=7_200.0))
    tune_collector()  # as the service does once its app is built
    async with TestClient(TestServer(app)) as client:
        seconds = fill(app, args.events)
        log = app[EVENT_LOG]
        print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")
        print(f"event log: {len(log)} events (filled in {seconds:.1f}s)")
        print(f"{'query':42} {'p50 ms':>8} {'p99 ms':>8} {'returned':>9}")
        for name, query in QUERIES.items():
            await measure(client, query, 5)  # warm up
            timings, returned = await measure(client, query, args.runs)
            p50, p99 = statistics.median(timings), percentile(timings, 0.99)
            print(f"{name:42} {p50:8.2f} {p99:8.2f} {returned:9d}")


if __name__ == "__main__":
    asyncio.run(main())
