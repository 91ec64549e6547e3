"""Instructions one Loki log query costs, counted by valgrind's callgrind (run by hand).

Timings on a shared machine swing more than the differences worth knowing here (RE2 against
Python's re, pausing between slices), so this counts instructions: a log of demo events is
filled in-process, then each query runs `--runs` times and once; the difference, divided, is one
query's cost. `--source DIR` measures another checkout, side by side.

    .venv/bin/python bench/loki_query_cost.py [--events 20000] [--source DIR]

Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = {
    "line filter": '{job="shopper-events", type=~"cart_.*"} |= "Austin"',
    "regex line filter": '{job="shopper-events"} |~ "Aus(tin|sie)"',
    "literal regex filter": '{job="shopper-events"} |~ "Denver"',
    "json + label filter": '{job="shopper-events"} | json | cartValue > 100',
    "json + regex label filter": '{job="shopper-events"} | json | location=~"(Den|Aus).*"',
}


def child(events: int, query: str, runs: int) -> None:
    """In the measured process: fill the log, then run the query `runs` times."""
    from exporter.demo import DemoGenerator
    from exporter.eventlog import EventLog, Hub
    from exporter.ingest import Ingestor
    from exporter.loki.evaluate import Sources, Stats, run_log_query
    from exporter.loki.index import StreamIndex
    from exporter.loki.logql import LogQuery, parse
    from exporter.loki.streams import StreamLabeller
    from exporter.settings import Settings
    from exporter.store import ShopperStore

    settings = Settings(event_log_size=events, retention=7_200.0)
    ingestor = Ingestor(settings, ShopperStore(settings), EventLog(events), Hub(4096))
    generator = DemoGenerator(500, seed=7, pace=0.5)
    now = 1_800_000_000.0
    while ingestor.log.last_id < events:
        updates, explicit = generator.tick(now)
        if updates or explicit:
            ingestor.ingest({"metrics": updates, "events": explicit}, "demo")
        now += 0.25
    log = ingestor.log
    sources = Sources(log, ingestor.store, StreamLabeller(50), StreamIndex(log))
    expr = parse(query)
    assert isinstance(expr, LogQuery)
    end = time.time_ns() + 10**18
    # Under valgrind everything runs some fifty times slower: no query may time out here.
    import exporter.loki.evaluate as evaluate

    if hasattr(evaluate, "QUERY_TIMEOUT"):  # a checkout from before --loki-query-timeout
        evaluate.QUERY_TIMEOUT = 1e9
    QueryGate = None  # noqa: N806
    # A checkout from before queries were paced has no pacing module (look in its tree: an
    # editable install of another checkout would otherwise supply one).
    if (Path(evaluate.__file__).parent / "pacing.py").exists():
        from exporter.loki import pacing
        from exporter.loki.pacing import QueryGate

        # Valgrind runs code some fifty times slower than the clock: an 8 ms turn would hold a
        # fiftieth of its real work, and pauses would be counted fifty times too often. So
        # this counts evaluation alone; what pausing costs is in the timed benchmarks.
        pacing.LOOP_SHARE = 1e9  # type: ignore[misc]

    async def once() -> None:
        if QueryGate is None:
            run_log_query(sources, expr, 0, end, limit=1000, backward=True, stats=Stats())
            return
        with QueryGate(1e9, 8).pace() as pace:
            await run_log_query(
                sources, expr, 0, end, limit=1000, backward=True, stats=Stats(), pace=pace
            )

    for _ in range(runs):
        asyncio.run(once())


def instructions(source: Path, events: int, query: str, runs: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            str(events),
            query,
            str(runs),
        ],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the measured run failed: {done.stderr[-3000:]}")
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--source", type=Path, default=ROOT)
    parser.add_argument("--only", action="append", help="measure only this query (by name)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    source = args.source.resolve()
    print(f"source {source}, {args.events} events, instructions per query (callgrind)")
    for name, query in QUERIES.items():
        if args.only and name not in args.only:
            continue
        one = instructions(source, args.events, query, 1)
        many = instructions(source, args.events, query, 1 + args.runs)
        print(f"| {name} | `{query}` | {(many - one) / args.runs / 1e6:.1f} M |", flush=True)


if __name__ == "__main__":
    main()
