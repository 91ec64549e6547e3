"""What readers that never read cost ingest, counted in instructions rather than timed.

    .venv/bin/python bench/publish_cost.py [--stalled 100] [--records 40000]

Timed runs on a shared, noisy machine swing ±15% from one run to the next, more than the cost
being measured. This runs the core in-process (decode, validate, apply, log, publish: what a
WebSocket message costs the exporter, without the network) under valgrind's callgrind, which
counts instructions, once with no subscriber and once with `--stalled` subscribers that never
read. Each is run for a short and a long stretch of the same messages; the difference between
the two is the cost of the records in between, so start-up and shutdown cancel out.
Needs valgrind (Debian package `valgrind`). Prints Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
from compare import machine
from stream_bench import shopper_messages

BATCH = 1000
_COLLECTED = re.compile(r"Collected : (\d+)")


def ingest(messages_file: str, count: int, subscribers: int) -> None:
    """The measured process: ingest the first `count` messages with `subscribers` idle readers."""
    from exporter.app import bounded_event_log
    from exporter.cli import tune_collector
    from exporter.eventlog import Hub
    from exporter.ingest import Ingestor
    from exporter.settings import Settings
    from exporter.store import ShopperStore

    with open(messages_file, "rb") as f:
        messages: list[str] = pickle.load(f)[:count]
    settings = Settings()
    hub = Hub(max(4096, settings.stream_backlog))  # as the service makes it
    ingestor = Ingestor(settings, ShopperStore(settings), bounded_event_log(settings), hub)
    readers = [hub.subscribe(settings.stream_backlog) for _ in range(subscribers)]
    tune_collector()
    for message in messages:
        ingestor.ingest_bytes(message, "ws")
    assert hub.subscribers == len(readers)
    gc.collect()


def instructions(messages_file: str, count: int, subscribers: int) -> int:
    """Instructions the whole measured process executes (one valgrind run)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--role=ingest",
        f"--messages-file={messages_file}",
        f"--count={count}",
        f"--stalled={subscribers}",
    ]
    # Fixed hash seed: the same dict layouts, so repeated runs count the same instructions.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-2000:]}")
    return int(found.group(1))


def main(args: argparse.Namespace) -> None:
    if args.role == "ingest":
        ingest(args.messages_file, args.count, args.stalled)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    messages = shopper_messages(args.records, BATCH, shoppers=20_000)
    short, long = len(messages) // 4, len(messages)
    with tempfile.TemporaryDirectory() as tmp:
        messages_file = str(Path(tmp) / "messages.pickle")
        with open(messages_file, "wb") as f:
            pickle.dump(messages, f)
        runs = [(count, readers) for readers in (0, args.stalled) for count in (short, long)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            totals = pool.map(lambda run: instructions(messages_file, *run), runs)
            counted = dict(zip(runs, totals, strict=True))
    records = sum(
        len(body["metrics"]) + len(body["events"])
        for body in map(orjson.loads, messages[short:long])
    )
    per_record = {
        readers: (counted[long, readers] - counted[short, readers]) / records
        for readers in (0, args.stalled)
    }
    change = per_record[args.stalled] / per_record[0] - 1
    print(f"Machine: {machine()}\n")
    print("| Ingest in-process, instructions per record (callgrind) | Result |")
    print("|---|---|")
    print(f"| No subscriber | {per_record[0]:,.0f} |")
    print(
        f"| {args.stalled} subscribers that never read | {per_record[args.stalled]:,.0f};"
        f" {change * 100:+.1f} % vs none |"
    )
    print(
        f"\nRecords measured: {records:,} (messages {short + 1} to {long}, {BATCH} records each)."
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--stalled", type=int, default=100, help="subscribers that never read")
    p.add_argument("--records", type=int, default=40_000, help="records in the long stretch")
    p.add_argument("--role", default="main", help=argparse.SUPPRESS)
    p.add_argument("--messages-file", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    main(parse_args())
