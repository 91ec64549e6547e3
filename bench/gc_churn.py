"""Frozen garbage under churn: does the permanent generation outgrow the state?

    .venv/bin/python bench/gc_churn.py [--shoppers 20000] [--minutes 5]

One exporter with --state-file and --snapshot-interval 1 is filled with N shoppers; then for
--minutes, at once: single pushes over HTTP, WebSocket pushers that connect, push a few bodies
and leave, SSE and WebSocket subscribers that connect, read a few frames and leave, and scrapes.
Every 5 s /metrics gives the frozen objects (at their last count: the service counts them only
once its heap grew by a quarter, so a flat column means no count was due), the tracked shoppers,
the full collections of the frozen objects (reclaims) and the collections' pauses; with the RSS.
Prints a Markdown table and writes bench/out/gc_churn.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "bench"))

from compare import NewShoppers, demo_records, http_bulk, load_average, machine, rss_bytes  # noqa: E402
from snapshot_bench import Exporter  # noqa: E402

WATCHED = (
    "shopper_exporter_gc_frozen_objects",
    "shopper_tracked_shoppers",
    "shopper_exporter_gc_reclaims_total",
    "shopper_exporter_stream_subscribers",
)


def metrics(body: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in body.splitlines():
        name, _, value = line.rpartition(" ")
        base = name.split("{")[0]
        if base in WATCHED:
            found[base] = found.get(base, 0.0) + float(value)
        elif base == "shopper_exporter_gc_pause_seconds_count":
            found[f"collections{name[len(base) :]}"] = float(value)
        elif base == "shopper_exporter_gc_pause_seconds_sum":
            found[f"pause{name[len(base) :]}"] = float(value)
    return found


def record(user: str, i: int) -> bytes:
    return orjson.dumps(
        {
            "userId": user,
            "userName": "Churn Shopper",
            "timestamp": datetime.fromtimestamp(1_800_100_000 + i / 50, UTC).isoformat(),
            "isActive": True,
            "pageViews": 1000 + i,
        }
    )


async def churn(base: str, seconds: float, ids: list[str], samples: list[dict[str, float]]) -> None:
    deadline = time.perf_counter() + seconds
    ws_url = base.replace("http://", "ws://") + "/ws"
    counter = iter(range(10**9))
    started = time.perf_counter()

    async def pusher(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                body = record(random.choice(ids), next(counter))
                async with session.post(base + "/api/metrics", data=body) as resp:
                    await resp.read()
            await asyncio.sleep(0.01)

    async def ws_pusher(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.ws_connect(ws_url) as ws:
                    for _ in range(random.randint(1, 20)):
                        await ws.send_bytes(record(random.choice(ids), next(counter)))
                        await asyncio.wait_for(ws.receive(), 5)
            await asyncio.sleep(0.05)

    async def sse_reader(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(base + "/api/stream") as resp:
                    for _ in range(random.randint(1, 5)):
                        await asyncio.wait_for(resp.content.readline(), 5)
            await asyncio.sleep(random.uniform(0, 2))

    async def ws_reader(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.ws_connect(ws_url) as ws:
                    await ws.send_str('{"type": "subscribe"}')
                    for _ in range(random.randint(1, 10)):
                        await asyncio.wait_for(ws.receive(), 5)
            await asyncio.sleep(random.uniform(0, 2))

    async def sampler(session: aiohttp.ClientSession, pid: int) -> None:
        while time.perf_counter() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(base + "/metrics") as resp:
                    found = metrics(await resp.text())
                found["t"] = time.perf_counter() - started
                found["rss"] = rss_bytes(pid)
                samples.append(found)
            await asyncio.sleep(5)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        jobs = [pusher(session), pusher(session), ws_pusher(session), ws_pusher(session)]
        jobs += [sse_reader(session) for _ in range(4)] + [ws_reader(session) for _ in range(4)]
        await asyncio.gather(sampler(session, SERVICE_PID[0]), *jobs)


SERVICE_PID = [0]


def gen(g: int) -> str:
    return '{generation="' + str(g) + '"}'


def table(samples: list[dict[str, float]]) -> str:
    rows = [
        "| t (s) | Tracked shoppers | Frozen objects | Per shopper | Reclaims | Collections "
        "gen 0 / 1 / 2 | Pause total gen 0 / 1 / 2 (ms) | RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        shoppers = s.get("shopper_tracked_shoppers", 0)
        frozen = s.get("shopper_exporter_gc_frozen_objects", 0)
        counts = " / ".join(f"{s.get('collections' + gen(g), 0):.0f}" for g in range(3))
        pauses = " / ".join(f"{s.get('pause' + gen(g), 0) * 1000:.0f}" for g in range(3))
        rows.append(
            f"| {s['t']:.0f} | {shoppers:,.0f} | {frozen:,.0f} | {frozen / max(1, shoppers):.1f} "
            f"| {s.get('shopper_exporter_gc_reclaims_total', 0):.0f} | {counts} | {pauses} "
            f"| {s['rss'] / 2**20:,.0f} MiB |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shoppers", type=int, default=20_000)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    header = f"Machine: {machine()}; load average at start {load_average()}"
    print(header, flush=True)
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="gc-churn-") as work:
        state = Path(work) / "churn.state"
        log = OUT / "gc_churn.log"
        log.unlink(missing_ok=True)
        service = Exporter(
            ROOT, log, "--state-file", str(state), "--snapshot-interval", "1", "--log-level", "info"
        )
        SERVICE_PID[0] = service.proc.pid
        try:
            maker = NewShoppers(demo_records(1000, 1000))
            asyncio.run(http_bulk(f"{service.base}/api/metrics", maker.batches(args.shoppers)))
            ids = [
                f"n{k:05d}_{j:04d}" for k in range(args.shoppers // 1000) for j in range(0, 1000, 7)
            ]
            asyncio.run(churn(service.base, args.minutes * 60, ids, samples))
        finally:
            service.stop()
    report = f"{header}; at end {load_average()}\n\n{table(samples)}\n"
    print(report)
    (OUT / "gc_churn.md").write_text(report)


if __name__ == "__main__":
    main()
