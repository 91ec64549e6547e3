"""Sharded ingest: aggregate 1,000-record bulk ingest of 2 shards against 1, direct and via HAProxy.

    .venv/bin/python bench/shards.py [--seconds 10] [--rounds 3] [--producers 2] [--inflight 4]
    .venv/bin/python bench/shards.py --instructions

`--instructions` counts instead, with valgrind's callgrind, what the shard check costs a record
in-process: 1,000-record bodies of new shoppers into an unsharded store, into `--shard 0/1` (the
check on every record, every record owned) and `--shard 0/2` (about half refused).

Configurations, run in turn (round robin, `--rounds` times, so load from others on the machine
falls on each alike):
- one:     one unsharded exporter; producers POST 1,000-record bodies to it.
- two:     two replicas (--shard 0/2, 1/2); producers use MetricsClient([url0, url1]): each
           1,000-record batch is split by shard_of and the halves sent in parallel.
- two-proxy: the same two replicas behind HAProxy (deploy/haproxy.cfg); producers use
           MetricsClient(proxy, shards=2), each half naming its shard in X-Shopper-Shard.
- one-proxy: the unsharded exporter behind the same HAProxy (any replica): the proxy's own cost.
The load generator runs on the same machine (`--producers` processes, each keeping `--inflight`
batches on their way); every record is a new state of one of 20,000 shoppers per producer. Each
run reports records/s accepted (from the replies) and the CPU seconds every process used in the
window (/proc/PID/stat), so records per CPU-second of the exporters, of HAProxy and of the
producers. Prints Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TICKS = os.sysconf("SC_CLK_TCK")
BATCH = 1000
SHOPPERS_PER_PRODUCER = 20_000
CONFIGS = ("one", "two", "two-proxy", "one-proxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_ready(url: str, timeout: float = 30.0, streak: int = 1) -> None:
    """Until `streak` readiness probes in a row succeed (through HAProxy: until its health
    checks have taken the servers that are not there out of rotation)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    good = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                good = good + 1 if resp.status == 200 else 0
        except OSError:
            good = 0
            time.sleep(0.1)
        if good >= streak:
            return
    raise SystemExit(f"{url} did not become ready")


