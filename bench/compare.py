"""This exporter next to Prometheus Pushgateway and the ceilings, measured in one run.

    .venv/bin/python bench/compare.py [--quick]

Ceilings: an aiohttp no-op POST handler and pydantic-only validation. Pushgateway: one shopper per
push (`PUT /metrics/job/shopper/instance/<userId>`), pushes/s with and without its consistency
check, /metrics latency and size at 100, 10k and up to 100k shoppers, RSS per shopper. This
exporter: single-record POST, 1,000-record HTTP bulk, 1,000-record WebSocket messages, /metrics at
100, 10k and 1M shoppers, RSS per shopper. Prints a Markdown table and writes bench/out/compare.md.
Needs `wrk` and `prometheus-pushgateway` (Debian packages). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from exporter.demo import DemoGenerator  # noqa: E402
from exporter.model import ShopperUpdate  # noqa: E402

PUSHGATEWAY = "/usr/bin/prometheus-pushgateway"
BATCH = 1000
DONE_LINE = "wrk-thread-done"
# What Prometheus sends: plain text, compressed.
SCRAPE_HEADERS = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}

NOOP_SERVER = """
import sys
from aiohttp import web
async def noop(request):
    await request.read()
    return web.json_response({"accepted": 1})
app = web.Application()
app.router.add_post("/api/metrics", noop)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


# --- processes and the machine ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Service:
    """A server process on a loopback port, stopped on exit."""

    def __init__(self, args: list[str], port: int) -> None:
        # SHOPPER_* variables from the caller's shell would change the exporter's settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPPER_")}
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env
        )
        try:
            wait_port(port)
        except RuntimeError:
            self.stop()
            raise

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def exporter_service(*extra: str) -> Service:
    port = free_port()
    args = [sys.executable, "-m", "exporter", "--port", str(port), "--max-body-bytes", "8388608"]
    return Service([*args, *extra], port)


def pushgateway_service(*extra: str) -> Service:
    port = free_port()
    args = [
        PUSHGATEWAY,
        f"--web.listen-address=127.0.0.1:{port}",
        "--persistence.file=",
        "--log.level=warn",
    ]
    return Service([*args, *extra], port)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settled_rss(service: Service, pause: float = 2.0) -> int:
    """RSS after a pause, so buffers of the last requests are released first."""
    time.sleep(pause)
    return service.rss()


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem:.1f} GiB RAM, Python {platform.python_version()}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ensure_pushgateway() -> None:
    if Path(PUSHGATEWAY).exists():
        return
    subprocess.run(["apt-get", "install", "-y", "prometheus-pushgateway"], check=True)


# --- records and bodies -------------------------------------------------------------------


def demo_records(count: int, shoppers: int) -> list[dict[str, Any]]:
    """Realistic updates: many shoppers, each advancing through a journey."""
    generator = DemoGenerator(shoppers, seed=7, pace=4.0)
    # Stamped in the recent past: the service refuses records from its future (--max-clock-skew).
    now, out = time.time() - 3600.0, []
    while len(out) < count:
        updates, _ = generator.tick(now)
        out.extend(updates)
        now += 0.25
    return out[:count]


def renamed(batch: bytes, prefix: str) -> bytes:
    """The batch with every userId prefixed, so each transport brings its own shoppers."""
    return batch.replace(b'"userId":"', f'"userId":"{prefix}'.encode())


