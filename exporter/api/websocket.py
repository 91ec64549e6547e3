"""GET /ws: push updates in (each message answered with an ack) and subscribe to live frames.

Inbound, every body shape the HTTP API takes, plus `{"type": "user_metric", "metric": {...}}` and
`{"type": "event", "event": {...}}`. Control messages: `{"type": "subscribe", "types": [...],
"user": id, "lastEventId": n}` (all optional) and `{"type": "unsubscribe"}`; a message with
`metrics` or `events` is a batch, whatever its `type`. Outbound frames use
the brief's shapes: `{"type": "user_metric", "metric": {...}}`, `{"type": "event", "event": {...}}`,
`{"type": "summary", "summary": {...}}`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from exporter.api.fanout import LIVE_WRITER, LiveReader, Wire
from exporter.api.live import FilterError, FrameFilter, LiveFeed, parse_event_id
from exporter.api.replies import streams_full
from exporter.eventlog import Frame
from exporter.ingest import IngestReport
from exporter.keys import EVENT_LOG, HUB, INGESTOR, SETTINGS, STATUS, STREAMS
from exporter.model import BodyError, is_envelope, parse_json, validate_batch

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
"""Ping idle peers this often, so dead connections are noticed and their subscription ends."""

_PAYLOAD_KEY = {"user_metric": "metric", "event": "event", "summary": "summary"}


def ws_bytes(frame: Frame) -> bytes:
    """One frame as the brief's WebSocket message: a whole unmasked text frame (RFC 6455 §5.2,
    as a server sends it) of UTF-8 JSON, encoded once for all readers."""
    return frame.encoded("ws", _ws_encoding)


def _ws_encoding(frame: Frame) -> bytes:
    payload = f'{{"type":"{frame.kind}","{_PAYLOAD_KEY[frame.kind]}":{frame.data}}}'.encode()
    return ws_header(len(payload)) + payload


def ws_header(length: int) -> bytes:
    """The header of a final, unmasked text frame carrying `length` bytes."""
    if length < 126:
        return _SHORT.pack(_FIN_TEXT, length)
    if length < 1 << 16:
        return _MEDIUM.pack(_FIN_TEXT, 126, length)
    return _LONG.pack(_FIN_TEXT, 127, length)


_FIN_TEXT = 0x81
_SHORT, _MEDIUM, _LONG = struct.Struct("!BB"), struct.Struct("!BBH"), struct.Struct("!BBQ")


def _as_is(data: bytes) -> bytes:
    return data


WS = Wire("ws", ws_bytes, _as_is)
"""Frames are whole WebSocket messages, so a batch is just their bytes in a row: written in one
piece it cannot interleave with aiohttp's own frames (acks, pings, the close)."""


def _json(body: Any) -> str:
    return orjson.dumps(body).decode()


def _error(reason: str, message: str) -> str:
    return _json({"type": "error", "error": reason, "message": message})


class LiveSocket:
    """One /ws connection: applies pushed bodies and, once subscribed, sends live frames."""

    def __init__(
        self, app: web.Application, ws: web.WebSocketResponse, transport: asyncio.Transport
    ) -> None:
        self.app = app
        self.ws = ws
        self.transport = transport
        self._reader: LiveReader | None = None

    async def on_message(self, raw: bytes | str) -> None:
        """Answer one inbound message: an ack, an error, or a subscription change."""
        ingestor = self.app[INGESTOR]
        valid = validate_batch(raw)
        if valid is not None:
            # A batch with every record valid: applied from the one-pass bulk path.
            await self._ingest(lambda: ingestor.ingest_valid(valid, "ws"))
            return
        try:
            body = parse_json(raw)
        except BodyError as err:
            ingestor.refuse("ws", err.reason)
            await self.ws.send_str(_error(err.reason, str(err)))
            return
        # A batch is a batch whatever its "type" says, as on the fast path above.
        kind = body.get("type") if isinstance(body, dict) and not is_envelope(body) else None
        if kind == "subscribe":
            await self.subscribe(body)
        elif kind == "unsubscribe":
            self.unsubscribe()
            await self.ws.send_str('{"type":"unsubscribed"}')
        else:
            await self._ingest(lambda: ingestor.ingest(body, "ws"))

    async def _ingest(self, apply: Callable[[], IngestReport]) -> None:
        """Apply a pushed body and answer with the ack, or the error that refused it."""
        try:
            report = apply()
        except BodyError as err:
            await self.ws.send_str(_error(err.reason, str(err)))
            return
        reply = report.to_json()
        reply["type"] = "ack"
        await self.ws.send_str(_json(reply))

    async def subscribe(self, request: dict[str, Any]) -> None:
        """Start (or replace) the live subscription this message describes."""
        kinds = request.get("types")
        user = request.get("user")
        try:
            if kinds is not None and (
                not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds)
            ):
                raise FilterError("'types' must be an array of frame types")
            if user is not None and not isinstance(user, str):
                raise FilterError("'user' must be a userId string")
            wanted = FrameFilter.parse(kinds, user)
        except FilterError as err:
            await self.ws.send_str(_error("invalid", str(err)))
            return
        self.unsubscribe()
        app = self.app
        feed = LiveFeed(
            app[HUB],
            app[EVENT_LOG],
            wanted,
            parse_event_id(request.get("lastEventId")),
            app[SETTINGS].stream_backlog,
            app[INGESTOR].states_since,
        )
        await self.ws.send_str(
            _json(
                {
                    "type": "subscribed",
                    "types": sorted(wanted.kinds),
                    "user": wanted.user,
                    "lastEventId": app[EVENT_LOG].last_id,
                }
            )
        )
        app[STATUS].streams["ws"] += 1
        loop = asyncio.get_running_loop()
        ws = self.ws
        self._reader = LiveReader(
            feed, self.transport, WS, loop.time(), loop.create_future(), gone=lambda: ws.closed
        )
        app[LIVE_WRITER].add(self._reader)

    def unsubscribe(self) -> None:
        """Stop sending live frames (no-op when not subscribed)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            self.app[LIVE_WRITER].remove(reader)
            reader.feed.close()
            self.app[STATUS].streams["ws"] -= 1


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """Accept a WebSocket; messages over the body limit close it with 1009 (message too big)."""
    app = request.app
    full = streams_full(request)
    if full is not None:
        return full
    # No per-message compression: CPU is the one loop's scarce resource, frames are small.
    ws = web.WebSocketResponse(
        max_msg_size=app[SETTINGS].max_body_bytes,
        compress=False,
        heartbeat=HEARTBEAT_SECONDS,
    )
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the client left during the handshake
        return ws
    socket = LiveSocket(app, ws, transport)
    streams = app[STREAMS]
    streams.add(ws)
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await socket.on_message(msg.data)
            elif msg.type == WSMsgType.ERROR:
                error = msg.data
                if isinstance(error, WebSocketError) and error.code == WSCloseCode.MESSAGE_TOO_BIG:
                    app[INGESTOR].refuse("ws", "too_large")
                log.debug("websocket closed on error: %s", error)
    except ConnectionResetError:
        pass  # the peer went away mid-reply
    finally:
        socket.unsubscribe()
        streams.discard(ws)
    return ws


def setup_websocket(app: web.Application) -> None:
    app.router.add_get("/ws", handle_ws)
