"""Scrape and /healthz latency while Loki queries run (run by hand, not a test).

Starts the exporter as its own process (from this checkout, or `--source DIR` for another, to
compare side by side), fills its event log through Loki's push API, then scrapes `/metrics` and
asks `/healthz` every 20 ms while, in turn:

- nothing else runs (the baseline);
- one heavy log query runs again and again (json on every line, a rare label filter);
- `--concurrent` heavy queries run at once (each client repeats as soon as it is answered);
- one query with a backtracking-prone regex, `(a|aa)*c`, over lines of 26 `a`s.

    .venv/bin/python bench/loki_pacing.py [--events 100000] [--seconds 20] [--source DIR]

Target (issue): p99 scrape latency during a heavy query under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support import free_port, wait_until  # noqa: E402

HEAVY = '{job="shopper-events"} | json | line=~"never.*seen"'
BACKTRACKING = '{job="shopper-events"} |= "aaaaaaaaaa" |~ "(a|aa)*c"'
BACKTRACKING_RUN = 26
"""Length of the `a` runs: Python's backtracking `re` needs about 0.2 s a line for this."""


def push(base: str, values: list[list[str]], kind: str) -> None:
    body = orjson.dumps({"streams": [{"stream": {"job": "app", "type": kind}, "values": values}]})
    request = urllib.request.Request(
        base + "/loki/api/v1/push", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        assert resp.status == 204, resp.status


def fill(base: str, events: int) -> float:
    """Plain lines of an order audit, 10,000 to a push; seconds taken."""
    started = time.perf_counter()
    now = time.time_ns() - events * 1_000
    for batch in range(0, events, 10_000):
        values = [
            [str(now + i * 1_000), f"order {i} for shopper {i % 977} in Austin, TX: 3 items"]
            for i in range(batch, min(events, batch + 10_000))
        ]
        push(base, values, "audit")
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    ms = [v * 1000 for v in values]
    return (
        f"n={len(ms):4d}  p50 {statistics.median(ms):7.1f}  p99 {percentile(ms, 0.99):7.1f}  "
        f"max {max(ms):7.1f} ms"
    )


SCRAPE_HEADERS = {"Accept-Encoding": "gzip"}
"""What Prometheus sends (`--identity` asks for the body as it is instead)."""


async def probe(
    session: aiohttp.ClientSession, base: str, until: float, seen: dict[str, list[float]]
) -> None:
    """Scrape and /healthz in turn every 20 ms until `until`, recording each latency."""
    while time.monotonic() < until:
        for name, path in (("scrape", "/metrics"), ("healthz", "/healthz")):
            started = time.perf_counter()
            async with session.get(base + path, headers=SCRAPE_HEADERS) as resp:
                await resp.read()
            seen[name].append(time.perf_counter() - started)
        await asyncio.sleep(0.02)


async def repeat_query(
    session: aiohttp.ClientSession, base: str, query: str, until: float, took: list[float]
) -> dict[int, int]:
    """Ask `query` again and again until `until`; status counts, durations into `took`."""
    statuses: dict[int, int] = {}
    params = urlencode({"query": query, "limit": "1000"})
    while time.monotonic() < until:
        started = time.perf_counter()
        async with session.get(f"{base}/loki/api/v1/query_range?{params}") as resp:
            await resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
        took.append(time.perf_counter() - started)
    return statuses


async def scenario(
    name: str,
    base: str,
    seconds: float,
    load: Callable[[aiohttp.ClientSession, float], list[Awaitable[Any]]],
) -> None:
    seen: dict[str, list[float]] = {"scrape": [], "healthz": []}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        until = time.monotonic() + seconds
        results = await asyncio.gather(probe(session, base, until, seen), *load(session, until))
    print(f"\n{name}")
    for probe_name, values in seen.items():
        print(f"  {probe_name:8} {summary(values)}")
    for result in results[1:]:
        if result:
            print(f"  query statuses {result}")


async def run(base: str, seconds: float, concurrent: int) -> None:
    heavy_took: list[float] = []
    await scenario("idle (no query)", base, seconds / 2, lambda s, u: [])
    await scenario(
        "one heavy query, repeated",
        base,
        seconds,
        lambda s, u: [repeat_query(s, base, HEAVY, u, heavy_took)],
    )
    print(f"  heavy query {summary(heavy_took)}")
    many_took: list[float] = []
    await scenario(
        f"{concurrent} heavy queries at once, repeated",
        base,
        seconds,
        lambda s, u: [repeat_query(s, base, HEAVY, u, many_took) for _ in range(concurrent)],
    )
    print(f"  heavy query {summary(many_took)}")
    regex_took: list[float] = []
    await scenario(
        f"backtracking-prone regex (a|aa)*c over lines of {BACKTRACKING_RUN} a's",
        base,
        seconds / 2,
        lambda s, u: [repeat_query(s, base, BACKTRACKING, u, regex_took)],
    )
    print(f"  regex query {summary(regex_took)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to run the exporter")
    parser.add_argument("--identity", action="store_true", help="scrape without gzip")
    args = parser.parse_args()
    if args.identity:
        SCRAPE_HEADERS["Accept-Encoding"] = "identity"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(args.source.resolve())}
    command = [
        sys.executable, "-m", "exporter", "--port", str(port),
        "--event-log-size", str(args.events + 1_000), "--max-body-bytes", str(4 << 20),
    ]  # fmt: skip
    log = open(f"/tmp/loki_pacing-{port}.log", "wb")  # noqa: SIM115 (lives as long as the process)
    process = subprocess.Popen(command, cwd=args.source, env=env, stdout=log, stderr=log)
    try:
        wait_until(lambda: urllib.request.urlopen(base + "/readyz", timeout=1).status == 200)
        with open("/proc/loadavg") as load:
            print(f"source: {args.source.resolve()}  load at start: {load.read().split()[:3]}")
        print(f"filled {args.events} lines in {fill(base, args.events):.1f}s")
        now = time.time_ns()
        push(base, [[str(now + i), "a" * BACKTRACKING_RUN] for i in range(24)], "backtrack")
        asyncio.run(run(base, args.seconds, args.concurrent))
        with open("/proc/loadavg") as load:
            print(f"\nload average at end: {load.read().split()[:3]}")
    finally:
        process.terminate()
        process.wait(10)
        log.close()


if __name__ == "__main__":
    main()
