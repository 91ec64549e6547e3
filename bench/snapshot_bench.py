"""Snapshots at scale: what they cost the service while they run, their size, and restarts.

    .venv/bin/python bench/snapshot_bench.py [--sizes 200000,1000000] [--seconds 30]
        [--baseline DIR]

For each size, and for this checkout and (with --baseline) another one, e.g. main exported with
`git archive main | tar -x -C DIR`, taking turns:
1. an exporter with --state-file and a 3600 s interval (no snapshot runs) is filled with N
   distinct shoppers, each the brief's full record, over HTTP bulk; then for --seconds a scrape
   of /metrics and a single-record push are timed every 50 ms each: the control, no snapshots;
2. its RSS, then SIGTERM (the last snapshot is written on the way out);
3. a new exporter with --snapshot-interval 5 restores the file: time from start to /readyz (less
   the start time of an empty exporter of the same code: the restore), RSS once settled;
4. the same probes for --seconds while snapshots run every 5 s; per snapshot (from /metrics,
   where the code has them) its duration, size, the fork's pause and the writer's own memory.
Prints a Markdown table and writes bench/out/snapshot.md. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "bench"))

from compare import (  # noqa: E402
    SCRAPE_HEADERS,
    NewShoppers,
    demo_records,
    free_port,
    http_bulk,
    load_average,
    machine,
    rss_bytes,
)

PROBE_EVERY = 0.05
SNAPSHOT_GAUGES = {
    "shopper_exporter_last_snapshot_timestamp_seconds": "taken",
    "shopper_exporter_snapshot_duration_seconds": "duration",
    "shopper_exporter_snapshot_bytes": "bytes",
    "shopper_exporter_snapshot_pause_seconds": "pause",
    "shopper_exporter_snapshot_writer_memory_bytes": "memory",
}


class Exporter:
    """One exporter process of a given checkout, its log kept in a file."""

    def __init__(self, code: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPPER_")}
        args = [sys.executable, "-m", "exporter", "--host", "127.0.0.1"]
        self.started = time.perf_counter()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*args, "--port", str(self.port), *extra],
                cwd=code,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.ready_after = self._wait_ready()

    def _wait_ready(self, timeout: float = 300) -> float:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("exporter not ready in time")

    def rss(self, settle: float = 2.0) -> int:
        time.sleep(settle)
        return rss_bytes(self.proc.pid)

    def stop(self) -> float:
        """SIGTERM and wait; seconds until it exited (the last snapshot is written)."""
        started = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(600)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.perf_counter() - started


@dataclass
class Probe:
    times: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    """Wall-clock start of each timed request (to set the slowest beside the forks)."""
    errors: int = 0

    def took(self, started_at: float, seconds: float) -> None:
        self.starts.append(started_at)
        self.times.append(seconds)

    def slowest(self, forks: list[float], count: int = 5) -> list[list[float]]:
        """[ms, seconds since the last fork before it (-1: none)] of the slowest."""
        worst = sorted(zip(self.times, self.starts, strict=True), reverse=True)[:count]
        out: list[list[float]] = []
        for seconds, start in worst:
            before = [start - f for f in forks if f <= start + seconds]
            out.append([round(seconds * 1000, 1), round(min(before), 2) if before else -1.0])
        return out

    def describe(self) -> dict[str, float]:
        if not self.times:
            return {"n": 0}
        ordered = sorted(self.times)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {
            "n": len(ordered),
            "p50": statistics.median(ordered) * 1000,
            "p99": p99 * 1000,
            "max": ordered[-1] * 1000,
        }


def gauges(body: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in body.splitlines():
        name, _, value = line.partition(" ")
        key = SNAPSHOT_GAUGES.get(name)
        if key is not None:
            found[key] = float(value)
    return found


async def probes(base: str, seconds: float, ids: list[str], state: Path) -> dict[str, Any]:
    """Scrapes and single pushes every 50 ms each for `seconds`; snapshots seen meanwhile (from
    /metrics, and as new versions of the state file)."""
    scrape, push = Probe(), Probe()
    written: set[float] = set()
    snapshots: dict[float, dict[str, float]] = {}
    deadline = time.perf_counter() + seconds

    async def scraper(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            tick = time.perf_counter()
            with contextlib.suppress(OSError):
                written.add(os.stat(state).st_mtime)
            try:
                async with session.get(base + "/metrics", headers=SCRAPE_HEADERS) as resp:
                    body = await resp.text()
                scrape.took(time.time() - (time.perf_counter() - tick), time.perf_counter() - tick)
                found = gauges(body)
                if "taken" in found:
                    snapshots[found["taken"]] = found
            except aiohttp.ClientError:
                scrape.errors += 1
            await asyncio.sleep(max(0.0, PROBE_EVERY - (time.perf_counter() - tick)))

    async def pusher(session: aiohttp.ClientSession) -> None:
        i = 0
        while time.perf_counter() < deadline:
            tick = time.perf_counter()
            record = {
                "userId": ids[i % len(ids)],
                "userName": "Probe Shopper",
                # After the fill's records (demo time starts at 1_800_000_000): a real update.
                "timestamp": datetime.fromtimestamp(1_800_100_000 + i / 20, UTC).isoformat(),
                "isActive": True,
                "pageViews": 1000 + i,
            }
            try:
                async with session.post(
                    base + "/api/metrics",
                    data=orjson.dumps(record),
                    headers={"Content-Type": "application/json"},
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        push.errors += 1
                push.took(time.time() - (time.perf_counter() - tick), time.perf_counter() - tick)
            except aiohttp.ClientError:
                push.errors += 1
            i += 1
            await asyncio.sleep(max(0.0, PROBE_EVERY - (time.perf_counter() - tick)))

    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(timeout=timeout) as one,
        aiohttp.ClientSession(timeout=timeout) as two,
    ):
        await asyncio.gather(scraper(one), pusher(two))
    return {
        "probes": (scrape, push),
        "scrape": scrape.describe(),
        "push": push.describe(),
        "errors": scrape.errors + push.errors,
        "snapshots": sorted(snapshots.values(), key=lambda s: s["taken"]),
        "files_written": len(written) - 1,
    }


def fork_times(log: Path) -> list[float]:
    """When each writer was forked (wall clock, from the writer's debug lines)."""
    pattern = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) DEBUG \S+: snapshot writer \d+ forked"
    found = re.findall(pattern, log.read_text(errors="replace"), re.MULTILINE)
    return [time.mktime(time.strptime(at, "%Y-%m-%d %H:%M:%S")) + int(n) / 1000 for at, n in found]


