"""Health of the service's moving parts: pull sources, live streams, forwarding."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SourceStatus:
    """One upstream source: is it connected, how often it reconnected, when it last delivered."""

    url: str
    up: bool = False
    reconnects: int = 0
    last_success: float | None = None
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

    def source(self, name: str) -> SourceStatus:
        """The status record of a source, created on first use."""
        status = self.sources.get(name)
        if status is None:
            status = self.sources[name] = SourceStatus(name)
        return status