@dataclass
class Started:
    """Processes of one configuration, by role."""

    roles: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def add(self, role: str, proc: subprocess.Popen[bytes]) -> None:
        self.roles.setdefault(role, []).append(proc)

    def cpu(self) -> dict[str, float]:
        return {role: sum(cpu_seconds(p.pid) for p in procs) for role, procs in self.roles.items()}

    def stop(self) -> None:
        for procs in self.roles.values():
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
        for procs in self.roles.values():
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start_exporter(started: Started, port: int, *extra: str) -> str:
    args = [sys.executable, "-m", "exporter", "--port", str(port), "--log-level", "warning"]
    args += ["--max-shoppers", "1000000", *extra]
    started.add("exporter", subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    return url


def start_haproxy(started: Started, ports: list[int]) -> str:
    port = free_port()
    env = {**os.environ, "SHOPPER_PROXY_BIND": f"127.0.0.1:{port}"}
    # The config names three shards; a two-replica run leaves the third on an unused port.
    for index in range(3):
        target = ports[index] if index < len(ports) else free_port()
        env[f"SHOPPER_SHARD_{index}"] = f"127.0.0.1:{target}"
    cfg = str(ROOT / "deploy" / "haproxy.cfg")
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", cfg], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started.add("haproxy", proc)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, streak=30)
    return url


def run_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start a configuration, load it for `args.seconds`, stop it; its figures."""
    started = Started()
    try:
        if name.startswith("one"):
            port = free_port()
            urls = [start_exporter(started, port)]
            ports = [port]
            shards = None
        else:
            ports = [free_port(), free_port()]
            urls = [start_exporter(started, p, "--shard", f"{i}/2") for i, p in enumerate(ports)]
            shards = 2
        if name.endswith("proxy"):
            urls = [start_haproxy(started, ports)]
        producer_args = [
            sys.executable, __file__, "--produce", json.dumps(
                {"urls": urls, "shards": shards, "seconds": args.seconds, "inflight": args.inflight}
            ),
        ]  # fmt: skip
        producers = []
        for index in range(args.producers):
            proc = subprocess.Popen(
                [*producer_args, str(index)], cwd=ROOT, stdout=subprocess.PIPE, text=False
            )
            started.add("producer", proc)
            producers.append(proc)
        # The window: from every producer's "go" (after a second of warm-up) to their end.
        for proc in producers:
            assert proc.stdout is not None
            proc.stdout.readline()
        before = started.cpu()
        outputs = [json.loads(p.communicate()[0]) for p in producers]
        after = {
            role: sum(cpu_seconds(p.pid) for p in procs)
            for role, procs in started.roles.items()
            if role != "producer"
        }
        records = sum(o["accepted"] for o in outputs)
        seconds = max(o["seconds"] for o in outputs)
        cpu = {role: after[role] - before[role] for role in after}
        cpu["producer"] = sum(o["cpu"] for o in outputs)
        return {
            "config": name,
            "rate": records / seconds,
            "records": records,
            "seconds": seconds,
            "cpu": cpu,
            "refused": sum(o["refused"] for o in outputs),
            "failed": sum(o["failed"] for o in outputs),
        }
    finally:
        started.stop()


def produce(spec: dict[str, Any], index: int) -> None:
    """One load-generator process: batches of BATCH new shopper states, `inflight` at once."""
    from exporter.client import MetricsClient, PushError

    rng = random.Random(index)
    ids = [f"p{index}_shopper_{i}" for i in range(SHOPPERS_PER_PRODUCER)]
    counter = 0

    def batch() -> list[dict[str, Any]]:
        nonlocal counter
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        start = (counter * BATCH) % SHOPPERS_PER_PRODUCER
        counter += 1
        return [
            {
                "userId": ids[start + i],
                "userName": "Bench Shopper",
                "timestamp": now,
                "currentActivity": "Browsing",
                "cartValue": round(rng.random() * 100, 2),
                "itemsInCart": rng.randint(0, 9),
                "isActive": True,
                "lastAction": f"step {counter}",
            }
            for i in range(BATCH)
        ]

    async def run() -> dict[str, Any]:
        urls, shards = spec["urls"], spec["shards"]
        client = MetricsClient(urls if len(urls) > 1 else urls[0], shards=shards, timeout=60)
        accepted = refused = failed = 0
        measuring = False

        async def worker(stop_at: float) -> None:
            nonlocal accepted, refused, failed
            while time.monotonic() < stop_at:
                try:
                    reply = await client.push_bulk_metrics(batch())
                except PushError:
                    failed += 1  # a 503 from the proxy: counted, and the run goes on
                    continue
                if measuring:
                    accepted += int(reply["accepted"])
                    refused += len(reply["rejected"])

        async with client:
            warm = time.monotonic() + 1.0
            await asyncio.gather(*(worker(warm) for _ in range(spec["inflight"])))
            measuring = True
            print("go", flush=True)
            cpu0, t0 = time.process_time(), time.monotonic()
            end = t0 + spec["seconds"]
            await asyncio.gather(*(worker(end) for _ in range(spec["inflight"])))
            return {
                "accepted": accepted,
                "refused": refused,
                "failed": failed,
                "seconds": time.monotonic() - t0,
                "cpu": time.process_time() - cpu0,
            }

    print(json.dumps(asyncio.run(run())))


def bodies(count: int) -> list[bytes]:
    """`count` 1,000-record bodies of shoppers seen once each."""
    import orjson

    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        orjson.dumps(
            [
                {"userId": f"shopper_{b}_{i}", "userName": "Bench Shopper", "timestamp": stamp,
                 "currentActivity": "Browsing", "cartValue": 12.5, "itemsInCart": 2,
                 "isActive": True}
                for i in range(BATCH)
            ]
        )
        for b in range(count)
    ]  # fmt: skip


def ingest_role(shard: str, count: int) -> None:
    """The measured process: take `count` bodies into an in-process store."""
    from exporter.cli import tune_collector
    from exporter.eventlog import EventLog, Hub
    from exporter.ingest import Ingestor
    from exporter.settings import Settings
    from exporter.sharding import parse_shard
    from exporter.store import ShopperStore

    settings = Settings(shard=parse_shard(shard) if shard != "none" else None)
    ingestor = Ingestor(settings, ShopperStore(settings), EventLog(), Hub())
    made = bodies(count)
    tune_collector()
    for body in made:
        ingestor.ingest_bytes(body, "http")


def instructions(shard: str, count: int) -> int:
    import re

    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += [__file__, "--ingest", shard, str(count)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(done.stderr[-2000:])
    return int(found.group(1))


def count_instructions() -> None:
    short, long = 2, 7
    print(f"machine: {machine()}")
    print(
        "\n| ingest of 1,000-record bodies of new shoppers | instructions per record (callgrind) |"
    )
    print("|---|---|")
    base = 0.0
    for shard in ("none", "0/1", "0/2"):
        per = (instructions(shard, long) - instructions(shard, short)) / ((long - short) * BATCH)
        base = base or per
        name = {"none": "unsharded", "0/1": "--shard 0/1 (every record checked and owned)",
                "0/2": "--shard 0/2 (every record checked, about half refused)"}[shard]  # fmt: skip
        print(f"| {name} | {per:,.0f} ({(per / base - 1) * 100:+.1f}%) |")


def machine() -> str:
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    keep = ("Model name", "CPU(s):", "Thread(s) per core")
    found = [line.split(":", 1)[1].strip() for line in lines if line.startswith(keep)]
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"{' / '.join(found)}; load average before: {' '.join(load)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--ingest", help=argparse.SUPPRESS)
    parser.add_argument("--produce", help=argparse.SUPPRESS)
    parser.add_argument("index", nargs="?", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest:
        ingest_role(args.ingest, args.index)
        return
    if args.instructions:
        count_instructions()
        return
    if args.produce:
        produce(json.loads(args.produce), args.index)
        return
    configs = args.configs.split(",")
    print(f"machine: {machine()}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for round_no in range(args.rounds):
        for name in configs:
            result = run_config(name, args)
            runs[name].append(result)
            cpu = result["cpu"]
            print(
                f"round {round_no + 1} {name:10s} {result['rate']:9.0f} records/s  cpu "
                + "  ".join(f"{k} {v:.1f}s" for k, v in sorted(cpu.items()))
                + f"  refused {result['refused']}  failed {result['failed']}",
                flush=True,
            )
    print(f"\nload average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}\n")
    print(
        "| configuration | records/s (median of runs) | runs | exporter CPU-s per 1k records "
        "| records per exporter CPU-second | HAProxy CPU-s per 1k | producer CPU-s per 1k |"
    )
    print("|---|---|---|---|---|---|---|")
    base = statistics.median(r["rate"] for r in runs[configs[0]])
    for name in configs:
        rows = runs[name]
        rate = statistics.median(r["rate"] for r in rows)
        per_k = {
            role: statistics.median(1000 * r["cpu"].get(role, 0.0) / r["records"] for r in rows)
            for role in ("exporter", "haproxy", "producer")
        }
        print(
            f"| {name} | {rate:,.0f} ({rate / base:.2f}× {configs[0]}) | "
            + ", ".join(f"{r['rate']:,.0f}" for r in rows)
            + f" | {per_k['exporter']:.4f} | {1000 / per_k['exporter']:,.0f} | "
            f"{per_k['haproxy']:.4f} | {per_k['producer']:.4f} |"
        )


if __name__ == "__main__":
    main()
