"""The service's configuration: one frozen object, built by the command line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from exporter.sharding import Shard

DEFAULT_PORT = 9462
MIN_DEMO_SPEED = 0.1
MAX_DEMO_SPEED = 1000.0

DEFAULT_ORDER_PHRASES: tuple[str, ...] = (
    "placed order",
    "placed an order",
    "order placed",
    "completed order",
    "completed checkout",
    "order completed",
    "purchased",
)


class SettingsError(ValueError):
    """Settings out of their range: each (name, what it must be)."""

    def __init__(self, problems: tuple[tuple[str, str], ...]) -> None:
        self.problems = problems
        super().__init__(
            "invalid settings: " + "; ".join(f"{name} must be {need}" for name, need in problems)
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to know at start; validated once, then passed inward."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    demo_shoppers: int = 0
    """Shoppers the in-process demo generator simulates; 0 = no demo at start."""
    demo_seed: int | None = None
    demo_speed: float = 1.0
    """How many times faster than a real store the demo runs (1 = real time)."""
    demo_control: bool = True
    """Whether the page's Start/Stop Demo button (POST /api/demo/*) is allowed."""
    active_window: float = 300.0
    """Seconds a shopper stays online after their last update."""
    retention: float = 3600.0
    """Seconds after their last update that a shopper is forgotten."""
    sweep_interval: float = 1.0
    label_cap: int = 50
    """Distinct values per Prometheus label before new ones become `other`."""
    max_body_bytes: int = 1 << 20
    body_timeout: float = 30.0
    """Seconds a client may take to send a body before it is answered 408."""
    max_batch: int = 10_000
    """Records (updates + events) in one body or message."""
    max_shoppers: int = 1_000_000
    """Shoppers tracked at once; when full, the offline one unseen the longest makes room."""
    max_clock_skew: float = 300.0
    """Seconds a record's time may be ahead of the service's clock; later ones are refused."""
    order_phrases: tuple[str, ...] = DEFAULT_ORDER_PHRASES
    event_log_retention: float = 3600.0
    """Seconds an event stays in the event log."""
    event_log_max_bytes: int = 256 * 2**20
    """The event log's memory, by its own estimate, before the oldest events leave."""
    event_log_size: int = 0
    """Events the log holds at most; 0 = bounded only by age and memory."""
    max_streams: int = 2_000
    """Live connections (SSE, WebSocket, Loki tail) held at once; more get 503 + Retry-After."""
    stream_backlog: int = 30_000
    """Frames a live subscriber may fall behind before its oldest are dropped."""
    summary_interval: float = 1.0
    sources: tuple[str, ...] = ()
    poll_interval: float = 10.0
    reconnect_delay: float = 5.0
    reconnect_max_delay: float = 60.0
    loki_push_url: str | None = None
    loki_query_timeout: float = 30.0
    """Seconds a Loki query may run before it is stopped (504, as Loki answers)."""
    loki_max_concurrent_queries: int = 8
    """Loki queries that may be past their first turn on the loop at once; more get 429."""
    write_token: str | None = None
    """Bearer token required for pushes, erasure and demo control; None = open."""
    read_token: str | None = None
    """Bearer token required for reads (API, streams, Loki); None = open."""
    protect_metrics: bool = False
    """Whether /metrics also needs the read token."""
    pseudonym_salt: str | None = None
    """When set, shopper ids and names are replaced by salted hashes as they arrive."""
    state_file: str | None = None
    """Where to keep snapshots of the state across restarts; None = memory only."""
    snapshot_interval: float = 30.0
    cors_origins: tuple[str, ...] = ()
    """Web origins (`https://shop.example`) whose pages may call the API; `*` = any (no tokens)."""
    log_level: str = "info"
    debug_memory: bool = False
    """Whether allocations are traced from start and GET /debug/memory serves the census."""
    shard: Shard | None = None
    """This replica's part of the shoppers (`--shard INDEX/COUNT`); None = every shopper."""

    def __post_init__(self) -> None:
        checks = (
            ("port", 0 <= self.port <= 65535, "between 0 and 65535"),
            ("demo_shoppers", self.demo_shoppers >= 0, "0 or more"),
            (
                "demo_speed",
                MIN_DEMO_SPEED <= self.demo_speed <= MAX_DEMO_SPEED,
                f"between {MIN_DEMO_SPEED:g} and {MAX_DEMO_SPEED:g}",
            ),
            ("active_window", self.active_window > 0, "above 0"),
            ("retention", self.retention >= self.active_window, "at least the active window"),
            ("sweep_interval", self.sweep_interval > 0, "above 0"),
            ("label_cap", self.label_cap >= 1, "at least 1"),
            ("max_body_bytes", self.max_body_bytes >= 1024, "at least 1024"),
            ("max_batch", self.max_batch >= 1, "at least 1"),
            ("body_timeout", self.body_timeout > 0, "above 0"),
            ("max_shoppers", self.max_shoppers >= 1, "at least 1"),
            ("max_clock_skew", self.max_clock_skew >= 0, "0 or more"),
            ("event_log_retention", self.event_log_retention > 0, "above 0"),
            ("event_log_max_bytes", self.event_log_max_bytes >= 2**16, "at least 64 KiB"),
            ("event_log_size", self.event_log_size >= 0, "0 (no bound) or more"),
            ("stream_backlog", self.stream_backlog >= 1, "at least 1"),
            ("max_streams", self.max_streams >= 1, "at least 1"),
            ("summary_interval", self.summary_interval > 0, "above 0"),
            ("poll_interval", self.poll_interval > 0, "above 0"),
            ("reconnect_delay", self.reconnect_delay > 0, "above 0"),
            (
                "reconnect_max_delay",
                self.reconnect_max_delay >= self.reconnect_delay,
                "at least the reconnect delay",
            ),
            ("snapshot_interval", self.snapshot_interval > 0, "above 0"),
            ("loki_query_timeout", self.loki_query_timeout > 0, "above 0"),
            ("loki_max_concurrent_queries", self.loki_max_concurrent_queries >= 1, "at least 1"),
        )
        bad = tuple((name, need) for name, ok, need in checks if not ok)
        if bad:
            raise SettingsError(bad)
        for name in ("write_token", "read_token", "pseudonym_salt", "state_file"):
            if not getattr(self, name):  # an empty environment variable means "not set"
                object.__setattr__(self, name, None)
        object.__setattr__(
            self, "order_phrases", tuple(p.strip().lower() for p in self.order_phrases if p.strip())
        )
        object.__setattr__(self, "cors_origins", allowed_origins(self.cors_origins))
        if "*" in self.cors_origins and (self.write_token or self.read_token):
            raise ValueError(
                "--cors-origins '*' cannot be combined with --write-token or --read-token: any "
                "web site could then call the service with them; list the origins that need them"
            )


