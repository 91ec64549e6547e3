"""The event log's memory per held event of the demo's mix (RSS against its own estimate), and
Logs Drilldown's volume and detected-fields requests at 100k and 1M held events.

    .venv/bin/python bench/event_log_bench.py [--events 1000000] [--repeat 15]

Events come from the demo generator run through the real ingest path (its mix of types and
details), then are appended to a fresh log in a fresh process, chunk by chunk, so the source
objects never pile up: RSS after minus RSS before, over the events held, is what the log costs
per event. Drilldown's requests run through the real aiohttp app (an in-process client), p50 of
`--repeat` runs each. Prints Markdown; the figures go to bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CHUNK = 50_000
PICKLED = 1_000


def rss() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def demo_events(count: int, path: Path) -> None:
    """Run the demo generator through ingest until `count` events were logged; pickle them
    (type, user id, name, time, props) in chunks to `path`."""
    from exporter.demo import DemoGenerator
    from exporter.eventlog import EventLog, Hub
    from exporter.ingest import Ingestor
    from exporter.settings import Settings
    from exporter.store import ShopperStore

    settings = Settings()
    log = EventLog(None)
    clock = [time.time()]
    ingestor = Ingestor(settings, ShopperStore(settings), log, Hub(), clock=lambda: clock[0])
    generator = DemoGenerator(2000, seed=7, speed=20.0)
    written = 0
    with path.open("wb") as out:
        while written < count:
            clock[0] += 0.25
            updates, events = generator.tick(clock[0])
            if updates or events:
                ingestor.ingest({"metrics": updates, "events": events}, "demo")
            if len(log) >= CHUNK or (len(log) and written + len(log) >= count):
                rows = [tuple(e.event) for e in log.after(0)][: count - written]
                for at in range(0, len(rows), PICKLED):  # small pickles: a small passing peak
                    pickle.dump(rows[at : at + PICKLED], out)
                written += len(rows)
                log = ingestor.log = EventLog(None)


def measure_memory(path: Path, count: int) -> dict[str, Any]:
    """In this (fresh) process: RSS growth from appending the pickled events to a log, from
    the first tenth on (past the first blocks and the interpreter's own warm-up)."""
    from exporter.eventlog import EventLog
    from exporter.events import ShoppingEvent

    log = EventLog(None, max_bytes=None)
    gc.collect()
    start_rss = rss()
    marks: tuple[int, int, int] | None = None
    with path.open("rb") as f:
        while len(log) < count:
            try:
                rows = pickle.load(f)
            except EOFError:
                break
            for row in rows:
                log.append(ShoppingEvent(*row))
            del rows
            if marks is None and len(log) >= count // 10:
                gc.collect()
                marks = (len(log), rss(), log.nbytes)
    gc.collect()
    assert marks is not None
    n0, rss0, est0 = marks
    return {
        "events": len(log),
        "rss": rss() - start_rss,
        "estimate": log.nbytes,
        "slope": (rss() - rss0) / (len(log) - n0),
        "estimate_slope": (log.nbytes - est0) / (len(log) - n0),
    }


async def drilldown_times(path: Path, count: int, repeat: int) -> dict[str, float]:
    """p50 ms of Drilldown's volume and detected-fields requests over `count` held events."""
    from aiohttp.test_utils import TestClient, TestServer

    from exporter.app import create_app
    from exporter.events import ShoppingEvent
    from exporter.keys import EVENT_LOG
    from exporter.settings import Settings

    app = create_app(Settings(event_log_max_bytes=2**34))
    log = app[EVENT_LOG]
    now = time.time_ns()
    spacing = 3_600_000_000_000 // count  # the hour, evenly
    i = 0
    with path.open("rb") as f:
        while i < count:
            try:
                rows = pickle.load(f)
            except EOFError:
                break
            for row in rows[: count - i]:
                log.append(ShoppingEvent(*row), ts_ns=now - 3_600_000_000_000 + i * spacing)
                i += 1
    end = now + 1_000_000_000
    span = {"start": str(end - 3_600_000_000_000), "end": str(end)}
    requests = {
        "volume (services)": (
            "/loki/api/v1/index/volume",
            {"query": '{service_name=~".+"}', "limit": "5000", **span},
        ),
        "volume (by level)": (
            "/loki/api/v1/index/volume",
            {"query": '{service_name="shopper-events"}', "targetLabels": "detected_level", **span},
        ),
        "volume_range (by level, 1m)": (
            "/loki/api/v1/index/volume_range",
            {
                "query": '{service_name="shopper-events"}',
                "targetLabels": "detected_level",
                "step": "60s",
                **span,
            },
        ),
        "detected_fields": (
            "/loki/api/v1/detected_fields",
            {"query": '{service_name="shopper-events"} | json', **span},
        ),
        "detected_labels": (
            "/loki/api/v1/detected_labels",
            {"query": '{service_name="shopper-events"}', **span},
        ),
    }
    out: dict[str, float] = {}
    async with TestClient(TestServer(app)) as client:
        # The first request indexes the log (once, as after a restart): timed apart.
        started = time.perf_counter()
        resp = await client.get(
            requests["volume (services)"][0], params=requests["volume (services)"][1]
        )
        assert resp.status == 200, await resp.text()
        out["first request (builds the index)"] = (time.perf_counter() - started) * 1000
        for name, (url, params) in requests.items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                resp = await client.get(url, params=params)
                body = await resp.read()
                times.append((time.perf_counter() - started) * 1000)
                assert resp.status == 200, body
            out[name] = statistics.median(times)
    return out


def child(args: argparse.Namespace) -> None:
    path = Path(args.events_file)
    if args.child == "memory":
        print(repr(measure_memory(path, args.events)))
    else:
        print(repr(asyncio.run(drilldown_times(path, args.events, args.repeat))))


def run_child(kind: str, path: Path, events: int, repeat: int) -> Any:
    cmd = [sys.executable, __file__, "--child", kind, "--events-file", str(path)]
    cmd += ["--events", str(events), "--repeat", str(repeat)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return eval(done.stdout.strip().splitlines()[-1])  # our own repr of a dict of numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--child", choices=["memory", "drilldown"])
    parser.add_argument("--events-file")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from compare import load_average, machine

    print(f"Machine: {machine()}; load average {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.pickle"
        demo_events(args.events, path)
        sizes = sorted({min(100_000, args.events), args.events})
        print(
            "\n| Held events | RSS growth | log's estimate | estimate / RSS "
            "| RSS per event (past the first tenth) | estimate per event (same) |"
        )
        print("|---|---|---|---|---|---|")
        for n in sizes:
            m = run_child("memory", path, n, 1)
            print(
                f"| {m['events']:,} | {m['rss'] / 2**20:.1f} MiB | {m['estimate'] / 2**20:.1f} MiB "
                f"| {m['estimate'] / m['rss']:.2f} | {m['slope']:.0f} B "
                f"| {m['estimate_slope']:.0f} B |",
                flush=True,
            )
        results = {n: run_child("drilldown", path, n, args.repeat) for n in sizes}
        print("\n| Request (p50 ms) | " + " | ".join(f"{n:,} events" for n in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for name in results[sizes[0]]:
            row = " | ".join(f"{results[n][name]:.1f}" for n in sizes)
            print(f"| {name} | {row} |")
        print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
