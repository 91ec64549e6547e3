"""Live-stream benchmark: WebSocket ingest, SSE fan-out latency, and stalled subscribers.

    .venv/bin/python bench/stream_bench.py [--part all|ingest|fanout|stalled] [--quick]

Each part starts the exporter as its own process (`python -m exporter`) and drives it from
others, so the exporter's one loop is measured alone:
- ingest: shopper updates over one WebSocket to /ws, `--batch` records a message, a few
  messages in flight; records/s from the first send to the last ack.
- fanout: `--subscribers` SSE readers (in a separate process, raw asyncio protocols) while a
  producer pushes `--rate` explicit events/s over /ws. Each event carries its send time; a
  reader samples the first event of every chunk it receives (the oldest in the chunk, so the
  worst), giving send→receive latency, an upper bound of publish→receive. Every reader must
  receive every event: any shortfall or a non-zero shopper_exporter_stream_dropped_frames_total
  is a drop.
- stalled: the ingest run again, on fresh exporters, in four modes: no subscriber, `--stalled`
  SSE readers that never read, one reader that keeps up, and that reader plus the stalled ones
  (`--modes` picks some); interleaved, `--rounds` times each; medians compared, of records/s
  and of the exporter's own CPU time per record (less swayed by the load generators, which
  share the cores).
Prints Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from compare import free_port, machine

from exporter.demo import DemoGenerator

ROOT = Path(__file__).resolve().parent.parent
ACK_WINDOW = 4
"""WebSocket messages in flight before the sender waits for an ack."""


class Exporter:
    """The exporter as its own process on a free port."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPPER_")}
        args = [
            sys.executable,
            "-m",
            "exporter",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(
            [*args, "--max-body-bytes", str(8 << 20), *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.base + "/readyz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("exporter did not become ready")

    async def metric(self, name: str) -> float:
        async with aiohttp.ClientSession() as session, session.get(self.base + "/metrics") as resp:
            text = await resp.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def cpu_seconds(self) -> float:
        """CPU time the exporter process has used (user + system), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def shopper_messages(records: int, batch: int, shoppers: int) -> list[str]:
    """Pre-encoded `{"metrics", "events"}` messages of demo traffic: `shoppers` people on their
    journeys (the demo generator's, a quarter second a step), about one event derived per
    update, as a real shop would send."""
    generator = DemoGenerator(shoppers, seed=1, pace=2.0)
    start = time.time() - 3600
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    step = 0
    while len(updates) + len(events) < records:
        more_updates, more_events = generator.tick(start + step * 0.25)
        updates += more_updates
        events += more_events
        step += 1
    messages: list[str] = []
    ratio = len(events) / (len(updates) + len(events))
    per_message_events = round(batch * ratio)
    u = e = 0
    while u < len(updates):
        n_events = min(per_message_events, len(events) - e)
        body = {
            "metrics": updates[u : u + batch - n_events],
            "events": events[e : e + n_events],
        }
        messages.append(orjson.dumps(body).decode())
        u += batch - n_events
        e += n_events
    return messages


def ingest_ceiling(messages: list[str]) -> float:
    """Records/s of the core alone (decode, validate, apply, log) in this process, no network."""
    from exporter.eventlog import EventLog, Hub
    from exporter.ingest import Ingestor
    from exporter.settings import Settings
    from exporter.store import ShopperStore

    settings = Settings()
    ingestor = Ingestor(settings, ShopperStore(settings), EventLog(), Hub())
    records = 0
    started = time.perf_counter()
    for message in messages:
        report = ingestor.ingest_bytes(message, "ws")
        records += report.accepted + report.ignored + len(report.rejected)
    return records / (time.perf_counter() - started)


async def push_messages(base: str, messages: list[str]) -> tuple[float, int]:
    """Send every message over one /ws connection, ACK_WINDOW in flight; (seconds, accepted)."""
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(base.replace("http", "ws", 1) + "/ws", max_msg_size=0)
        window = asyncio.Semaphore(ACK_WINDOW)
        accepted = 0
        acked = 0
        done = asyncio.get_running_loop().create_future()

        async def read_acks() -> None:
            nonlocal accepted, acked
            async for msg in ws:
                reply = orjson.loads(msg.data)
                if reply.get("type") != "ack":
                    raise RuntimeError(f"refused: {reply}")
                accepted += reply["accepted"] + reply["ignored"]
                acked += 1
                window.release()
                if acked == len(messages):
                    done.set_result(None)

        reader = asyncio.create_task(read_acks())
        started = time.perf_counter()
        for message in messages:
            await window.acquire()
            await ws.send_str(message)
        await asyncio.wait([done, reader], return_when=asyncio.FIRST_COMPLETED)
        elapsed = time.perf_counter() - started
        if reader.done():
            reader.result()
        reader.cancel()
        await ws.close()
    return elapsed, accepted


# --- SSE readers (run in their own process) -------------------------------------------------

_QUERY = re.compile(rb'"query":"t([0-9.]+)"')
_EVENT = b"\nevent: event\n"


class Reader(asyncio.Protocol):
    """One SSE subscriber on a raw socket: counts event frames, samples latency per chunk."""

    def __init__(self, request: bytes, latencies: list[float], stalled: bool) -> None:
        self.request = request
        self.latencies = latencies
        self.stalled = stalled
        self.events = 0
        self.chunks = 0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)
        if self.stalled:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.chunks += 1
        # Frames never straddle "event: event\n" markers in practice; a marker split over two
        # reads would be missed, so the count is checked against the exporter's drop counter.
        self.events += data.count(_EVENT)
        found = _QUERY.search(data)
        if found:
            self.latencies.append(now - float(found.group(1)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def run_readers(port: int, count: int, stalled: bool, query: str) -> None:
    """Open `count` readers, print "ready", then on a line from stdin (the expected number of
    events) wait until each has them (or 10 s pass) and print the results as JSON."""
    loop = asyncio.get_running_loop()
    request = f"GET /api/stream{query} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    latencies: list[float] = []
    readers: list[Reader] = []
    for _ in range(count):
        sock = socket.socket()
        if stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        _, reader = await loop.create_connection(
            lambda: Reader(request, latencies, stalled), sock=sock
        )
        readers.append(reader)
    print("ready", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    expected = int(line.strip() or 0)
    deadline = time.monotonic() + 10
    # Polling counters that the protocols' callbacks bump; nothing to await on instead.
    while time.monotonic() < deadline and min(r.events for r in readers) < expected:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    counts = [r.events for r in readers]
    print(
        json.dumps(
            {
                "latencies": latencies,
                "min_events": min(counts),
                "max_events": max(counts),
                "short_readers": sum(c < expected for c in counts),
                "chunks": sum(r.chunks for r in readers),
            }
        ),
        flush=True,
    )
    for r in readers:
        if r.transport is not None:
            r.transport.close()


class ReaderProcess:
    """The readers as a separate process."""

    def __init__(self, port: int, count: int, stalled: bool, query: str = "") -> None:
        args = [sys.executable, __file__, "--role", "readers", "--port", str(port)]
        args += ["--subscribers", str(count), "--query", query]
        if stalled:
            args.append("--stalled-readers")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"readers failed: {line!r}")

    def results(self, expected: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{expected}\n")
        self.proc.stdin.flush()
        out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        self.proc.wait(30)
        return out

    def cpu_seconds(self) -> float:
        """CPU time the exporter process has used (user + system), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


# --- the parts --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def ingest_part(records: int, batch: int) -> float:
    messages = shopper_messages(records, batch, shoppers=20_000)
    ceiling = ingest_ceiling(messages)
    exporter = Exporter()
    try:
        await exporter.ready()
        await push_messages(exporter.base, messages[:5])  # warm-up
        elapsed, accepted = await push_messages(exporter.base, messages[5:])
    finally:
        exporter.stop()
    rate = accepted / elapsed
    print(
        f"| WebSocket ingest, one connection, {batch} records/message | {rate:,.0f} records/s "
        f"({accepted:,} records in {elapsed:.2f} s) |"
    )
    print(f"| Core alone, same messages, in-process (ceiling) | {ceiling:,.0f} records/s |")
    return rate


async def produce_events(base: str, rate: int, seconds: float) -> int:
    """Push `rate` explicit events/s for `seconds` over /ws, 100 messages a second; each event
    carries its send time. Returns how many were sent."""
    per_tick, tick = max(1, rate // 100), 0.01
    sent = 0
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(base.replace("http", "ws", 1) + "/ws")
        pending: deque[float] = deque()

        async def drain_acks() -> None:
            async for msg in ws:
                reply = orjson.loads(msg.data)
                if reply.get("type") != "ack" or reply["accepted"] != per_tick:
                    raise RuntimeError(f"refused: {reply}")
                pending.popleft()

        reader = asyncio.create_task(drain_acks())
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < seconds:
            now = time.time()
            body = [
                {
                    "type": "search",
                    "userId": f"shopper_{(k * per_tick + j) % 500:03d}",
                    "timestamp": iso(now),
                    "query": f"t{now:.6f}",
                }
                for j in range(per_tick)
            ]
            pending.append(now)
            await ws.send_str(orjson.dumps({"events": body}).decode())
            sent += per_tick
            k += 1
            delay = start + k * tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:  # noqa: ASYNC110 (acks pop `pending`)
            await asyncio.sleep(0.01)
        reader.cancel()
        await ws.close()
    return sent


async def fanout_part(subscribers: int, rate: int, seconds: float) -> dict[str, Any]:
    exporter = Exporter()
    readers: ReaderProcess | None = None
    try:
        await exporter.ready()
        readers = ReaderProcess(exporter.port, subscribers, stalled=False)
        await asyncio.get_running_loop().run_in_executor(None, readers.wait_ready)
        connected = await exporter.metric("shopper_exporter_stream_subscribers")
        sent = await produce_events(exporter.base, rate, seconds)
        result = await asyncio.get_running_loop().run_in_executor(None, readers.results, sent)
        dropped = await exporter.metric("shopper_exporter_stream_dropped_frames_total")
    finally:
        if readers is not None:
            readers.stop()
        exporter.stop()
    lat = [x * 1000 for x in result["latencies"]]
    row = {
        "subscribers": int(connected),
        "events": sent,
        "rate": sent / seconds,
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "max": max(lat),
        "samples": len(lat),
        "dropped": dropped,
        "short_readers": result["short_readers"],
        "min_events": result["min_events"],
    }
    print(
        f"| SSE fan-out: {row['subscribers']} subscribers, {row['rate']:,.0f} events/s for "
        f"{seconds:.0f} s | p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, "
        f"max {row['max']:.1f} ms ({row['samples']:,} samples) |"
    )
    print(
        f"|   drops (exporter counter / readers short of {sent:,} events) | "
        f"{dropped:.0f} / {row['short_readers']} (fewest received: {row['min_events']:,}) |"
    )
    return row


STALLED_MODES = {
    "none": (False, False),
    "stalled": (False, True),
    "live": (True, False),
    "live+stalled": (True, True),
}
"""Each mode of the stalled part: (one SSE reader that keeps up, `--stalled` that never read)."""


async def stalled_part(
    records: int, batch: int, stalled: int, rounds: int, modes: list[str]
) -> None:
    """Ingest with no reader, with `stalled` readers that never read, with one reader that keeps
    up, and with both: the stalled readers' cost alone, and the cost of a live reader (which
    renders every frame). Each round runs every mode once, starting with a different one each
    round, on a fresh exporter; medians compared."""
    messages = shopper_messages(records, batch, shoppers=20_000)
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu_per_record: dict[str, list[float]] = {mode: [] for mode in modes}
    dropped: dict[str, float] = dict.fromkeys(modes, 0.0)
    loop = asyncio.get_running_loop()
    for round_no in range(rounds):
        # Rotated, so a slow spell on a noisy machine does not always hit the same mode.
        for mode in modes[round_no % len(modes) :] + modes[: round_no % len(modes)]:
            live, with_stalled = STALLED_MODES[mode]
            exporter = Exporter()
            readers: list[ReaderProcess] = []
            try:
                await exporter.ready()
                if live:
                    readers.append(ReaderProcess(exporter.port, 1, stalled=False))
                if with_stalled:
                    readers.append(ReaderProcess(exporter.port, stalled, stalled=True))
                for process in readers:
                    await loop.run_in_executor(None, process.wait_ready)
                await push_messages(exporter.base, messages[:5])
                cpu = exporter.cpu_seconds()
                elapsed, accepted = await push_messages(exporter.base, messages[5:])
                cpu_per_record[mode].append((exporter.cpu_seconds() - cpu) / accepted * 1e6)
                rates[mode].append(accepted / elapsed)
                if with_stalled:
                    dropped[mode] = max(
                        dropped[mode],
                        await exporter.metric("shopper_exporter_stream_dropped_frames_total"),
                    )
            finally:
                for process in readers:
                    process.stop()
                exporter.stop()
    median = {mode: statistics.median(rates[mode]) for mode in modes}
    cpu = {mode: statistics.median(cpu_per_record[mode]) for mode in modes}

    def row(label: str, mode: str, versus: str | None = None) -> None:
        if mode not in modes or (versus is not None and versus not in modes):
            return
        runs = ", ".join(f"{r:,.0f}" for r in rates[mode])
        cpus = ", ".join(f"{c:.1f}" for c in cpu_per_record[mode])
        change = cpu_change = ""
        if versus is not None:
            change = f"; {(median[mode] / median[versus] - 1) * 100:+.1f} % vs {versus}"
            cpu_change = f"; {(cpu[mode] / cpu[versus] - 1) * 100:+.1f} % vs {versus}"
        print(
            f"| {label} (median of {rounds}) | {median[mode]:,.0f} records/s ({runs}){change}."
            f" Exporter CPU: {cpu[mode]:.1f} µs/record ({cpus}){cpu_change} |"
        )

    row("WebSocket ingest, no SSE reader", "none")
    row(f"WebSocket ingest, {stalled} stalled SSE readers, no live reader", "stalled", "none")
    row("WebSocket ingest, 1 SSE reader keeping up", "live", "none")
    row(f"WebSocket ingest, 1 reader + {stalled} stalled SSE readers", "live+stalled", "live")
    if {"none", "live+stalled"} <= set(modes):
        print(
            f"|   vs no reader: 1 live reader + {stalled} stalled | "
            f"{(median['live+stalled'] / median['none'] - 1) * 100:+.1f} % |"
        )
    print(
        f"|   frames dropped for the stalled readers (without / with a live reader) | "
        f"{dropped.get('stalled', 0):,.0f} / {dropped.get('live+stalled', 0):,.0f} |"
    )


def _parts(part: str) -> Iterator[str]:
    yield from (("ingest", "fanout", "stalled") if part == "all" else (part,))


async def main(args: argparse.Namespace) -> None:
    if args.role == "readers":
        await run_readers(args.port, args.subscribers, args.stalled_readers, args.query)
        return
    records = 50_000 if args.quick else args.records
    print(f"Machine: {machine()}\n")
    print("| Stream benchmark | Result |")
    print("|---|---|")
    for part in _parts(args.part):
        if part == "ingest":
            await ingest_part(records, args.batch)
        elif part == "fanout":
            await fanout_part(args.subscribers, args.rate, 5 if args.quick else args.seconds)
        else:
            rounds = 1 if args.quick else args.rounds
            await stalled_part(records, args.batch, args.stalled, rounds, args.modes.split(","))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--part", choices=["all", "ingest", "fanout", "stalled"], default="all")
    p.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    p.add_argument("--records", type=int, default=200_000, help="records per ingest run")
    p.add_argument("--batch", type=int, default=1000, help="records per WebSocket message")
    p.add_argument("--subscribers", type=int, default=1000, help="SSE readers in the fan-out")
    p.add_argument("--rate", type=int, default=2000, help="events/s in the fan-out")
    p.add_argument("--seconds", type=float, default=20.0, help="fan-out duration")
    p.add_argument("--stalled", type=int, default=100, help="stalled SSE readers")
    p.add_argument(
        "--rounds", type=int, default=3, help="rounds of the stalled part (each runs every mode)"
    )
    p.add_argument(
        "--modes",
        default=",".join(STALLED_MODES),
        help=f"modes of the stalled part, comma-separated (of {', '.join(STALLED_MODES)})",
    )
    p.add_argument("--role", default="main", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--query", default="", help=argparse.SUPPRESS)
    p.add_argument("--stalled-readers", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