class NewShoppers:
    """Bodies of 1,000 never-seen shoppers each, made from one encoded template batch."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        # "~" starts no other string in the batch, so it marks exactly the userIds.
        self.template = orjson.dumps(
            [r | {"userId": f"~{j:04d}"} for j, r in enumerate(records[:BATCH])]
        )
        self.serial = itertools.count()

    def batches(self, shoppers: int) -> Iterator[bytes]:
        """Enough batches for `shoppers` new shoppers (the last one cut to size)."""
        while shoppers > 0:
            body = self.template.replace(b'"~', f'"n{next(self.serial):05d}_'.encode())
            if shoppers < BATCH:
                body = orjson.dumps(orjson.loads(body)[:shoppers])
            shoppers -= BATCH
            yield body


def exposition(record: dict[str, Any]) -> str:
    """A shopper's state as Pushgateway users push it: gauges in the text format 0.0.4."""

    def label(value: Any) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"')

    gauges = {
        "shopper_cart_value_dollars": record["cartValue"],
        "shopper_cart_items": record["itemsInCart"],
        "shopper_page_views": record["pageViews"],
        "shopper_session_seconds": round(record["sessionDuration"] * 60, 3),
        "shopper_clicks": record["clickCount"],
        "shopper_products_viewed": record["productsViewed"],
        "shopper_searches": record["searchesPerformed"],
        "shopper_coupons_applied": record["couponsApplied"],
        "shopper_online": int(record["isActive"]),
    }
    lines = [f"# TYPE {name} gauge\n{name} {value}\n" for name, value in gauges.items()]
    info = (
        f'activity="{label(record["activeFeature"])}",'
        f'membership="{label(record["membershipType"])}",'
        f'delivery_window="{label(record["deliveryWindow"])}",'
        f'location="{label(record["company"])}"'
    )
    lines.append(f"# TYPE shopper_info gauge\nshopper_info{{{info}}} 1\n")
    return "".join(lines)


# --- load generators ----------------------------------------------------------------------


@dataclass
class WrkRun:
    requests: int
    seconds: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")


def lua_strings(values: Iterable[str]) -> str:
    """A Lua table literal of long strings (no escaping needed inside [==[ ]==])."""
    items = []
    for value in values:
        if "]==]" in value:
            raise ValueError("value would end the Lua long string")
        # A newline right after [==[ is dropped by Lua; a leading one keeps the text intact.
        items.append(f"[==[\n{value}]==]")
    return "{" + ",\n".join(items) + "}"


# Threads number themselves in setup(); `tid` is then a global in each thread's Lua state.
LUA_THREADS = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
"""

LUA_EXPORTER = """
local pre = {pre}
local post = {post}
local headers = {{["Content-Type"] = "application/json"}}
local n = 0
request = function()
  n = n + 1
  local k = n % #pre + 1
  local id = "{prefix}" .. tid .. "_" .. n
  return wrk.format("POST", "/api/metrics", headers, pre[k] .. id .. post[k])