def fork_cpu(log: Path) -> list[float]:
    """CPU milliseconds of each fork, from the writer's debug lines (this code only)."""
    found = re.findall(r"\(([\d.]+) ms of CPU\)", log.read_text(errors="replace"))
    return [float(ms) for ms in found]


def writer_cpu(log: Path) -> list[float]:
    """CPU seconds of each writer, from its debug lines (this code only)."""
    found = re.findall(r"used ([\d.]+) s of CPU", log.read_text(errors="replace"))
    return [float(s) for s in found]


def restored_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if "restored" in line]
    return lines[-1] if lines else ""


def run_one(code: Path, label: str, size: int, seconds: float, work: Path) -> dict[str, Any]:
    state = work / f"{label}-{size}.state"
    log = OUT / f"snapshot-{label}-{size}.log"
    log.unlink(missing_ok=True)
    out: dict[str, Any] = {"code": label, "size": size}
    starts = []
    for _ in range(3):
        empty = Exporter(code, log)
        starts.append(empty.ready_after)
        empty.stop()
    out["empty_ready"] = statistics.median(starts)
    first = Exporter(code, log, "--state-file", str(state), "--snapshot-interval", "3600")
    maker = NewShoppers(demo_records(1000, 1000))
    filled = asyncio.run(http_bulk(f"{first.base}/api/metrics", maker.batches(size)))
    out["fill_rate"] = filled.rate
    ids = [f"n{k:05d}_{j:04d}" for k in range(0, size // 1000, 7) for j in range(0, 1000, 97)]
    out["control"] = asyncio.run(probes(first.base, seconds, ids, state))
    out["rss_before"] = first.rss()
    out["shutdown"] = first.stop()
    out["file_bytes"] = state.stat().st_size if state.exists() else 0
    second = Exporter(
        code, log, "--state-file", str(state), "--snapshot-interval", "5", "--log-level", "debug"
    )
    out["ready"] = second.ready_after
    out["restore"] = second.ready_after - out["empty_ready"]
    out["restored_line"] = restored_line(log)
    out["rss_after"] = second.rss()
    out["snapshotting"] = asyncio.run(probes(second.base, seconds, ids, state))
    forks = sorted({s["taken"] for s in out["snapshotting"]["snapshots"]} | set(fork_times(log)))
    for phase in ("control", "snapshotting"):
        scrapes, pushes = out[phase].pop("probes")
        out[phase]["slowest"] = {"scrape": scrapes.slowest(forks), "push": pushes.slowest(forks)}
    out["file_bytes_after"] = state.stat().st_size if state.exists() else 0
    out["fork_cpu_ms"] = fork_cpu(log)
    out["writer_cpu_s"] = writer_cpu(log)
    second.stop()
    state.unlink(missing_ok=True)
    return out


def ms(probe: dict[str, float]) -> str:
    if not probe.get("n"):
        return "—"
    return f"{probe['p50']:.1f} / {probe['p99']:.1f} / **{probe['max']:.0f}**"


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def spread(values: list[float], unit: str, scale: float = 1.0) -> str:
    if not values:
        return "—"
    values = [v * scale for v in values]
    return f"{statistics.median(values):,.1f} (max {max(values):,.1f}) {unit}"


def writer_note(result: dict[str, Any]) -> str:
    cpu = result.get("writer_cpu_s") or []
    return f"; CPU {statistics.median(cpu):.1f} s" if cpu else ""


def cpu_note(result: dict[str, Any]) -> str:
    cpu = result.get("fork_cpu_ms") or []
    return f"; CPU {statistics.median(cpu):.1f} (max {max(cpu):.1f}) ms" if cpu else ""


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| Code | Shoppers | Phase | Scrape p50 / p99 / max (ms) | Push p50 / p99 / max (ms) "
        "| Snapshots seen | Snapshot duration | Size | Fork pause | Writer's own memory |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for phase, name in (("control", "no snapshot"), ("snapshotting", "snapshots every 5 s")):
            p = r[phase]
            snaps = [s for s in p["snapshots"] if s.get("duration") is not None]
            rows.append(
                f"| {r['code']} | {r['size']:,} | {name} | {ms(p['scrape'])} | {ms(p['push'])} "
                f"| {p['files_written'] if phase == 'snapshotting' else '—'} "
                f"| {spread([s['duration'] for s in snaps], 's') if snaps else '—'}"
                f"{writer_note(r) if phase == 'snapshotting' else ''} "
                f"| {mib(snaps[-1]['bytes']) if snaps else mib(r['file_bytes'])} "
                f"| {spread([s['pause'] for s in snaps if 'pause' in s], 'ms', 1000)}"
                f"{cpu_note(r) if phase == 'snapshotting' else ''} "
                f"| {spread([s['memory'] for s in snaps if 'memory' in s], 'MiB', 2**-20)} |"
            )
    rows += [
        "",
        "| Code | Shoppers | Fill (records/s) | Exit with last snapshot | Start to /readyz "
        "(empty start) | Restore | RSS before restart | RSS after restore | Change |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        change = (r["rss_after"] - r["rss_before"]) / r["rss_before"] * 100
        rows.append(
            f"| {r['code']} | {r['size']:,} | {r['fill_rate']:,.0f} | {r['shutdown']:.1f} s "
            f"| {r['ready']:.1f} s ({r['empty_ready']:.1f} s) | **{r['restore']:.1f} s** "
            f"| {mib(r['rss_before'])} | {mib(r['rss_after'])} | {change:+.1f}% |"
        )
    rows.append("")
    for r in results:
        rows.append(f"- {r['code']} {r['size']:,}: `{r['restored_line'].strip()}`")
    rows.append("")
    rows.append("Slowest probes while snapshots ran: [ms, s since the last fork] (-1: none yet)")
    for r in results:
        slow = r["snapshotting"]["slowest"]
        rows.append(f"- {r['code']} {r['size']:,}: scrape {slow['scrape']}, push {slow['push']}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="200000,1000000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare (e.g. main)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    codes = [(ROOT, "this")]
    if args.baseline is not None:
        codes.append((args.baseline.resolve(), "baseline"))
    header = [
        f"Machine: {machine()}; load average at start {load_average()}",
        f"Commit: {git_head()}",
    ]
    print("\n".join(header), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="snapshot-bench-") as work:
        for size in (int(s) for s in args.sizes.split(",")):
            for code, label in codes:
                print(f"== {label} at {size:,} shoppers", flush=True)
                result = run_one(code, label, size, args.seconds, Path(work))
                results.append(result)
                print(table([result]), flush=True)
    header.append(f"Load average at end {load_average()}")
    report = "\n".join(header) + "\n\n" + table(results) + "\n"
    print(report)
    (OUT / "snapshot.md").write_text(report)
    (OUT / "snapshot.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


def git_head() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return "unknown"


if __name__ == "__main__":
    main()
