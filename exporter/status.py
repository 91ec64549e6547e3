"""Health of the service's moving parts: pull sources, live streams, forwarding."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.gc_policy import GcPolicy


@dataclass(slots=True)
class SourceStatus:
    """One upstream source: is it connected, how often it reconnected, when it last delivered."""

    url: str
    up: bool = False
    reconnects: int = 0
    last_success: float | None = None
    last_error: str | None = None


@dataclass(slots=True)
class SnapshotStatus:
    """Snapshots to the state file: the last whole one, and the failures."""

    taken_at: float | None = None
    """When the state in the last whole snapshot was taken, seconds since the epoch."""
    duration: float | None = None
    """Seconds from taking the state to the snapshot being in place."""
    size: int | None = None
    pause: float | None = None
    """Seconds the service stopped to take the state (the fork)."""
    writer_memory: int | None = None
    """Memory of its own the last writer held at its end: pages copied on write, buffers."""
    failures: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class ServiceStatus:
    """Shared, loop-owned counters that the collector and the health endpoints read."""

    ready: bool = False
    sources: dict[str, SourceStatus] = field(default_factory=dict)
    streams: dict[str, int] = field(default_factory=lambda: {"sse": 0, "ws": 0, "tail": 0})
    forward_sent: int = 0
    forward_dropped: int = 0
    forward_failures: int = 0
    snapshot: SnapshotStatus | None = None
    """Set when the state is kept in a file."""
    gc: GcPolicy = field(default_factory=GcPolicy)

    def source(self, name: str) -> SourceStatus:
        """The status record of a source, created on first use."""
        status = self.sources.get(name)
        if status is None:
            status = self.sources[name] = SourceStatus(name)
        return status
