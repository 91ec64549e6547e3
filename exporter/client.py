"""Push client mirroring the brief's metricsService: pushUserMetric, pushBulkMetrics, pushEvents,
and connectWebSocket (a streaming push connection with an ack per message)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
import orjson


class PushError(Exception):
    """The service refused a push as a whole (not JSON, too large, no room: 429, ...).

    `body` is the service's JSON reply; `retry_after` the seconds it asked to wait (429, 503).
    """

    def __init__(self, status: int, body: Any, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


_STATUS_BY_REASON = {"not_json": 400, "batch_too_large": 413, "invalid": 422}


def _seconds(header: str | None) -> float | None:
    """A Retry-After header given in seconds (the service never sends a date)."""
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


class WebSocketPusher:
    """A streaming push connection to `/ws`: every `send` returns the service's ack.

    Sends may overlap (`asyncio.gather`); acks come back in order, so each is matched to its
    message without waiting for a round trip before the next send.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._waiting: deque[asyncio.Future[dict[str, Any]]] = deque()
        self._reader = asyncio.create_task(self._read_replies(), name="ws acks")

    async def __aenter__(self) -> WebSocketPusher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._ws.closed or self._reader.done()

    async def send(
        self, metrics: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """Send updates and events as one message; returns the ack (see `MetricsClient`).

        Raises PushError when the service refuses the message as a whole, and
        aiohttp.ClientConnectionError when the connection is gone.
        """
        body = {"metrics": [dict(m) for m in metrics], "events": [dict(e) for e in events]}
        return await self.send_body(body)

    async def send_body(self, body: Any) -> dict[str, Any]:
        """Send any body shape the service accepts; returns its ack."""
        if self.closed:
            raise aiohttp.ClientConnectionError("the push WebSocket is closed")
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(reply)
        await self._ws.send_str(orjson.dumps(body).decode())
        return await reply

    async def _read_replies(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                reply = orjson.loads(msg.data)
                kind = reply.get("type") if isinstance(reply, dict) else None
                if kind not in ("ack", "error") or not self._waiting:
                    continue  # live frames, if someone subscribed on this socket
                waiter = self._waiting.popleft()
                if waiter.done():
                    continue
                if kind == "ack":
                    reply.pop("type")
                    waiter.set_result(reply)
                else:
                    status = _STATUS_BY_REASON.get(str(reply.get("error")), 400)
                    waiter.set_exception(PushError(status, reply))
        finally:
            gone = aiohttp.ClientConnectionError(
                f"the push WebSocket closed (code {self._ws.close_code})"
            )
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_exception(gone)

    async def close(self) -> None:
        """Close the connection; sends still waiting for an ack fail."""
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class MetricsClient:
    """Async client for a Live Shopper Metrics service.

    >>> async with MetricsClient("http://localhost:9462") as client:
    ...     await client.push_user_metric({"userId": "shopper_123", ...})

    Pushes return the service's report: `accepted` (applied), `ignored` with `ignoredRecords`
    (valid but already known, each `{"index", "kind", "reason": "stale" | "duplicate",
    "message"}`, stale ones with `timestamp` and `storedTimestamp`) and `rejected` (each
    `{"index", "kind", "reason": "invalid" | "future" | "capacity", "errors": [{"field",
    "message"}]}`). A body refused whole raises PushError; when every record was refused by
    field the report is returned (HTTP 422).
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # The service's write token, when it has one (see --write-token).
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
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
            headers={"Content-Type": "application/json", **self._auth},
        ) as resp:
            raw = await resp.read()
            try:
                reply: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                reply = raw.decode(errors="replace")
            if resp.status >= 400 and resp.status != 422:
                raise PushError(resp.status, reply, _seconds(resp.headers.get("Retry-After")))
            if not isinstance(reply, dict):
                raise PushError(resp.status, reply)
            return reply

    async def push_user_metric(self, metric: Mapping[str, Any]) -> dict[str, Any]:
        """Send one shopper update; returns the report (`accepted`, `ignored`, `ignoredRecords`,
        `rejected`)."""
        return await self._post("/api/metrics", dict(metric))

    async def push_bulk_metrics(self, metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send many shopper updates in one request."""
        return await self._post("/api/metrics", [dict(m) for m in metrics])

    async def push_events(self, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send explicit shopping events (order_completed, cart_add, …)."""
        return await self._post("/api/events", [dict(e) for e in events])

    async def connect_websocket(self, path: str = "/ws") -> WebSocketPusher:
        """Open a streaming push connection (the brief's connectWebSocket)."""
        url = "ws" + self.base_url.removeprefix("http") + path
        ws = await self.session.ws_connect(url, autoping=True, heartbeat=30.0, headers=self._auth)
        return WebSocketPusher(ws)

    async def push_batch(
        self, metrics: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """Send updates and events together, as `{"metrics": [...], "events": [...]}`."""
        body = {"metrics": [dict(m) for m in metrics], "events": [dict(e) for e in events]}
        return await self._post("/api/metrics", body)

    async def announce_demo(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Say that a demo pushes to this service: `{"speed", "shoppers"}` (the page shows it)."""
        return await self._post("/api/demo/announce", dict(state))
