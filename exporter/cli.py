"""Command line: `shopper-exporter` runs the service; `shopper-exporter demo` pushes traffic.

Every option falls back to an environment variable named in `--help` (SHOPPER_*).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from exporter import __version__, memory_census
from exporter.allocator import keep_large_blocks_apart
from exporter.settings import (
    DEFAULT_ORDER_PHRASES,
    DEFAULT_PORT,
    MAX_DEMO_SPEED,
    MIN_DEMO_SPEED,
    Settings,
    SettingsError,
    parse_bytes,
    parse_duration,
)
from exporter.sharding import Shard, parse_shard

if TYPE_CHECKING:
    from exporter.client import MetricsClient
    from exporter.demo import DemoGenerator

ENV_PREFIX = "SHOPPER_"


def _env_name(dest: str) -> str:
    return ENV_PREFIX + dest.upper()


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose options default to SHOPPER_* environment variables."""

    def option(
        self,
        *flags: str,
        dest: str,
        convert: Callable[[str], Any] = str,
        secret: bool = False,
        shown: str | None = None,
        **kwargs: Any,
    ) -> None:
        """An option with a SHOPPER_* fallback; `--help` shows its default (or `shown`)."""
        env = _env_name(dest)
        raw = os.environ.get(env)
        if raw is not None:
            try:
                kwargs["default"] = convert(raw)
            except (TypeError, ValueError):
                self.error(f"environment variable {env}={raw!r} is not valid")
        help_text = kwargs.pop("help", "")
        default = kwargs.get("default")
        if shown is None and not secret and default not in (None, [], ()):
            shown = _as_typed(default)
        note = f" (default: {shown})" if shown else ""
        self.add_argument(*flags, dest=dest, help=f"{help_text}{note} [env {env}]", **kwargs)


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _as_typed(value: Any) -> str:
    """A default as one would type it: lists comma-separated, whole floats without `.0`."""
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _speed_option(p: _Parser, *aliases: str) -> None:
    p.option(
        "--demo-speed",
        *aliases,
        dest="demo_speed",
        convert=float,
        type=float,
        default=1.0,
        metavar="N",
        help="Run the demo store N times faster than real time (1: a real store's pace; "
        f"{MIN_DEMO_SPEED:g} to {MAX_DEMO_SPEED:g}); the page shows 'demo ×N' above 1",
    )


