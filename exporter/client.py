"""Push client mirroring the brief's metricsService: pushUserMetric, pushBulkMetrics, pushEvents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
import orjson


class PushError(Exception):
    """The service refused a push as a whole (not JSON, too large, all records invalid)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class MetricsClient:
    """Async client for a Live Shopper Metrics service.

    >>> async with MetricsClient("http://localhost:9462") as client:
    ...     await client.push_user_metric({"userId": "shopper_123", ...})
    """

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession | None = None, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __aenter__(self) -> MetricsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, path: str, body: Any) -> dict[str, Any]:
        async with self.session.post(
            self.base_url + path,
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        ) as resp:
            raw = await resp.read()
            try:
                reply: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                reply = raw.decode(errors="replace")
            if resp.status >= 400 and resp.status != 422:
                raise PushError(resp.status, reply)
            if not isinstance(reply, dict):
                raise PushError(resp.status, reply)
            return reply

    async def push_user_metric(self, metric: Mapping[str, Any]) -> dict[str, Any]:
        """Send one shopper update; returns `{"accepted", "ignored", "rejected"}`."""
        return await self._post("/api/metrics", dict(metric))

    async def push_bulk_metrics(self, metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send many shopper updates in one request."""
        return await self._post("/api/metrics", [dict(m) for m in metrics])

    async def push_events(self, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send explicit shopping events (order_completed, cart_add, …)."""
        return await self._post("/api/events", [dict(e) for e in events])

    async def push_batch(
        self, metrics: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """Send updates and events together, as `{"metrics": [...], "events": [...]}`."""
        body = {"metrics": [dict(m) for m in metrics], "events": [dict(e) for e in events]}
        return await self._post("/api/metrics", body)
