"""An identity flood at the cap: millions of never-seen shoppers pushed at --max-shoppers.

    .venv/bin/python bench/flood.py [--ids 2000000] [--cap 200000] [--mode both|offline|online]
                                    [--unique-names] [--event-log-max-bytes 16777216]

Starts a real exporter (`--max-shoppers CAP`), then pushes IDS distinct shoppers, each once, as the
brief's full record (a distinct userId; the same userName, as bench/compare.py's fills, unless
`--unique-names`) in 1,000-record HTTP bulk bodies over two connections. Every 100,000 ids it
samples the exporter's RSS, the ingest rate of that slice and the tracked, evicted and refused
counts.

- `offline`: every record says isActive false, so past the cap each new shopper takes the room of
  the offline shopper unseen the longest (the eviction path);
- `online`: every record is active, so the cap fills with online shoppers and every later new
  shopper is refused (429, reason capacity; the refusal path).

    .venv/bin/python bench/flood.py --instructions [--cap 20000]

counts instead, with valgrind's callgrind, the instructions per record of the same bodies taken
in-process into a store below its cap and into a full one where each record evicts a shopper:
steadier than timings on a shared machine. Each is a short and a long run of the same bodies;
their difference is the cost of the records in between, so start-up cancels out.

The event log is bounded by bytes on its own (`--event-log-max-bytes`, 256 MiB by default): at
that bound it is still filling when the cap is reached, and its growth would pass for the
shoppers'. So the exporter runs with a 16 MiB log, full long before half the cap, and that bound
is part of the fixed base; a larger one adds its own size to it.

The budget: RSS at most a fixed base plus 1 KiB per tracked shopper, and an ingest rate that
stays level past the cap. The cost per shopper is the slope of RSS between half the cap and the
cap (the event log and other bounded buffers are full by then); the fixed base is what RSS at the
cap leaves beyond that slope. Prints a Markdown report and writes bench/out/flood.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import OUT, Service, exporter_service, load_average, machine

BODY = 1000
SLICE = 100_000
KIB = 1024


def record(active: bool, now: float, unique_names: bool) -> dict[str, Any]:
    """The brief's "Complete Structure", as a producer sends it (`~` marks the identity)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return {
        "userId": "~",
        "userName": "~ Johnson" if unique_names else "Sarah Johnson",
        "email": "someone@email.com",
        "company": "San Francisco, CA",
        "timestamp": stamp,
        "sessionDuration": 15,
        "pageViews": 28,
        "clickCount": 87,
        "scrollDepth": 65,
        "featuresUsed": ["Browsing", "Cart", "Checkout"],
        "activeFeature": "Cart",
        "featureTime": {"Browsing": 8, "Cart": 5, "Checkout": 2},
        "eventsTriggered": 18,
        "cartValue": 127.5,
        "itemsInCart": 12,
        "productsViewed": 35,
        "searchesPerformed": 4,
        "couponsApplied": 1,
        "membershipType": "Premium",
        "deliveryWindow": "Today",
        "queriesRun": 4,
        "reportsCreated": 0,
        "dashboardsViewed": 0,
        "isActive": active,
        "lastAction": "Added item to cart",
        "lastActionTime": stamp,
    }