def _service_parser() -> _Parser:
    p = _Parser(
        prog="shopper-exporter",
        usage="%(prog)s [OPTIONS]\n       %(prog)s demo [--url URL] [DEMO OPTIONS]",
        description="Live Shopper Metrics: ingest shopper activity, serve Prometheus metrics, "
        "a Loki-compatible event log, live streams and a live page.",
        epilog="`shopper-exporter demo` pushes demo traffic to a running service "
        "(see `shopper-exporter demo --help`).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.option("--host", dest="host", default="127.0.0.1", help="Address to listen on")
    p.option("--port", dest="port", convert=int, type=int, default=DEFAULT_PORT, help="Port")
    p.option(
        "--demo",
        dest="demo",
        convert=int,
        type=int,
        nargs="?",
        const=30,
        default=0,
        shown="off",
        metavar="SHOPPERS",
        help="Run the in-process demo generator with this many shoppers (30 if no number)",
    )
    p.option("--demo-seed", dest="demo_seed", convert=int, type=int, help="Seed for the demo")
    _speed_option(p)
    p.option(
        "--shard",
        dest="shard",
        convert=parse_shard,
        type=_shard,
        metavar="INDEX/COUNT",
        help="Run as one of COUNT replicas, owning the shoppers whose userId hashes to INDEX "
        "(from 0, e.g. 1/3); records of other shards are refused as wrong_shard",
    )
    p.add_argument(
        "--no-demo-control",
        dest="demo_control",
        action="store_false",
        default=os.environ.get(_env_name("demo_control"), "true").lower() not in {"0", "false"},
        help="Refuse the page's Start/Stop Demo requests [env SHOPPER_DEMO_CONTROL=false]",
    )
    p.option(
        "--active-window",
        dest="active_window",
        convert=float,
        type=float,
        default=300.0,
        help="Seconds a shopper stays online after their last update",
    )
    p.option(
        "--retention",
        dest="retention",
        convert=float,
        type=float,
        default=3600.0,
        help="Seconds after their last update that a shopper is forgotten",
    )
    p.option(
        "--label-cap",
        dest="label_cap",
        convert=int,
        type=int,
        default=50,
        help="Distinct values per label before new ones are exported as `other`",
    )
    p.option(
        "--max-body-bytes",
        dest="max_body_bytes",
        convert=int,
        type=int,
        default=1 << 20,
        help="Largest request body or WebSocket message accepted",
    )
    p.option(
        "--max-batch",
        dest="max_batch",
        convert=int,
        type=int,
        default=10_000,
        help="Most records (updates + events) in one body or message",
    )
    p.option(
        "--body-timeout",
        dest="body_timeout",
        convert=float,
        type=float,
        default=30.0,
        help="Seconds a client may take to send a request body before it is answered 408",
    )
    p.option(
        "--max-shoppers",
        dest="max_shoppers",
        convert=int,
        type=int,
        default=1_000_000,
        help="Shoppers tracked at once; when full, the offline shopper unseen the longest is "
        "forgotten to make room, and while all are online new shoppers are refused (429)",
    )
    p.option(
        "--max-clock-skew",
        dest="max_clock_skew",
        convert=float,
        type=float,
        default=300.0,
        help="Seconds a record's time may be ahead of the service's clock; records stamped "
        "later are refused (422, reason `future`)",
    )
    p.option(
        "--order-phrases",
        dest="order_phrases",
        convert=_split,
        type=_split,
        default=list(DEFAULT_ORDER_PHRASES),
        help="Comma-separated lastAction phrases that mean an order was placed",
    )
    p.option(
        "--event-log-retention",
        dest="event_log_retention",
        convert=parse_duration,
        type=parse_duration,
        default=3600.0,
        shown="1h",
        help="How long events stay in the log for streams, resume and the Loki API "
        "(90s, 30m, 1h, or seconds)",
    )
    p.option(
        "--event-log-max-bytes",
        dest="event_log_max_bytes",
        convert=parse_bytes,
        type=parse_bytes,
        default=256 * 2**20,
        shown="256MiB",
        help="Memory the event log may take by its own estimate before its oldest events "
        "leave (bytes, or with KiB/MiB/GiB)",
    )
    p.option(
        "--event-log-size",
        dest="event_log_size",
        convert=int,
        type=int,
        default=0,
        shown="0 (no bound)",
        help="Events the log holds at most, a third bound beside age and memory",
    )
    p.option(
        "--max-streams",
        dest="max_streams",
        convert=int,
        type=int,
        default=2_000,
        help="Live connections (SSE, WebSocket, Loki tail) held at once; more get 503",
    )
    p.option(
        "--stream-backlog",
        dest="stream_backlog",
        convert=int,
        type=int,
        default=30_000,
        help="Frames a live subscriber may fall behind before its oldest are dropped",
    )
    p.option(
        "--source",
        dest="sources",
        convert=_split,
        action="append",
        default=[],
        help="Upstream to pull from: ws://, wss://, sse+http(s)://, poll+http(s):// "
        "(repeatable; env: comma-separated)",
    )
    p.option(
        "--poll-interval",
        dest="poll_interval",
        convert=float,
        type=float,
        default=10.0,
        help="Seconds between polls of poll+http sources",
    )
    p.option(
        "--reconnect-delay",
        dest="reconnect_delay",
        convert=float,
        type=float,
        default=5.0,
        help="Seconds before a dropped source reconnects (doubles, jittered)",
    )
    p.option(
        "--reconnect-max-delay",
        dest="reconnect_max_delay",
        convert=float,
        type=float,
        default=60.0,
        help="Longest wait between source reconnects",
    )
    p.option(
        "--loki-push-url",
        dest="loki_push_url",
        help="Forward the event log to a Grafana Loki push endpoint (…/loki/api/v1/push)",
    )
    p.option(
        "--loki-query-timeout",
        dest="loki_query_timeout",
        convert=float,
        type=float,
        default=30.0,
        help="Seconds a Loki API query may run before it is stopped with 504",
    )
    p.option(
        "--loki-max-concurrent-queries",
        dest="loki_max_concurrent_queries",
        convert=int,
        type=int,
        default=8,
        help="Heavy Loki API queries (longer than one turn on the event loop) run at once; "
        "more are answered 429 with Retry-After",
    )
    p.option(
        "--write-token",
        dest="write_token",
        secret=True,
        help="Bearer token for everything that writes: pushes (POST /api/metrics and "
        "/api/events, the /ws WebSocket, Loki push), the alert webhook (POST /api/alerts), "
        "erasure (DELETE /api/shoppers/ID) and demo control (POST /api/demo/*); it grants "
        "reads too",
    )
    p.option(
        "--read-token",
        dest="read_token",
        secret=True,
        help="Bearer token required for reads: API, streams, Loki API",
    )
    p.add_argument(
        "--protect-metrics",
        dest="protect_metrics",
        action="store_true",
        default=os.environ.get(_env_name("protect_metrics"), "").lower() in {"1", "true", "yes"},
        help="Require the read token on /metrics too [env SHOPPER_PROTECT_METRICS]",
    )
    p.option(
        "--pseudonym-salt",
        dest="pseudonym_salt",
        secret=True,
        help="Replace shopper ids and names by salted hashes on arrival (keep the salt secret)",
    )
    p.option(
        "--state-file",
        dest="state_file",
        help="Keep the state (shoppers, counters, events) in this file across restarts",
    )
    p.option(
        "--snapshot-interval",
        dest="snapshot_interval",
        convert=float,
        type=float,
        default=30.0,
        help="Seconds between snapshots to --state-file (one more is written on shutdown)",
    )
    p.option(
        "--cors-origins",
        dest="cors_origins",
        convert=_split,
        action="append",
        default=[],
        metavar="ORIGINS",
        help="Web origins whose pages may push, read and stream (https://shop.example; "
        "comma-separated or repeated; * = any, refused with tokens)",
    )
    p.add_argument(
        "--debug-memory",
        dest="debug_memory",
        action="store_true",
        default=os.environ.get(_env_name("debug_memory"), "").lower() in {"1", "true", "yes"},
        help="Trace allocations from start and serve the allocation census at GET "
        "/debug/memory (write token); tracing costs memory and time, so off unless looking "
        "for a leak [env SHOPPER_DEBUG_MEMORY]",
    )
    p.option(
        "--log-level",
        dest="log_level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="Logging level",
    )
    return p


def _flat(items: list[str | list[str]]) -> list[str]:
    """Values of a repeatable comma-separated option (the env default comes as one list)."""
    flat: list[str] = []
    for item in items:
        flat.extend(item if isinstance(item, list) else _split(item))
    return flat


def settings_from_args(argv: Sequence[str]) -> Settings:
    """Parse the service's command line (and SHOPPER_* variables) into Settings."""
    parser = _service_parser()
    args = parser.parse_args(argv)
    sources, cors_origins = _flat(args.sources), _flat(args.cors_origins)
    try:
        return Settings(
            host=args.host,
            port=args.port,
            demo_shoppers=args.demo,
            demo_seed=args.demo_seed,
            demo_speed=args.demo_speed,
            demo_control=args.demo_control,
            active_window=args.active_window,
            retention=args.retention,
            label_cap=args.label_cap,
            max_body_bytes=args.max_body_bytes,
            max_batch=args.max_batch,
            body_timeout=args.body_timeout,
            max_shoppers=args.max_shoppers,
            max_clock_skew=args.max_clock_skew,
            order_phrases=tuple(args.order_phrases),
            event_log_retention=args.event_log_retention,
            event_log_max_bytes=args.event_log_max_bytes,
            event_log_size=args.event_log_size,
            stream_backlog=args.stream_backlog,
            max_streams=args.max_streams,
            sources=tuple(sources),
            poll_interval=args.poll_interval,
            reconnect_delay=args.reconnect_delay,
            reconnect_max_delay=args.reconnect_max_delay,
            loki_push_url=args.loki_push_url,
            loki_query_timeout=args.loki_query_timeout,
            loki_max_concurrent_queries=args.loki_max_concurrent_queries,
            write_token=args.write_token,
            read_token=args.read_token,
            protect_metrics=args.protect_metrics,
            pseudonym_salt=args.pseudonym_salt,
            state_file=args.state_file,
            snapshot_interval=args.snapshot_interval,
            cors_origins=tuple(cors_origins),
            log_level=args.log_level,
            shard=args.shard,
            debug_memory=args.debug_memory,
        )
    except SettingsError as err:
        parser.error("; ".join(f"{_flag(name)} must be {need}" for name, need in err.problems))
    except ValueError as err:
        parser.error(str(err))


_FLAGS = {"demo_shoppers": "--demo", "sources": "--source"}


def _flag(setting: str) -> str:
    """The option that sets a setting."""
    return _FLAGS.get(setting, "--" + setting.replace("_", "-"))


def banner(settings: Settings) -> str:
    """What the service prints once it listens: where to look."""
    host = "localhost" if settings.host in ("0.0.0.0", "::", "127.0.0.1") else settings.host
    base = f"http://{host}:{settings.port}"
    demo = ""
    if settings.demo_shoppers:
        demo = f" with {settings.demo_shoppers} demo shoppers"
        if settings.demo_speed != 1:
            demo += f" at {settings.demo_speed:g}× real-time pace"
    if settings.shard is not None:
        demo += f" as shard {settings.shard}"
    return "\n".join(
        [
            f"Live Shopper Metrics {__version__}{demo}, listening on {settings.host}:"
            f"{settings.port}",
            f"  live page      {base}/",
            f"  metrics        {base}/metrics",
            f"  summary        {base}/api/summary",
            f"  push updates   POST {base}/api/metrics",
            f"  live stream    {base}/api/stream  (SSE)   ws://{host}:{settings.port}/ws",
            f"  Loki API       {base}/loki/api/v1/  (Grafana Loki datasource URL: {base})",
        ]
    )


def tune_collector() -> None:
    """Set the garbage collector up for the service, once its app is built.

    State is many small acyclic objects (slotted shoppers, events); the default collector
    thresholds rescan them constantly. Freezing what startup made and collecting less often
    buys ~15-20% ingest throughput (bench/RESULTS.md).
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def run_service(argv: Sequence[str]) -> None:
    """Run the service until SIGINT/SIGTERM."""
    settings = settings_from_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from exporter.app import create_app

    if settings.debug_memory:  # before the state is built or restored, so it is counted
        memory_census.start()
    try:
        app = create_app(settings)
    except ValueError as err:  # e.g. a --source URL of an unknown kind
        _service_parser().error(str(err))
    tune_collector()
    keep_large_blocks_apart()
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=lambda _: print(banner(settings), flush=True),
            access_log=None,
            shutdown_timeout=5.0,
        )
    except OSError as err:
        # The one thing at start that is the machine's, not the settings': say it in a line.
        print(f"cannot listen on {settings.host}:{settings.port}: {_reason(err)}", file=sys.stderr)
        sys.exit(2)


def _reason(err: OSError) -> str:
    """An OS error's reason in a few words, e.g. "address already in use"."""
    text = os.strerror(err.errno) if err.errno else (err.strerror or str(err))
    return text[:1].lower() + text[1:]


def _demo_parser() -> _Parser:
    p = _Parser(
        prog="shopper-exporter demo",
        description="Push realistic demo shopper traffic to a running service over HTTP "
        "or a WebSocket.",
    )
    p.option(
        "--transport",
        dest="transport",
        default="http",
        choices=["http", "ws"],
        help="http: POST /api/metrics; ws: one streaming WebSocket to /ws, an ack per message",
    )
    p.option(
        "--url",
        dest="url",
        convert=_split,
        action="append",
        default=[],
        metavar="URL",
        shown=f"http://127.0.0.1:{DEFAULT_PORT}",
        help="Base URL of the service; repeated (or comma-separated), one per replica in shard "
        "order: each record goes to the replica owning its shopper",
    )
    p.option(
        "--shards",
        dest="shards",
        convert=int,
        type=int,
        help="With one --url (a proxy in front of N replicas): split records into N shards and "
        "name each request's shard in the X-Shopper-Shard header",
    )
    p.option(
        "--token",
        dest="token",
        secret=True,
        help="The service's write token, if it has one",
    )
    p.option(
        "--shoppers", dest="shoppers", convert=int, type=int, default=30, help="Shoppers online"
    )
    p.option("--seed", dest="seed", convert=int, type=int, help="Random seed (reproducible runs)")
    _speed_option(p, "--speed")
    p.option(
        "--pace",
        dest="pace",
        convert=float,
        type=float,
        help="Steps per second per shopper, instead of --demo-speed (pace = speed / 20)",
    )
    p.option(
        "--duration",
        dest="duration",
        convert=float,
        type=float,
        help="Stop after this many seconds (default: run until interrupted)",
    )
    p.option(
        "--report-every",
        dest="report_every",
        convert=float,
        type=float,
        default=5.0,
        help="Seconds between printed rates",
    )
    return p


ANNOUNCE_EVERY = 30.0


async def _announce(client: MetricsClient, generator: DemoGenerator) -> None:
    """Tell the service a demo pushes at this speed (its page says so); best effort."""
    from exporter.client import PushError

    body = {"speed": generator.speed, "shoppers": generator.target}
    with contextlib.suppress(aiohttp.ClientError, PushError, TimeoutError):
        await client.announce_demo(body)


def _failure(err: BaseException, url: str) -> str:
    """Why a push failed, in words fit for the URL's scheme (aiohttp's own name TLS always)."""
    from exporter.client import PushError

    if isinstance(err, aiohttp.ClientConnectorError):
        return f"cannot connect to {url}: {_reason(err.os_error)}"
    if isinstance(err, PushError):
        body = err.body
        message = body.get("message", body) if isinstance(body, dict) else body
        return f"the service refused the push (HTTP {err.status}): {message}"
    if isinstance(err, TimeoutError):
        return f"no answer from {url} in time"
    return str(err) or type(err).__name__


async def _push_demo(args: argparse.Namespace) -> int:
    """Push until stopped; the exit status: 0 when the last push was delivered, else 1."""
    from exporter.client import MetricsClient, PushError, WebSocketPusher
    from exporter.demo import DemoGenerator

    if not MIN_DEMO_SPEED <= args.demo_speed <= MAX_DEMO_SPEED:
        raise SystemExit(f"--demo-speed must be between {MIN_DEMO_SPEED:g} and {MAX_DEMO_SPEED:g}")
    urls = _flat(args.url) or [f"http://127.0.0.1:{DEFAULT_PORT}"]
    where = " ".join(urls)
    try:
        client = MetricsClient(urls, token=args.token, shards=args.shards)
    except ValueError as err:
        raise SystemExit(f"shopper-exporter demo: {err}") from None
    if client.shards is not None and args.transport == "ws":
        raise SystemExit("shopper-exporter demo: --transport ws pushes to one service; use http")
    generator = DemoGenerator(args.shoppers, args.seed, args.pace, speed=args.demo_speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = last_report = time.monotonic()
    sent = accepted = rejected = sent_at_report = 0
    failing = False
    pusher: WebSocketPusher | None = None
    async with client:

        async def push(updates: list[Any], events: list[Any]) -> dict[str, Any]:
            nonlocal pusher
            if args.transport == "http":
                return await client.push_batch(updates, events)
            if pusher is None or pusher.closed:
                pusher = await client.connect_websocket()
            return await pusher.send(updates, events)

        pace = (
            "a real store's pace"
            if generator.speed == 1
            else (f"{generator.speed:g}× a real store's pace")
        )
        print(
            f"demo: {args.shoppers} shoppers at {pace} → {where} ({args.transport})",
            flush=True,
        )
        announced = -ANNOUNCE_EVERY
        while not stop.is_set():
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
            if time.monotonic() - announced >= ANNOUNCE_EVERY:
                announced = time.monotonic()
                await _announce(client, generator)
            updates, events = generator.tick(time.time())
            if updates or events:
                try:
                    reply = await push(updates, events)
                except (aiohttp.ClientError, PushError, TimeoutError) as err:
                    if not failing:
                        print(f"demo: {_failure(err, where)}; retrying", flush=True)
                    failing = True
                else:
                    if failing:
                        print("demo: service reachable again", flush=True)
                    failing = False
                    sent += len(updates) + len(events)
                    accepted += int(reply.get("accepted", 0))
                    rejected += len(reply.get("rejected", []))
            if client.queued:
                with contextlib.suppress(aiohttp.ClientError, PushError, TimeoutError):
                    await client.flush()  # a replica back: its held records go before new ones
            now = time.monotonic()
            if now - last_report >= args.report_every:
                rate = (sent - sent_at_report) / (now - last_report)
                holding = f"  held {client.queued}" if client.shards is not None else ""
                print(
                    f"demo: {rate:7.1f} records/s  sent {sent}  accepted {accepted}  "
                    f"rejected {rejected}  online {len(generator.active)}{holding}",
                    flush=True,
                )
                last_report, sent_at_report = now, sent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
        goodbye = generator.stop_all(time.time())
        if goodbye and not failing:
            with contextlib.suppress(aiohttp.ClientError, PushError, TimeoutError):
                await push(goodbye, [])
        if pusher is not None:
            await pusher.close()
        with contextlib.suppress(aiohttp.ClientError, PushError, TimeoutError):
            await client.flush()
        held = client.queued
    if held:
        print(f"demo: {held} records still held for replicas that are down", file=sys.stderr)
        return 1
    if failing:
        print(f"demo: could not deliver to {where}; sent {sent} records", file=sys.stderr)
        return 1
    print(f"demo: done, sent {sent} records", flush=True)
    return 0


def run_demo(argv: Sequence[str]) -> None:
    """Run the standalone demo generator; exits non-zero when it could not deliver."""
    args = _demo_parser().parse_args(argv)
    sys.exit(asyncio.run(_push_demo(args)))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `shopper-exporter` and `python -m exporter`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["demo"]:
        run_demo(args[1:])
    else:
        run_service(args)
