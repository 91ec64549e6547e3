"""Push client mirroring the brief's metricsService: pushUserMetric, pushBulkMetrics, pushEvents,
and connectWebSocket (a streaming push connection with an ack per message), to one service or to
shards of it (one URL per replica, or one proxy URL routing by the X-Shopper-Shard header)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from exporter.outbox import DEFAULT_QUEUE_LIMIT, Outbox, Part, empty_report, merge, split
from exporter.sharding import SHARD_HEADER, check_count


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
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers meaning "not now" (a replica down behind a proxy, full, restarting): hold and resend."""
SHARD_BATCH = 10_000
"""Records per body when held records are resent (the service's default --max-batch)."""


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
    """Async client for a Live Shopper Metrics service, or for N replicas of it.

    >>> async with MetricsClient("http://localhost:9462") as client:
    ...     await client.push_user_metric({"userId": "shopper_123", ...})

    Pushes return the service's report: `accepted` (applied), `ignored` with `ignoredRecords`
    (valid but already known, each `{"index", "kind", "reason": "stale" | "duplicate",
    "message"}`, stale ones with `timestamp` and `storedTimestamp`) and `rejected` (each
    `{"index", "kind", "reason": "invalid" | "future" | "capacity" | "wrong_shard", "errors":
    [{"field", "message"}]}`). A body refused whole raises PushError; when every record was
    refused by field the report is returned (HTTP 422).

    Sharded: `MetricsClient([url0, url1, url2])` (list order = shard index) or
    `MetricsClient(proxy_url, shards=3)` (one address; each request says its shard in the
    X-Shopper-Shard header for the proxy to route by). Each batch is split by `shard_of(userId)`
    and the parts are sent in parallel; the report adds them up (indexes stay the batch's) and
    says how many records were `queued`. A shard that cannot be reached (connection refused,
    timeout, 429/5xx) keeps its records in a bounded queue (`queue_limit` per shard; the oldest
    are dropped past it and counted in `dropped`), sent before that shard's next records or by
    `flush()`, in their order.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        token: str | None = None,
        *,
        shards: int | None = None,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("MetricsClient needs at least one URL")
        self.urls = [url.rstrip("/") for url in urls]
        self.base_url = self.urls[0]
        if len(self.urls) > 1 and shards not in (None, len(self.urls)):
            raise ValueError(f"{len(self.urls)} URLs are {len(self.urls)} shards, not {shards}")
        count = len(self.urls) if len(self.urls) > 1 else shards
        if count is not None:
            check_count(count)
        self.shards = count
        """How many shards records are split into; None = one unsharded service."""
        self.outboxes = [Outbox(queue_limit) for _ in range(count or 0)]
        self._locks = [asyncio.Lock() for _ in range(count or 0)]
        # The service's write token, when it has one (see --write-token).
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def queued(self) -> int:
        """Records held for shards that could not be reached."""
        return sum(map(len, self.outboxes))

    @property
    def dropped(self) -> int:
        """Held records dropped because a shard's queue was full."""
        return sum(box.dropped for box in self.outboxes)

    def target(self, shard: int | None) -> tuple[str, dict[str, str]]:
        """The base URL and extra headers of a shard's requests (None: the one service)."""
        if shard is None or len(self.urls) == 1:
            return self.base_url, ({} if shard is None else {SHARD_HEADER: str(shard)})
        return self.urls[shard], {}

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

    async def _post(self, path: str, body: Any, shard: int | None = None) -> dict[str, Any]:
        base, routing = self.target(shard)
        async with self.session.post(
            base + path,
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json", **self._auth, **routing},
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
        """Send one shopper update (to its owner, when sharded); returns the report
        (`accepted`, `ignored`, `ignoredRecords`, `rejected`)."""
        if self.shards is not None:
            return await self._push_sharded([metric], ())
        return await self._post("/api/metrics", dict(metric))

    async def push_bulk_metrics(self, metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send many shopper updates in one request (one per shard, in parallel, when sharded)."""
        if self.shards is not None:
            return await self._push_sharded(metrics, ())
        return await self._post("/api/metrics", [dict(m) for m in metrics])

    async def push_events(self, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send explicit shopping events (order_completed, cart_add, …)."""
        if self.shards is not None:
            return await self._push_sharded((), events)
        return await self._post("/api/events", [dict(e) for e in events])

    async def connect_websocket(
        self, path: str = "/ws", shard: int | None = None
    ) -> WebSocketPusher:
        """Open a streaming push connection (the brief's connectWebSocket); when sharded, to
        one shard's replica (send it only that shard's records)."""
        if self.shards is not None and shard is None:
            raise ValueError("a sharded client opens one WebSocket per shard: pass shard=INDEX")
        base, routing = self.target(shard)
        url = "ws" + base.removeprefix("http") + path
        headers = {**self._auth, **routing}
        ws = await self.session.ws_connect(url, autoping=True, heartbeat=30.0, headers=headers)
        return WebSocketPusher(ws)

    async def push_batch(
        self, metrics: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """Send updates and events together, as `{"metrics": [...], "events": [...]}`."""
        if self.shards is not None:
            return await self._push_sharded(metrics, events)
        body = {"metrics": [dict(m) for m in metrics], "events": [dict(e) for e in events]}
        return await self._post("/api/metrics", body)

    async def announce_demo(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Say that a demo pushes to this service: `{"speed", "shoppers"}` (the page shows it);
        when sharded, to every replica."""
        if self.shards is None:
            return await self._post("/api/demo/announce", dict(state))
        replies = await asyncio.gather(
            *(self._post("/api/demo/announce", dict(state), i) for i in range(self.shards)),
            return_exceptions=True,
        )
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return reply if isinstance(reply, dict) else {}

    async def flush(self) -> int:
        """Try to deliver every held record now; returns how many are still held."""
        await asyncio.gather(*(self._drain(i) for i in range(len(self.outboxes))))
        return self.queued

    async def _push_sharded(
        self, metrics: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        assert self.shards is not None
        parts = split(metrics, events, self.shards)
        outcomes = await asyncio.gather(
            *(self._push_part(shard, part) for shard, part in parts.items()),
            return_exceptions=True,
        )
        report = empty_report()
        refused: BaseException | None = None
        for part, outcome in zip(parts.values(), outcomes, strict=True):
            if isinstance(outcome, BaseException):
                refused = refused or outcome
            elif outcome is None:
                report["queued"] += len(part)
            else:
                merge(report, outcome, part)
        if refused is not None:
            raise refused  # a body refused whole (400, 401, 413): sending again will not help
        return report

    async def _push_part(self, shard: int, part: Part) -> dict[str, Any] | None:
        """Send one shard's records after any it holds; None when they are held instead."""
        async with self._locks[shard]:
            box = self.outboxes[shard]
            if not await self._drain_locked(shard):
                box.hold(part.metrics, part.events)
                return None
            body = {"metrics": part.metrics, "events": part.events}
            try:
                return await self._post("/api/metrics", body, shard)
            except Exception as err:
                if not _worth_retrying(err):
                    raise
                box.hold(part.metrics, part.events)
                return None

    async def _drain(self, shard: int) -> bool:
        async with self._locks[shard]:
            return await self._drain_locked(shard)

    async def _drain_locked(self, shard: int) -> bool:
        """Send what a shard holds, oldest first; False when it still cannot be reached."""
        box = self.outboxes[shard]
        while box:
            metrics, events = box.take(SHARD_BATCH)
            try:
                await self._post("/api/metrics", {"metrics": metrics, "events": events}, shard)
            except Exception as err:
                if not _worth_retrying(err):
                    raise
                box.put_back(metrics, events)
                return False
        return True


def _worth_retrying(err: BaseException) -> bool:
    """True for a replica that is down or busy, not for a body it refused."""
    if isinstance(err, PushError):
        return err.status in RETRY_STATUSES
    return isinstance(err, aiohttp.ClientError | TimeoutError | OSError)