def bodies(ids: int, active: bool, unique_names: bool = False) -> Iterator[bytes]:
    """Bodies of BODY never-seen shoppers each, from one encoded template."""
    template = orjson.dumps([record(active, time.time() - 60, unique_names)] * BODY)
    parts = template.split(b'"~')
    marks = len(parts) // BODY  # identity marks per record: userId, and maybe userName
    for serial in range(ids // BODY):
        # userId "f0000123_0456" (and userName "f0000123_0456 Johnson"): every shopper is new.
        out = [parts[0]]
        for i in range(1, len(parts)):
            out.append(b'"f%07d_%04d' % (serial, (i - 1) // marks))
            out.append(parts[i])
        yield b"".join(out)


@dataclass
class Sample:
    ids: int
    seconds: float
    rss: int
    tracked: float
    evicted: float
    refused: float

    def rate(self, previous: Sample) -> float:
        return (self.ids - previous.ids) / (self.seconds - previous.seconds)


@dataclass
class Run:
    mode: str
    base_rss: int
    cap: int
    samples: list[Sample] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    settled_rss: int = 0
    healthz_ms: list[float] = field(default_factory=list)


_SAMPLE = re.compile(rb"^(shopper_\w+?)(?:\{([^}]*)\})? ([0-9.e+-]+)$", re.MULTILINE)


async def counters(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with session.get(base + "/metrics") as resp:
        text = await resp.read()
    found: dict[str, float] = {}
    for name, labels, value in _SAMPLE.findall(text):
        key = name.decode() + (("{" + labels.decode() + "}") if labels else "")
        found[key] = float(value)
    return found


async def flood(service: Service, ids: int, cap: int, mode: str, unique_names: bool) -> Run:
    run = Run(mode, service.rss(), cap)
    url = service.base + "/api/metrics"
    source = bodies(ids, mode == "online", unique_names)
    sent = 0
    lock = asyncio.Lock()

    async with aiohttp.ClientSession() as session:

        async def sample(started: float) -> None:
            got = await counters(session, service.base)
            refused = got.get(
                'shopper_updates_rejected_total{reason="capacity",transport="http"}', 0.0
            )
            run.samples.append(
                Sample(
                    sent,
                    time.perf_counter() - started,
                    service.rss(),
                    got["shopper_tracked_shoppers"],
                    got["shopper_tracked_shoppers_evicted_total"],
                    refused,
                )
            )
            probe = time.perf_counter()
            async with session.get(service.base + "/healthz") as resp:
                assert resp.status == 200
            run.healthz_ms.append((time.perf_counter() - probe) * 1000)

        async def worker(started: float) -> None:
            nonlocal sent
            for body in source:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    await resp.read()
                    run.statuses[resp.status] = run.statuses.get(resp.status, 0) + 1
                async with lock:
                    sent += BODY
                    if sent % SLICE == 0:
                        await sample(started)

        started = time.perf_counter()
        run.samples.append(Sample(0, 0.0, service.rss(), 0, 0, 0))
        await asyncio.gather(worker(started), worker(started))
    await asyncio.sleep(2)
    run.settled_rss = service.rss()
    return run


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def report(run: Run) -> list[str]:
    at_cap = next(s for s in run.samples if s.ids >= run.cap)
    at_half = next(s for s in run.samples if s.ids >= run.cap // 2)
    per_shopper = (at_cap.rss - at_half.rss) / (at_cap.tracked - at_half.tracked)
    fixed = at_cap.rss - per_shopper * at_cap.tracked
    budget = fixed + run.cap * KIB
    peak = max(s.rss for s in run.samples)
    rates = [(s.ids, s.rate(p)) for p, s in zip(run.samples, run.samples[1:], strict=False)]
    before = [r for ids, r in rates if ids <= run.cap]
    after = [r for ids, r in rates if ids > run.cap]
    lines = [
        f"### {run.mode} flood: {run.samples[-1].ids:,} distinct ids at --max-shoppers {run.cap:,}",
        "",
        "| ids pushed | RSS | tracked | evicted | refused | rate of the slice (records/s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for sample, (_, rate) in zip(run.samples[1:], rates, strict=True):
        lines.append(
            f"| {sample.ids:,} | {mib(sample.rss)} | {sample.tracked:,.0f} | "
            f"{sample.evicted:,.0f} | {sample.refused:,.0f} | {rate:,.0f} |"
        )
    level = min(after) / statistics.median(before) if before and after else float("nan")
    lines += [
        "",
        f"- RSS idle at start {mib(run.base_rss)}; per tracked shopper {per_shopper:,.0f} bytes "
        f"(slope from {at_half.tracked:,.0f} to {at_cap.tracked:,.0f} tracked); fixed base "
        f"{mib(fixed)}",
        f"- budget: base + {run.cap:,} × 1 KiB = {mib(budget)}; peak RSS {mib(peak)}, settled "
        f"after the flood {mib(run.settled_rss)}: "
        + ("**met**" if peak <= budget and per_shopper <= KIB else "**not met**"),
        f"- ingest rate: median {statistics.median(before):,.0f}/s up to the cap, "
        f"{statistics.median(after):,.0f}/s past it (slowest slice past the cap "
        f"{min(after):,.0f}/s, {level:.2f}× the median before)",
        f"- replies: {', '.join(f'{n:,} × {s}' for s, n in sorted(run.statuses.items()))}; "
        f"/healthz during the flood: max {max(run.healthz_ms):.1f} ms",
        "",
    ]
    return lines


_COLLECTED = re.compile(r"Collected : (\d+)")


def ingest_in_process(cap: int, full: bool, bodies_taken: int) -> None:
    """The measured process: fill a store with `cap` offline shoppers, then take `bodies_taken`
    bodies of new offline ones, into a full store (each evicts) or one with room to spare."""
    from exporter.cli import tune_collector
    from exporter.eventlog import EventLog, Hub
    from exporter.ingest import Ingestor
    from exporter.settings import Settings
    from exporter.store import ShopperStore

    settings = Settings(max_shoppers=cap if full else 100 * cap)
    ingestor = Ingestor(settings, ShopperStore(settings), EventLog(), Hub())
    source = bodies(cap + bodies_taken * BODY, active=False)
    tune_collector()
    for _ in range(cap // BODY):
        ingestor.ingest_bytes(next(source), "http")
    for _ in range(bodies_taken):
        ingestor.ingest_bytes(next(source), "http")
    assert len(ingestor.store) == (cap if full else cap + bodies_taken * BODY)


def instructions(cap: int, full: bool, bodies_taken: int) -> int:
    """Instructions the whole measured process executes (one callgrind run)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--role=ingest",
        f"--cap={cap}",
        f"--bodies={bodies_taken}",
        *(["--full"] if full else []),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-2000:]}")
    return int(found.group(1))


def count_instructions(cap: int) -> list[str]:
    """Instructions per record into a store with room and into a full one."""
    short, long = 5, 25
    runs = [(full, n) for full in (False, True) for n in (short, long)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counted = dict(zip(runs, pool.map(lambda r: instructions(cap, *r), runs), strict=True))
    records = (long - short) * BODY
    per = {full: (counted[full, long] - counted[full, short]) / records for full in (False, True)}
    return [
        f"Machine: {machine()}.",
        "",
        f"| In-process ingest of new offline shoppers (1,000-record bodies, the brief's record), "
        f"after {cap:,} | Instructions per record (callgrind) |",
        "|---|---|",
        f"| into a store with room | {per[False]:,.0f} |",
        f"| into a full store: each record evicts the shopper unseen the longest "
        f"| {per[True]:,.0f} ({(per[True] / per[False] - 1) * 100:+.1f}%) |",
        "",
        f"Records measured: {records:,} (bodies {short + 1} to {long} after the fill).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=2_000_000)
    parser.add_argument("--cap", type=int, default=200_000)
    parser.add_argument("--mode", choices=["both", "offline", "online"], default="both")
    parser.add_argument("--unique-names", action="store_true", help="a userName per shopper too")
    parser.add_argument(
        "--event-log-max-bytes", type=int, default=16 * 2**20, help="the exporter's event log bound"
    )
    parser.add_argument("--instructions", action="store_true", help="count, with callgrind")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "ingest":
        ingest_in_process(args.cap, args.full, args.bodies)
        return
    if args.instructions:
        print("\n".join(count_instructions(args.cap)), flush=True)
        return
    modes = ["offline", "online"] if args.mode == "both" else [args.mode]
    lines = [
        f"Machine: {machine()}; load average at start {load_average()}; "
        + ("a userName per shopper" if args.unique_names else "one userName for all")
        + f"; event log bound {mib(args.event_log_max_bytes)}.",
        "",
    ]
    for mode in modes:
        bounds = (
            "--max-shoppers",
            str(args.cap),
            "--event-log-max-bytes",
            str(args.event_log_max_bytes),
        )
        with exporter_service(*bounds) as service:
            time.sleep(2)  # started and idle: the fixed base
            run = asyncio.run(flood(service, args.ids, args.cap, mode, args.unique_names))
        lines += report(run)
        print("\n".join(report(run)), flush=True)
    lines.append(f"Load average at the end: {load_average()}.")
    OUT.mkdir(exist_ok=True)
    (OUT / "flood.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