def allowed_origins(values: tuple[str, ...]) -> tuple[str, ...]:
    """Origins as browsers send them (`scheme://host[:port]`, lower case), or `*`; a value
    that is no origin (a path, no scheme) is refused with the reason."""
    origins: list[str] = []
    for raw in values:
        value = raw.strip().rstrip("/").lower()
        if not value:
            continue
        if value != "*" and not _is_origin(value):
            raise ValueError(
                f"--cors-origins: {raw!r} is not an origin (http(s)://host[:port], nothing after)"
            )
        if value not in origins:
            origins.append(value)
    return tuple(origins)


def _is_origin(value: str) -> bool:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises for a port that is no number or out of range
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and value == f"{parts.scheme}://{parts.netloc}"
    )


_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_duration(text: str) -> float:
    """Seconds from `90s`, `30m`, `1h`, `1h30m`, `250ms` or a plain number of seconds."""
    raw = text.strip().lower()
    try:
        return float(raw)
    except ValueError:
        pass
    found = re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+", raw)
    if not found:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m or 1h")
    return sum(
        float(n) * _SECONDS[unit] for n, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", raw)
    )


def parse_bytes(text: str) -> int:
    """Bytes from `1048576`, `512KiB`, `256MiB`, `1GiB` (or kB/MB/GB, powers of ten)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", text.lower())
    if not found or found[2] not in _BYTES:
        raise ValueError(f"{text!r} is not a size such as 256MiB or 1048576")
    return int(float(found[1]) * _BYTES[found[2]])
