"""Soak: one exporter under steady mixed traffic with live subscribers, for --minutes.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 5000] [--shoppers 20000]
        [--census-every 10] [--state-file PATH] [--event-log-retention 1h]
        [--event-log-max-bytes 16MiB]

A demo population of returning shoppers (fixed userIds) sends --rate updates/s: each shopper
keeps one transport, half HTTP bulk (POST /api/metrics), half WebSocket pushes (/ws), batched
every 0.2 s. Three SSE subscribers (/api/stream: everything, events+summary, one shopper) and one
WebSocket subscriber read the live frames. RSS is sampled every 5 s. Checks: RSS flat after
warm-up (within --within %, 5 by default: the mean of the samples in the last --window minutes
against the mean of those in the first --window minutes after the --warmup minutes, 1 and 2 by
default; the hour's check is --minutes 60 --warmup 5 --window 5 --within 3; single samples
swing with the allocator, so
the point-to-point change, the least-squares trend and the swing are reported beside it) and
the acks' accepted + ignored equal to the
exporter's shopper_updates_received_total minus shopper_updates_rejected_total.

With --census-every N (minutes; 0 = off) the exporter runs with --debug-memory and an
allocation census (GET /debug/memory: tracemalloc by file and line, gc counts, objects of the
project's types) is taken at the end of the warm-up, every N minutes after it and as the load
stops; the report gives the sites that grew most from the first census to the last, with their
size at every census, so a site that grew and then stopped is told from one still growing.
Tracing costs the exporter memory and time of its own (the census reports its overhead).

Prints Markdown tables; writes bench/out/soak.md, every sample to bench/out/soak.csv and each
census to bench/out/soak-census-<minute>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from compare import OUT, SCRAPE_HEADERS, Service, exporter_service, load_average, machine, size

from exporter.demo import DemoGenerator

TICK = 0.2  # seconds between batches: five bodies per second per transport
SAMPLE_EVERY = 5.0
BODY_RECORDS = 2000  # updates (and as many events) in one body at most
ACK_WINDOW = 4  # WebSocket messages awaiting their ack before the sender waits


class Population:
    """DemoGenerator journeys played by a fixed set of shoppers who come back.

    The generator names every new visit anew; mapping visits onto `size` userIds (a freed id
    goes to the next arrival) keeps the tracked population bounded, like a real shop's
    customers returning, so memory can level off within the retention window.
    """

    def __init__(self, size: int, rate: float, seed: int = 11) -> None:
        # Arrivals and the per-tick step draw make ~1.4 updates per nominal step.
        self.generator = DemoGenerator(size, seed=seed, pace=0.7 * rate / size)
        self.rate = rate
        self.free = collections.deque(f"shopper_{i:05d}" for i in range(size))
        self.extra = 0
        self.visit: dict[str, str] = {}  # generator id → userId

    def _assign(self, visit_id: str) -> str:
        if visit_id not in self.visit:
            if not self.free:  # not expected (at most `size` visits at once), but stay correct
                self.extra += 1
                self.free.append(f"shopper_x{self.extra:05d}")
            self.visit[visit_id] = self.free.popleft()
        return self.visit[visit_id]

    def steer(self, recent_rate: float) -> None:
        """Nudge the pace toward the asked rate (at most 2 % per call)."""
        if recent_rate > 0:
            factor = min(1.02, max(0.98, self.rate / recent_rate))
            self.generator.pace *= factor

    def tick(self, now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        updates, events = self.generator.tick(now)
        leaving = []
        for update in updates:
            visit_id = update["userId"]
            update["userId"] = self._assign(visit_id)
            if not update["isActive"]:
                leaving.append(visit_id)
        for event in events:
            event["userId"] = self._assign(event["userId"])
        for visit_id in leaving:
            self.free.append(self.visit.pop(visit_id))
        return updates, events


def transport_of(user_id: str) -> str:
    return "http" if int(user_id[-1], 16) % 2 == 0 else "ws"


@dataclass
class Counts:
    records: int = 0  # updates and events sent
    updates: int = 0
    bodies: int = 0
    accepted: int = 0
    ignored: int = 0
    rejected: int = 0
    failures: list[str] = field(default_factory=list)

    def ack(self, reply: dict[str, Any]) -> None:
        self.accepted += reply.get("accepted", 0)
        self.ignored += reply.get("ignored", 0)
        self.rejected += len(reply.get("rejected", ()))


@dataclass
class Subscriber:
    name: str
    frames: int = 0
    bytes: int = 0
    error: str = ""


class Soak:
    def __init__(self, exporter: Service, args: argparse.Namespace) -> None:
        self.exporter = exporter
        self.args = args
        self.sent = {"http": Counts(), "ws": Counts()}
        self.queues: dict[str, asyncio.Queue[tuple[bytes, int, int]]] = {
            "http": asyncio.Queue(),
            "ws": asyncio.Queue(),
        }
        self.subscribers: list[Subscriber] = []
        self.samples: list[dict[str, Any]] = []
        self.stopping = asyncio.Event()
        self.started = 0.0
        self.censuses: list[tuple[float, dict[str, Any]]] = []  # (minute, census)

    # --- load ---------------------------------------------------------------------------

    async def generate(self, population: Population) -> None:
        """Batch the population's updates every TICK on the wall clock until the end."""
        end = self.started + self.args.minutes * 60
        next_tick = time.monotonic()
        recent: collections.deque[int] = collections.deque(maxlen=int(10 / TICK))
        for tick in itertools.count():
            if next_tick >= end:
                break
            updates, events = population.tick(time.time())
            recent.append(len(updates))
            # Once a second, past the first 20 s (the population's arrival burst).
            if tick >= 20 / TICK and tick % int(1 / TICK) == 0:
                population.steer(sum(recent) / (len(recent) * TICK))
            for transport in ("http", "ws"):
                mine = [u for u in updates if transport_of(u["userId"]) == transport]
                theirs = [e for e in events if transport_of(e["userId"]) == transport]
                # The first tick announces the whole primed store: more than a body may hold.
                for at in range(0, max(len(mine), len(theirs)), BODY_RECORDS):
                    part, extra = mine[at : at + BODY_RECORDS], theirs[at : at + BODY_RECORDS]
                    body = orjson.dumps({"metrics": part, "events": extra})
                    self.queues[transport].put_nowait((body, len(part), len(extra)))
            next_tick += TICK
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        self.stopping.set()

    async def push_http(self, session: aiohttp.ClientSession) -> None:
        """One body at a time, in order, so no shopper's updates overtake each other."""
        counts, queue = self.sent["http"], self.queues["http"]
        url = f"{self.exporter.base}/api/metrics"
        while not (self.stopping.is_set() and queue.empty()):
            try:
                body, updates, events = await asyncio.wait_for(queue.get(), 1.0)
            except TimeoutError:
                continue
            counts.records += updates + events
            counts.updates += updates
            counts.bodies += 1
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    counts.ack(await resp.json(loads=orjson.loads))
            except aiohttp.ClientError as err:
                counts.failures.append(repr(err))

    async def push_ws(self, session: aiohttp.ClientSession) -> None:
        """One connection; messages in order, at most ACK_WINDOW awaiting their ack."""
        counts, queue = self.sent["ws"], self.queues["ws"]
        slots = asyncio.Semaphore(ACK_WINDOW)
        async with session.ws_connect(f"{self.exporter.base}/ws") as ws:

            async def read_acks() -> None:
                async for msg in ws:
                    reply = orjson.loads(msg.data)
                    if reply.get("type") == "ack":
                        counts.ack(reply)
                    else:
                        counts.failures.append(str(reply)[:200])
                    slots.release()

            reader = asyncio.create_task(read_acks())
            while not (self.stopping.is_set() and queue.empty()):
                try:
                    body, updates, events = await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    continue
                await slots.acquire()
                counts.records += updates + events
                counts.updates += updates
                counts.bodies += 1
                await ws.send_str(body.decode())
            for _ in range(ACK_WINDOW):  # every ack is in once all slots are free again
                await asyncio.wait_for(slots.acquire(), 60)
            await ws.close()
            await reader

    # --- live subscribers ---------------------------------------------------------------

    async def sse(self, session: aiohttp.ClientSession, name: str, query: str) -> None:
        """Count frames of /api/stream. Every frame after the first starts "\\n\\nid: "."""
        sub = Subscriber(name)
        self.subscribers.append(sub)
        marker, carry = b"\n\nid: ", b""
        try:
            async with session.get(f"{self.exporter.base}/api/stream{query}") as resp:
                async for chunk in resp.content.iter_any():
                    data = carry + chunk
                    sub.frames += data.count(marker)
                    sub.bytes += len(chunk)
                    carry = data[-(len(marker) - 1) :]  # a marker split across two chunks
        except aiohttp.ClientError as err:
            if not self.stopping.is_set():
                sub.error = repr(err)

    async def ws_subscriber(self, session: aiohttp.ClientSession) -> None:
        sub = Subscriber("WebSocket subscriber, everything")
        self.subscribers.append(sub)
        try:
            async with session.ws_connect(f"{self.exporter.base}/ws") as ws:
                await ws.send_str('{"type": "subscribe"}')
                async for msg in ws:
                    sub.frames += 1
                    sub.bytes += len(msg.data)
        except aiohttp.ClientError as err:
            if not self.stopping.is_set():
                sub.error = repr(err)

    # --- measurement --------------------------------------------------------------------

    async def sample(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        started = time.perf_counter()
        async with session.get(f"{self.exporter.base}/metrics", headers=SCRAPE_HEADERS) as resp:
            text = await resp.text()
        scrape_ms = (time.perf_counter() - started) * 1000
        sums = metric_sums(text)
        point = {
            "seconds": round(time.monotonic() - self.started, 1),
            "rss": self.exporter.rss(),
            "scrape_ms": round(scrape_ms, 2),
            "sent_updates": sum(c.updates for c in self.sent.values()),
            "queued": sum(q.qsize() for q in self.queues.values()),
            "received": sums.get("shopper_updates_received_total", 0),
            "rejected": sums.get("shopper_updates_rejected_total", 0),
            "tracked": sums.get("shopper_tracked_shoppers", 0),
            "active": sums.get("shopper_active_shoppers", 0),
            "subscribers": sums.get("shopper_exporter_stream_subscribers", 0),
            "dropped_frames": sums.get("shopper_exporter_stream_dropped_frames_total", 0),
            "frames": sum(s.frames for s in self.subscribers),
            "log_events": sums.get("shopper_exporter_event_log_entries", 0),
            "log_bytes": sums.get("shopper_exporter_event_log_bytes", 0),
        }
        self.samples.append(point)
        return point

    async def sampler(self, session: aiohttp.ClientSession) -> None:
        """A sample every SAMPLE_EVERY seconds on the clock, the last one as the load stops."""
        n = 0
        while not self.stopping.is_set():
            point = await self.sample(session)
            print(
                f"{point['seconds']:6.0f} s  RSS {size(point['rss']):>10}  "
                f"sent {point['sent_updates']:>9,}  tracked {point['tracked']:>7,.0f}  "
                f"queued {point['queued']}",
                flush=True,
            )
            n += 1
            with contextlib.suppress(TimeoutError):
                delay = self.started + n * SAMPLE_EVERY - time.monotonic()
                await asyncio.wait_for(self.stopping.wait(), max(0.0, delay))
        await self.sample(session)

    async def take_census(self, session: aiohttp.ClientSession) -> None:
        minute = (time.monotonic() - self.started) / 60
        for _ in range(10):  # 503 (older exporters) while a snapshot writer outlasts the wait
            async with session.get(f"{self.exporter.base}/debug/memory?top=0") as resp:
                if resp.status != 503:
                    resp.raise_for_status()
                    found = await resp.json(loads=orjson.loads)
                    break
        else:
            print(f"no census at {minute:.1f} min: the exporter stayed busy", flush=True)
            return
        self.censuses.append((minute, found))
        print(
            f"census at {minute:.1f} min: RSS {size(found['rss'])}, traced "
            f"{size(found['traced']['current'])} in {found['seconds']:.1f} s",
            flush=True,
        )

    async def census_taker(self, session: aiohttp.ClientSession) -> None:
        """A census at the end of the warm-up, every --census-every minutes, and at the end."""
        every = self.args.census_every * 60
        if every <= 0:
            return
        at = min(self.args.warmup, self.args.minutes / 2) * 60
        while True:
            with contextlib.suppress(TimeoutError):
                delay = self.started + at - time.monotonic()
                await asyncio.wait_for(self.stopping.wait(), max(0.0, delay))
            if self.stopping.is_set():
                break
            await self.take_census(session)
            at += every
        await self.take_census(session)

    async def run(self) -> dict[str, Any]:
        population = Population(self.args.shoppers, self.args.rate)
        # Not the demo's half hour played at the first tick: that takes minutes here, and its
        # catch-up arrives as one burst of more shoppers than there are ids.
        population.generator.open_empty(time.time())
        self.started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            listeners = [
                asyncio.create_task(self.sse(session, "SSE subscriber, everything", "")),
                asyncio.create_task(
                    self.sse(session, "SSE subscriber, events + summary", "?types=event,summary")
                ),
                asyncio.create_task(
                    self.sse(session, "SSE subscriber, one shopper", "?user=shopper_00042")
                ),
                asyncio.create_task(self.ws_subscriber(session)),
            ]
            await asyncio.sleep(0.5)  # subscribed before the first update
            self.started = time.monotonic()
            await asyncio.gather(
                self.generate(population),
                self.push_http(session),
                self.push_ws(session),
                self.sampler(session),
                self.census_taker(session),
            )
            await asyncio.sleep(2)  # the last frames reach the subscribers
            final = await self.sample(session)
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
        return final


def metric_sums(text: str) -> dict[str, float]:
    """Each sample name in a text exposition, summed over its label sets."""
    sums: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        sums[name] += float(line.rsplit(" ", 1)[1])
    return sums


def per_second(before: dict[str, Any], after: dict[str, Any], key: str) -> str:
    span = after["seconds"] - before["seconds"]
    return f"{(after[key] - before[key]) / span:,.0f}" if span else "—"


def rss_at(samples: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The first sample taken at or after `seconds`."""
    return next((p for p in samples if p["seconds"] >= seconds), samples[-1])


def mean_rss(samples: list[dict[str, Any]], start: float, end: float) -> float:
    """Mean RSS of the samples taken in [start, end) seconds."""
    window = [p["rss"] for p in samples if start <= p["seconds"] < end]
    return statistics.fmean(window) if window else float("nan")


def trend_per_minute(samples: list[dict[str, Any]]) -> float:
    """Least-squares slope of RSS over time, as a fraction of the mean RSS per minute."""
    if len(samples) < 3:
        return 0.0
    xs = [p["seconds"] / 60 for p in samples]
    ys = [p["rss"] for p in samples]
    slope = statistics.linear_regression(xs, ys).slope
    return slope / statistics.fmean(ys)


def report(soak: Soak, final: dict[str, Any], args: argparse.Namespace) -> str:
    samples = soak.samples
    warmup = min(args.warmup, args.minutes / 2) * 60
    base, end = rss_at(samples, warmup), samples[-2] if len(samples) > 1 else samples[-1]
    after = [p for p in samples[:-1] if p["seconds"] >= base["seconds"]]
    peak = max(p["rss"] for p in after)
    trough = min(p["rss"] for p in after)
    point_growth = (end["rss"] - base["rss"]) / base["rss"]
    window = args.window * 60
    first = mean_rss(after, warmup, warmup + window)
    last = mean_rss(after, end["seconds"] - window + 0.1, end["seconds"] + 0.1)
    growth = (last - first) / first
    held = abs(growth) <= args.within / 100
    trend = trend_per_minute(after)
    http, ws = soak.sent["http"], soak.sent["ws"]
    acked = sum(c.accepted + c.ignored for c in soak.sent.values())
    applied = final["received"] - final["rejected"]
    sent_records = http.records + ws.records
    duration = end["seconds"]
    rate = (http.updates + ws.updates) / duration
    applied_rate = (end["received"] - end["rejected"]) / duration

    def mark(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    lines = [
        f"Machine: {machine()}; load average at the end {load_average()}.",
        f"{args.shoppers:,} returning shoppers, {args.rate:,.0f} updates/s asked, "
        f"{args.minutes:g} min; HTTP bulk and WebSocket pushes every {TICK} s; "
        f"{len(soak.subscribers)} live subscribers.",
        "",
        "| Minute | RSS | vs warm-up | Updates/s (last minute) | Tracked shoppers "
        "| Online | Live frames/s | /metrics | Event log (its estimate) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    # One row a minute; the sample taken as the load stops stands for the last minute.
    by_minute = {round(p["seconds"] / 60): p for p in samples[:-1] if p["seconds"] % 60 < 2.5}
    minute_marks = list(by_minute.values())
    previous = samples[0]
    for point in minute_marks:
        lines.append(
            f"| {point['seconds'] / 60:.0f} | {size(point['rss'])} "
            f"| {(point['rss'] - base['rss']) / base['rss']:+.1%} "
            f"| {per_second(previous, point, 'sent_updates')} "
            f"| {point['tracked']:,.0f} | {point['active']:,.0f} "
            f"| {per_second(previous, point, 'frames')} | {point['scrape_ms']:.1f} ms "
            f"| {point['log_events']:,.0f} events, {size(point['log_bytes'])} |"
        )
        previous = point
    lines += [
        "",
        "| Measure | Result | Target |",
        "|---|---|---|",
        f"| Updates generated | {http.updates + ws.updates:,} in {duration:.0f} s = {rate:,.0f}/s "
        f"(HTTP {http.updates:,} in {http.bodies:,} bodies, WebSocket {ws.updates:,} in "
        f"{ws.bodies:,} messages) | |",
        f"| Records applied by the exporter during the run (received − rejected at "
        f"{end['seconds']:.0f} s) | {end['received'] - end['rejected']:,.0f} = "
        f"{applied_rate:,.0f}/s; the rest queued at the sender ({end['queued']} bodies) and was "
        f"applied after | {args.rate:,.0f}/s: {mark(applied_rate >= 0.98 * args.rate)} |",
        f"| Explicit events sent | {sent_records - http.updates - ws.updates:,} | |",
        f"| RSS, mean of the first {args.window:g} min after warm-up → mean of the last "
        f"{args.window:g} min | {size(first)} → {size(last)} ({growth:+.1%}) "
        f"| within {args.within:g} %: {mark(held)} |",
        f"| RSS trend after warm-up (least squares) | {trend:+.2%} of the mean per minute | |",
        f"| RSS single samples at {base['seconds'] / 60:.1f} min → end "
        f"({end['seconds'] / 60:.1f} min) | {size(base['rss'])} → {size(end['rss'])} "
        f"({point_growth:+.1%}); lowest {size(trough)}, highest {size(peak)} after warm-up "
        f"(swing {(peak - trough) / trough:.1%}) | |",
        f"| Acks: accepted + ignored | {acked:,} (accepted "
        f"{http.accepted + ws.accepted:,}, ignored {http.ignored + ws.ignored:,}, rejected "
        f"{http.rejected + ws.rejected:,}) | |",
        f"| Exporter: received − rejected | {applied:,.0f} ({final['received']:,.0f} − "
        f"{final['rejected']:,.0f}) | equal to acks: {mark(applied == acked)} |",
        f"| Records sent | {sent_records:,} | all answered: "
        f"{mark(sent_records == acked + http.rejected + ws.rejected)} |",
        f"| Largest send backlog (bodies queued) | {max(p['queued'] for p in samples)} | |",
        f"| Live frames dropped (shopper_exporter_stream_dropped_frames_total) | "
        f"{final['dropped_frames']:,.0f} | |",
    ]
    for sub in soak.subscribers:
        note = f"; ended: {sub.error}" if sub.error else ""
        lines.append(f"| {sub.name} | {sub.frames:,} frames, {size(sub.bytes)}{note} | |")
    failures = http.failures + ws.failures
    if failures:
        lines.append(f"| Failed sends | {len(failures)}: {failures[0][:120]} | |")
    return "\n".join(lines) + "\n"


GROWING_SITES = 15
TYPES_SHOWN = 12


def signed_size(n: float) -> str:
    return ("+" if n >= 0 else "−") + size(abs(n))


def _count(n: int | None) -> str:
    """A count, or — where the census did not list the type (not among its most numerous)."""
    return "—" if n is None else f"{n:,}"


def census_report(censuses: list[tuple[float, dict[str, Any]]]) -> str:
    """Tables of the censuses: the process at each; the sites that grew most from the first to
    the last, with their size at every census; the project's types counted at each."""
    if not censuses:
        return ""
    heads = " | ".join(f"{minute:.1f} min" for minute, _ in censuses)
    rule = "|---" * (len(censuses) + 1) + "|"

    def row(name: str, values: list[str]) -> str:
        return f"| {name} | " + " | ".join(values) + " |"

    founds = [found for _, found in censuses]
    lines = [
        "",
        "Allocation census (`GET /debug/memory`, exporter run with `--debug-memory`):",
        "",
        f"| Census | {heads} |",
        rule,
        row("RSS", [size(f["rss"]) for f in founds]),
        row("Traced by tracemalloc", [size(f["traced"]["current"]) for f in founds]),
        row("tracemalloc's own memory", [size(f["traced"]["overhead"]) for f in founds]),
        row("Allocated blocks", [f"{f['allocatedBlocks']:,}" for f in founds]),
        row("Frozen objects", [f"{f['gc']['frozen']:,}" for f in founds]),
        row(
            "Collections gen 0 / 1 / 2",
            [" / ".join(f"{g['collections']:,}" for g in f["gc"]["generations"]) for f in founds],
        ),
        row("Uncollectable (gc.garbage)", [f"{f['gc']['garbage']:,}" for f in founds]),
        row(
            "Objects of the project's types",
            [_count(sum(f["objects"].values()) if f["objects"] else None) for f in founds],
        ),
        row("Census took", [f"{f['seconds']:.1f} s" for f in founds]),
    ]
    first, last = founds[0], founds[-1]
    by_site = [{s["site"]: s for s in f["sites"]} for f in founds]
    growth = sorted(
        (
            (site["bytes"] - by_site[0].get(name, {}).get("bytes", 0), name)
            for name, site in by_site[-1].items()
        ),
        reverse=True,
    )[:GROWING_SITES]
    lines += [
        "",
        f"Allocation sites that grew most from the first census to the last (live bytes, "
        f"blocks at the last); the whole traced memory went {size(first['traced']['current'])}"
        f" → {size(last['traced']['current'])}:",
        "",
        f"| Site | {heads} | Growth | Blocks |",
        "|---" * (len(censuses) + 3) + "|",
    ]
    for grew, name in growth:
        sizes = [size(sites.get(name, {}).get("bytes", 0)) for sites in by_site]
        blocks = by_site[-1][name]["blocks"]
        lines.append(
            f"| `{name}` | " + " | ".join(sizes) + f" | {signed_size(grew)} | {blocks:,} |"
        )
    counted = [f for f in founds if f["objects"]]  # a census under a busy writer has none
    if not counted:
        return "\n".join(lines) + "\n"
    final = counted[-1]
    shown = sorted(final["objects"], key=lambda k: -final["objects"][k])[:TYPES_SHOWN]
    lines += ["", f"Objects of the project's types (the {len(shown)} most numerous at the end):"]
    lines += ["", f"| Type | {heads} |", rule]
    for kind in shown:
        lines.append(row(f"`{kind}`", [_count((f["objects"] or {}).get(kind)) for f in founds]))
    common = list(final["commonObjects"])[:TYPES_SHOWN]
    lines += ["", "Most numerous objects of any type the collector tracks:", ""]
    lines += [f"| Type | {heads} |", rule]
    for kind in common:
        lines.append(
            row(f"`{kind}`", [_count((f["commonObjects"] or {}).get(kind)) for f in founds])
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="updates per second")
    parser.add_argument("--shoppers", type=int, default=20_000)
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes before RSS counts")
    parser.add_argument(
        "--window",
        type=float,
        default=1.0,
        help="minutes of samples averaged at each end (after the warm-up, before the end)",
    )
    parser.add_argument(
        "--within",
        type=float,
        default=5.0,
        help="percent the two windows' mean RSS may differ by for the check to hold",
    )
    parser.add_argument(
        "--event-log-max-bytes",
        default="16MiB",
        help="the exporter's event-log bound; the log grows until it holds this much (or "
        "--event-log-retention), so it must fill during the warm-up for RSS to be flat after it",
    )
    parser.add_argument(
        "--event-log-retention", default="1h", help="the exporter's event-log age bound"
    )
    parser.add_argument(
        "--census-every",
        type=float,
        default=10.0,
        help="minutes between allocation censuses after the warm-up (0: no census, and the "
        "exporter runs without --debug-memory)",
    )
    parser.add_argument("--state-file", help="the exporter snapshots its state to this file")
    parser.add_argument("--snapshot-interval", type=float, default=30.0)
    args = parser.parse_args()
    print(f"Machine: {machine()}; load average {load_average()}", flush=True)
    options = [
        "--event-log-max-bytes",
        args.event_log_max_bytes,
        "--event-log-retention",
        args.event_log_retention,
    ]
    if args.census_every > 0:
        options.append("--debug-memory")
    if args.state_file:
        options += [
            "--state-file",
            args.state_file,
            "--snapshot-interval",
            str(args.snapshot_interval),
        ]
    with exporter_service(*options) as exporter:
        soak = Soak(exporter, args)
        final = asyncio.run(soak.run())
    text = report(soak, final, args) + census_report(soak.censuses)
    print()
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    for minute, found in soak.censuses:
        (OUT / f"soak-census-{minute:04.1f}.json").write_text(json.dumps(found, indent=1))
    (OUT / "soak.md").write_text(text)
    with (OUT / "soak.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(soak.samples[0]))
        writer.writeheader()
        writer.writerows(soak.samples)


if __name__ == "__main__":
    main()