end
"""

# Thread t pushes shoppers <prefix><t>_1 .. _<ids>, round and round; with `stop` it ends after
# `ids` answers (requests still in flight then re-push shoppers it already has).
LUA_PUSHGATEWAY = """
local bodies = {bodies}
local headers = {{["Content-Type"] = "text/plain; version=0.0.4"}}
local ids, stop = {ids}, {stop}
local n, answered = 0, 0
request = function()
  n = n + 1
  local i = n
  if ids > 0 and i > ids then i = (i - 1) % ids + 1 end
  local path = "/metrics/job/shopper/instance/{prefix}" .. tid .. "_" .. i
  return wrk.format("PUT", path, headers, bodies[i % #bodies + 1])
end
if stop then
  response = function(status, hdrs, body)
    answered = answered + 1
    if answered == ids then
      io.write("{done}\\n")
      io.flush()
      wrk.thread:stop()
    end
  end
end
"""


def wrk(url: str, script: str, seconds: float, threads: int = 2, connections: int = 32) -> WrkRun:
    """Run wrk with a Lua script; completed requests, elapsed seconds and non-2xx/socket errors.

    A script that prints DONE_LINE from every thread ends the run early: wrk itself would
    sleep out its whole -d, so the elapsed time is then taken at the last thread's line.
    """
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA_THREADS + script)
    args = [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s", "-s", f.name, url]
    lines: list[str] = []
    finished: float | None = None
    try:
        with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as proc:
            started = time.perf_counter()
            assert proc.stdout is not None
            for line in proc.stdout:  # ends when wrk exits, at the latest after -d
                lines.append(line)
                if line.strip() == DONE_LINE and lines.count(line) == threads:
                    finished = time.perf_counter() - started
                    proc.send_signal(signal.SIGINT)  # wrk prints its summary and exits
    finally:
        os.unlink(f.name)
    out = "".join(lines)
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if proc.returncode != 0 or done is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out}")
    elapsed = float(done.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    errors = sum(
        int(x)
        for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out)
        + re.findall(r"(?:connect|read|write|timeout) (\d+)", out)
    )
    return WrkRun(int(done.group(1)), finished or elapsed, errors)


def exporter_single_script(records: list[dict[str, Any]], prefix: str) -> str:
    """Each request one record of a realistic pool, under a never-seen userId."""
    pre, post = [], []
    for record in records:
        head, tail = orjson.dumps(record | {"userId": "@@id@@"}).decode().split("@@id@@")
        pre.append(head)
        post.append(tail)
    return LUA_EXPORTER.format(pre=lua_strings(pre), post=lua_strings(post), prefix=prefix)


def pushgateway_script(bodies: list[str], prefix: str, ids: int = 0, stop: bool = False) -> str:
    """Pushes per wrk thread: ids 1..`ids` (0 = always new), once each when `stop`."""
    lua_stop = "true" if stop else "false"
    return LUA_PUSHGATEWAY.format(
        bodies=lua_strings(bodies), prefix=prefix, ids=ids, stop=lua_stop, done=DONE_LINE
    )


def pydantic_rate(records: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for record in records:
        ShopperUpdate.model_validate(record)
    return len(records) / (time.perf_counter() - started)


@dataclass
class Ingested:
    records: int = 0
    accepted: int = 0
    ignored: int = 0
    rejected: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else float("nan")


def count_reply(result: Ingested, reply: dict[str, Any]) -> None:
    result.accepted += reply.get("accepted", 0)
    result.ignored += reply.get("ignored", 0)
    result.rejected += len(reply.get("rejected", ()))
    result.records = result.accepted + result.ignored + result.rejected


async def http_bulk(url: str, batches: Iterable[bytes], concurrency: int = 4) -> Ingested:
    """POST pre-encoded batches, `concurrency` in flight; counts what the replies say."""
    source = iter(batches)
    result = Ingested()

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in source:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                count_reply(result, await resp.json(loads=orjson.loads))

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


async def ws_bulk(url: str, messages: list[bytes], window: int = 4) -> Ingested:
    """Send batched messages over one WebSocket, at most `window` awaiting their ack."""
    result = Ingested()
    slots = asyncio.Semaphore(window)
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:

        async def read_acks() -> None:
            for _ in messages:
                msg = await ws.receive()
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    raise RuntimeError(f"WebSocket ended early: {msg.type!r} {msg.data!r}")
                ack = orjson.loads(msg.data)
                if ack.get("type") != "ack":
                    raise RuntimeError(f"not an ack: {ack}")
                count_reply(result, ack)
                slots.release()

        started = time.perf_counter()
        reader = asyncio.create_task(read_acks())
        for body in messages:
            await slots.acquire()
            await ws.send_str(body.decode())
        await reader
        result.seconds = time.perf_counter() - started
    return result


async def push_shoppers(
    base: str, ids: list[str], bodies: list[str], seconds: float = 0.0, concurrency: int = 32
) -> WrkRun:
    """PUT each shopper's group once (or round and round for `seconds`), `concurrency` at once."""
    done = errors = 0
    counter = itertools.count()
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "text/plain; version=0.0.4"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, errors
        while True:
            i = next(counter)
            if seconds <= 0 and i >= len(ids):
                return
            if seconds > 0 and time.perf_counter() >= deadline:
                return
            uid = ids[i % len(ids)]
            url = f"{base}/metrics/job/shopper/instance/{uid}"
            async with session.put(url, data=bodies[i % len(bodies)], headers=headers) as resp:
                await resp.read()
                errors += resp.status >= 300
            done += 1

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return WrkRun(done, elapsed, errors)


# --- scrapes ------------------------------------------------------------------------------


@dataclass
class Scrape:
    ms: float
    raw_bytes: int
    wire_bytes: int
    rounds: int

    def describe(self) -> str:
        ms = f"{self.ms:.2f}" if self.ms < 10 else f"{self.ms:,.0f}"
        return f"{ms} ms, {size(self.raw_bytes)} ({size(self.wire_bytes)} gzip)"


def size(n: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


async def scrape(url: str, rounds: int = 20, budget: float = 15.0) -> Scrape:
    """Median time of GET /metrics as Prometheus asks for it; stops early after `budget` s
    (at least 3 rounds)."""
    times: list[float] = []
    body, encoding = b"", ""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        # Untimed first request: opens the connection and pays any first-render cost.
        async with session.get(url, headers=SCRAPE_HEADERS) as resp:
            await resp.read()
        started = time.perf_counter()
        while len(times) < rounds and (len(times) < 3 or time.perf_counter() - started < budget):
            t = time.perf_counter()
            async with session.get(url, headers=SCRAPE_HEADERS) as resp:
                body = await resp.read()
                encoding = resp.headers.get("Content-Encoding", "")
            times.append(time.perf_counter() - t)
    raw = len(gzip.decompress(body)) if encoding == "gzip" else len(body)
    return Scrape(statistics.median(times) * 1000, raw, len(body), len(times))


def pushgateway_groups(base: str) -> int:
    """Groups held, counted from the push_time_seconds series of a scrape."""

    async def fetch() -> bytes:
        async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
            return await resp.read()

    return asyncio.run(fetch()).count(b"\npush_time_seconds{")


# --- the phases ---------------------------------------------------------------------------


@dataclass
class Settings:
    seconds: int  # per wrk rate run
    records: int  # realistic updates for the bulk and WebSocket runs
    big: int  # shoppers held by the exporter for the largest scrape
    pushgateway_aim: int  # shoppers Pushgateway should hold (consistency check off)
    checked_budget: float  # seconds of pushing into a default Pushgateway


def ceilings(s: Settings, records: list[dict[str, Any]], bulk: list[bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {"pydantic": pydantic_rate(records[:50_000])}
    with Service([sys.executable, "-c", NOOP_SERVER, str(port := free_port())], port) as noop:
        script = exporter_single_script(records[:BATCH], "noop")
        out["noop_single"] = wrk(f"{noop.base}/api/metrics", script, s.seconds)
        # The no-op answers {"accepted": 1} per body, each body holding 1,000 records.
        bodies = itertools.islice(itertools.cycle(bulk), 1000)
        run = asyncio.run(http_bulk(f"{noop.base}/api/metrics", bodies))
        out["noop_bulk"] = BATCH * run.accepted / run.seconds
    return out


def pushgateway_checked(s: Settings, bodies: list[str]) -> dict[str, Any]:
    """Pushgateway as installed: every push re-checks consistency over all groups held."""
    slices: list[tuple[int, float]] = []  # (groups held after the slice, pushes/s in it)
    step = max(2, min(10, s.seconds))
    started = time.monotonic()
    with pushgateway_service() as pg:
        while time.monotonic() - started < s.checked_budget:
            run = wrk(pg.base, pushgateway_script(bodies, f"r{len(slices)}t"), step)
            slices.append((pushgateway_groups(pg.base), run.rate))
            if slices[-1][0] >= 10_000:
                break
    return {"slices": slices, "seconds": time.monotonic() - started}


def pushgateway_unchecked(s: Settings, bodies: list[str]) -> dict[str, Any]:
    """Pushgateway with --push.disable-consistency-check, the only way to fill it this far."""
    out: dict[str, Any] = {}
    with pushgateway_service("--push.disable-consistency-check") as pg:
        first = [f"a_{i}" for i in range(100)]
        asyncio.run(push_shoppers(pg.base, first, bodies, concurrency=8))
        out["rss_100"] = settled_rss(pg)
        out["scrape_100"] = asyncio.run(scrape(f"{pg.base}/metrics", 30))

        per_thread = (10_000 - 100) // 2
        wrk(pg.base, pushgateway_script(bodies, "b", per_thread, stop=True), 120)
        out["scrape_10k"] = asyncio.run(scrape(f"{pg.base}/metrics", 20))
        # Both load generators on the same 10k groups, re-pushing shoppers already held.
        held = [f"b{t}_{i}" for t in (1, 2) for i in range(1, per_thread + 1)]
        out["aiohttp"] = asyncio.run(push_shoppers(pg.base, held, bodies, seconds=s.seconds))
        out["wrk"] = wrk(pg.base, pushgateway_script(bodies, "b", per_thread), s.seconds)

        before = pushgateway_groups(pg.base)
        per_thread = (s.pushgateway_aim - before) // 2
        out["fill"] = wrk(pg.base, pushgateway_script(bodies, "c", per_thread, stop=True), 120)
        out["groups_before_fill"] = before
        out["groups"] = pushgateway_groups(pg.base)
        out["rss_big"] = settled_rss(pg)
        out["scrape_big"] = asyncio.run(scrape(f"{pg.base}/metrics", 5, budget=20))
    return out


def exporter_ingest(
    s: Settings, records: list[dict[str, Any]], bulk: list[bytes]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with exporter_service() as exp:
        url = f"{exp.base}/api/metrics"
        out["bulk"] = asyncio.run(http_bulk(url, [renamed(b, "h_") for b in bulk]))
        try:
            messages = [renamed(b, "w_") for b in bulk]
            out["ws"] = asyncio.run(ws_bulk(f"{exp.base}/ws", messages))
        except aiohttp.WSServerHandshakeError as err:
            out["ws_missing"] = f"/ws answered {err.status}"
        except (aiohttp.ClientError, RuntimeError) as err:
            out["ws_missing"] = f"/ws failed: {err}"
        out["single"] = wrk(url, exporter_single_script(records[:BATCH], "s"), s.seconds)
    return out


def exporter_scale(s: Settings, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One fresh exporter filled with 100, then 10k, then `s.big` distinct shoppers."""
    out: dict[str, Any] = {}
    fresh = NewShoppers(records)
    with exporter_service() as exp:
        url, metrics = f"{exp.base}/api/metrics", f"{exp.base}/metrics"
        asyncio.run(http_bulk(url, fresh.batches(100)))
        out["rss_100"] = settled_rss(exp)
        # Renders take about a millisecond: many rounds, so the median is not one hiccup.
        out["scrape_100"] = asyncio.run(scrape(metrics, 200))
        asyncio.run(http_bulk(url, fresh.batches(10_000 - 100)))
        out["scrape_10k"] = asyncio.run(scrape(metrics, 200))
        out["fill"] = asyncio.run(http_bulk(url, fresh.batches(s.big - 10_000)))
        out["rss_big"] = settled_rss(exp)
        out["scrape_big"] = asyncio.run(scrape(metrics, 200))
    return out


# --- the table ----------------------------------------------------------------------------


def times(value: float, base: float, suffix: str = "") -> str:
    """value / base as a factor; '—' when either side is missing."""
    if not base or value != value or base != base:
        return "—"
    r = value / base
    if r >= 100:
        text = f"{r:,.0f}"
    elif r >= 0.1:
        text = f"{r:.1f}" if r >= 10 else f"{r:.2f}"
    else:
        text = f"{r:.2g}"  # two significant digits, not 0.00
    return f"{text}×{suffix}"


def target(name: str, ok: bool) -> str:
    return f"{name}: {'**met**' if ok else '**not met**'}"


Row = tuple[str, str, str, str, str]


def row(measure: str, result: str, ceiling: str = "", pushgateway: str = "", goal: str = "") -> Row:
    return (measure, result, ceiling, pushgateway, goal)


def ceiling_rows(c: dict[str, Any], pg_rate: float) -> list[Row]:
    return [
        row("**Ceilings**", ""),
        row("pydantic-only validation", f"{c['pydantic']:,.0f} records/s", "1.00×",
            times(c["pydantic"], pg_rate)),
        row("aiohttp no-op POST, single (wrk)", f"{c['noop_single'].rate:,.0f} req/s", "1.00×",
            times(c["noop_single"].rate, pg_rate)),
        row("aiohttp no-op POST, 1,000-record bodies", f"{c['noop_bulk']:,.0f} records/s",
            "1.00×", times(c["noop_bulk"], pg_rate)),
    ]  # fmt: skip


def pushgateway_rows(
    c: dict[str, Any], pc: dict[str, Any], pu: dict[str, Any], pg_rate: float
) -> list[Row]:
    noop = c["noop_single"].rate
    (first_n, first_rate), (last_n, last_rate) = pc["slices"][0], pc["slices"][-1]
    tools = {"wrk": pu["wrk"].rate, "aiohttp client": pu["aiohttp"].rate}
    best, other = sorted(tools, key=tools.__getitem__, reverse=True)
    fill, n = pu["fill"], pu["groups"]
    per_shopper = (pu["rss_big"] - pu["rss_100"]) / max(1, n - 100)
    scrape_100 = pu["scrape_100"].ms
    return [
        row("**Prometheus Pushgateway** (one shopper per push, one group per shopper)", ""),
        row(f"push, consistency check on (default), 0 → {first_n:,} shoppers",
            f"{first_rate:,.0f} pushes/s", times(first_rate, noop, " of no-op"),
            times(first_rate, pg_rate)),
        row(f"push, consistency check on, at {last_n:,} shoppers; stopped after "
            f"{pc['seconds']:.0f} s", f"{last_rate:,.0f} pushes/s",
            times(last_rate, noop, " of no-op"), times(last_rate, pg_rate)),
        row(f"push, consistency check off, 10k shoppers held, {best} (the faster)",
            f"{tools[best]:,.0f} pushes/s", times(tools[best], noop, " of no-op"), "1.00×"),
        row(f"push, consistency check off, 10k shoppers held, {other}",
            f"{tools[other]:,.0f} pushes/s", times(tools[other], noop, " of no-op"),
            times(tools[other], pg_rate)),
        row(f"push, consistency check off, filling {pu['groups_before_fill']:,} → {n:,} (wrk)",
            f"{fill.rate:,.0f} pushes/s, {fill.seconds:.1f} s", times(fill.rate, noop, " of no-op"),
            times(fill.rate, pg_rate)),
        row("/metrics, 100 shoppers", pu["scrape_100"].describe(), "", "1.00×"),
        row("/metrics, 10,000 shoppers", pu["scrape_10k"].describe(), "",
            times(pu["scrape_10k"].ms, scrape_100, " of its 100")),
        row(f"/metrics, {n:,} shoppers", pu["scrape_big"].describe(), "",
            times(pu["scrape_big"].ms, scrape_100, " of its 100")),
        row(f"RSS per shopper ({size(pu['rss_100'])} at 100 → {size(pu['rss_big'])})",
            f"{per_shopper:,.0f} bytes", "", "1.00×"),
    ]  # fmt: skip


def exporter_rows(
    s: Settings,
    c: dict[str, Any],
    pu: dict[str, Any],
    ei: dict[str, Any],
    es: dict[str, Any],
    pg_rate: float,
) -> list[Row]:
    pydantic, noop = c["pydantic"], c["noop_single"].rate
    single, bulk, fill = ei["single"].rate, ei["bulk"].rate, es["fill"].rate
    pg_n = pu["groups"]
    pg_per_shopper = (pu["rss_big"] - pu["rss_100"]) / max(1, pg_n - 100)
    per_shopper = (es["rss_big"] - es["rss_100"]) / (s.big - 100)
    scrapes = {k: es[k].ms for k in ("scrape_100", "scrape_10k", "scrape_big")}
    big_ratio = scrapes["scrape_big"] / scrapes["scrape_100"]
    if "ws" in ei:
        ws = ei["ws"].rate
        ws_row = row("WebSocket /ws, 1,000-record messages, one connection",
                     f"{ws:,.0f} records/s", times(ws, pydantic, " of pydantic"),
                     times(ws, pg_rate), target("≥ 50k/s", ws >= 50_000))  # fmt: skip
    else:
        ws_row = row("WebSocket /ws", f"pending ({ei['ws_missing']})", "", "", "≥ 50k/s: pending")
    return [
        row("**This exporter**", ""),
        row("HTTP single-record POST (wrk)", f"{single:,.0f} req/s",
            times(single, noop, " of no-op"), times(single, pg_rate),
            target("≥ 10k/s", single >= 10_000)),
        row("HTTP bulk, 1,000-record batches, 4 in flight", f"{bulk:,.0f} records/s",
            times(bulk, pydantic, " of pydantic"), times(bulk, pg_rate),
            target("≥ 100k/s", bulk >= 100_000)),
        ws_row,
        row(f"HTTP bulk, filling 10,000 → {s.big:,} new shoppers", f"{fill:,.0f} records/s",
            times(fill, pydantic, " of pydantic"), times(fill, pg_rate)),
        row("/metrics, 100 shoppers", es["scrape_100"].describe(), "",
            times(scrapes["scrape_100"], pu["scrape_100"].ms)),
        row("/metrics, 10,000 shoppers", es["scrape_10k"].describe(), "",
            times(scrapes["scrape_10k"], pu["scrape_10k"].ms)),
        row(f"/metrics, {s.big:,} shoppers", es["scrape_big"].describe(), "",
            times(scrapes["scrape_big"], pu["scrape_big"].ms, f" (of PG at {pg_n:,})"),
            target(f"≤ 1.5× of 100 ({big_ratio:.2f}×)", big_ratio <= 1.5)),
        row(f"RSS per shopper ({size(es['rss_100'])} at 100 → {size(es['rss_big'])})",
            f"{per_shopper:,.0f} bytes", "", times(per_shopper, pg_per_shopper),
            target("≤ 1 KiB", per_shopper <= 1024)),
    ]  # fmt: skip


def checked_note(pc: dict[str, Any]) -> str:
    """Why the larger Pushgateway figures come from one started without its consistency check."""
    (_, first_rate), (last_n, last_rate) = pc["slices"][0], pc["slices"][-1]
    text = (
        f"Pushgateway as installed re-checks every push against all groups held: "
        f"{first_rate:,.0f} pushes/s at first, {last_rate:,.0f}/s at {last_n:,} shoppers, "
        f"where the run stopped after {pc['seconds']:.0f} s."
    )
    if last_n < 100_000 and last_rate > 0:
        # If the rate only fell in proportion to the groups held (it falls faster), filling to
        # N takes the integral of n / (last_n * last_rate) dn.
        hours = (100_000**2 - last_n**2) / (2 * last_n * last_rate) / 3600
        text += (
            f" Even at that slope, 100k shoppers would take about {hours:,.0f} h, so the 10k "
            "and larger figures come from a Pushgateway with --push.disable-consistency-check."
        )
    return text


def render(rows: list[Row], notes: list[str]) -> str:
    lines = [
        "| Measure | Result | vs ceiling | vs Pushgateway | Target |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([*notes, "", *lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 100k exporter shoppers")
    args = parser.parse_args()
    s = (
        Settings(seconds=5, records=100_000, big=100_000, pushgateway_aim=50_000,
                 checked_budget=20)
        if args.quick
        else Settings(seconds=10, records=200_000, big=1_000_000, pushgateway_aim=100_000,
                      checked_budget=120)
    )  # fmt: skip
    ensure_pushgateway()
    started = time.monotonic()
    load_before = load_average()
    print(f"Machine: {machine()}; load average {load_before}", flush=True)

    records = demo_records(s.records, shoppers=20_000)
    bulk = [orjson.dumps(records[i : i + BATCH]) for i in range(0, len(records), BATCH)]
    bodies = [exposition(r) for r in records[:BATCH]]

    print("ceilings …", flush=True)
    c = ceilings(s, records, bulk)
    print("exporter ingest …", flush=True)
    ei = exporter_ingest(s, records, bulk)
    print("exporter scale …", flush=True)
    es = exporter_scale(s, records)
    print("Pushgateway, consistency check on …", flush=True)
    pc = pushgateway_checked(s, bodies)
    print("Pushgateway, consistency check off …", flush=True)
    pu = pushgateway_unchecked(s, bodies)

    notes = [
        f"Machine: {machine()}.",
        f"Load average {load_before} before, {load_average()} after; "
        f"run took {time.monotonic() - started:.0f} s{' (--quick)' if args.quick else ''}.",
        "Load generators (wrk 2 threads × 32 connections, or an aiohttp client) share the "
        "cores with the server under test.",
        "Ratios: this figure ÷ the ceiling (no-op for requests, pydantic for records) and "
        "÷ Pushgateway's best push rate (consistency check off) or its same-size scrape.",
        "Pushgateway pushes are `PUT /metrics/job/shopper/instance/<userId>` with 10 gauges "
        "(text 0.0.4); persistence off. /metrics: median of GETs with "
        "`Accept-Encoding: gzip`; size uncompressed (gzip on the wire).",
    ]
    notes.append(checked_note(pc))
    for name, run in (("exporter single", ei["single"]), ("Pushgateway fill", pu["fill"])):
        if run.errors:
            notes.append(f"{name}: {run.errors:,} failed requests.")
    for name, res in (("bulk", ei["bulk"]), ("ws", ei.get("ws")), ("fill", es["fill"])):
        if res is not None and res.rejected:
            notes.append(f"exporter {name}: {res.rejected:,} records rejected.")
    pg_rate = max(pu["wrk"].rate, pu["aiohttp"].rate)
    rows = [
        *ceiling_rows(c, pg_rate),
        *pushgateway_rows(c, pc, pu, pg_rate),
        *exporter_rows(s, c, pu, ei, es, pg_rate),
    ]
    text = render(rows, notes)
    print()
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "compare.md").write_text(text)


if __name__ == "__main__":
    main()
