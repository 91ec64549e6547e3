"""GET /loki/api/v1/tail: Grafana's Live view, a WebSocket of `{"streams": [...]}` messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from exporter.api.replies import streams_full
from exporter.eventlog import Frame
from exporter.keys import EVENT_LOG, HUB, SETTINGS, STATUS, STORE, STREAMS
from exporter.loki import encode
from exporter.loki.evaluate import QueryError, Sources, Stats, Streams, run_log_query
from exporter.loki.index import INDEX
from exporter.loki.logql import LogQuery, ParseError, parse
from exporter.loki.pacing import (
    QUERY_GATE,
    Pace,
    QueryCancelledError,
    QueryTimeoutError,
    TooManyQueriesError,
    query_pace,
)
from exporter.loki.params import HOUR_NS, ParamError, parse_limit, parse_time
from exporter.loki.pipeline import Pipeline
from exporter.loki.streams import LABELLER, StreamLabeller

PING_INTERVAL: Final = 1.0
"""Loki pings tail clients every second; so does this, which also keeps proxies from idling out."""
MAX_CLOSE_REASON: Final = 123


def _tail_query(request: web.Request) -> tuple[LogQuery, int, int]:
    params = request.query
    text = params.get("query", "")
    if not text.strip():
        raise ParamError("query parameter is required")
    expr = parse(text)
    if not isinstance(expr, LogQuery):
        raise QueryError("tailing needs a log query, not a metric query")
    now = time.time_ns()
    start = parse_time(params.get("start"), now - HOUR_NS, "start")
    return expr, parse_limit(params.get("limit")), start


class LiveEntries:
    """Turns hub frames into the tail's stream entries for one query."""

    def __init__(self, request: web.Request, query: LogQuery) -> None:
        app = request.app
        self.log = app[EVENT_LOG]
        self.labeller: StreamLabeller = app[LABELLER]
        self.selector = query.selector
        self.pipeline = Pipeline(query.stages)

    async def collect(self, frames: list[Frame], pace: Pace) -> Streams:
        """The entries of these frames that pass the query, pausing when the turn is up."""
        out = Streams()
        for frame in frames:
            await pace.tick()
            if frame.kind == "event":
                logged = self.log.get(frame.id)
                if logged is None:
                    continue
                labels = self.labeller.for_event(logged)
                ts, line = logged.ts_ns, logged.line
            elif frame.kind == "user_metric":
                view = orjson.loads(frame.data)
                labels = self.labeller.for_state(
                    bool(view.get("online")), str(view.get("membershipType", ""))
                )
                ts, line = time.time_ns(), frame.data
            else:
                continue
            if not self.selector.matches(labels):
                continue
            result = self.pipeline.run(ts, line, labels)
            if result is not None:
                out.add(ts, *result)
        return out


def _reason(message: str) -> bytes:
    return message.encode()[:MAX_CLOSE_REASON]


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read until the client goes away (the tail ignores what clients send)."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break


async def handle_tail(request: web.Request) -> web.StreamResponse:
    """Send recent matching entries, then every new one as it is logged."""
    full = streams_full(request)
    if full is not None:
        return full
    ws = web.WebSocketResponse(autoping=True)
    upgrade = ws.can_prepare(request)
    try:
        query, limit, start = _tail_query(request)
    except (ParseError, ParamError, QueryError) as err:
        if not upgrade.ok:
            return web.Response(status=400, text=str(err), content_type="text/plain")
        # Grafana shows the close reason, and retries only on 1006; so upgrade, then explain.
        await ws.prepare(request)
        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=_reason(str(err)))
        return ws
    if not upgrade.ok:
        return web.Response(
            status=400, text="tail needs a WebSocket upgrade", content_type="text/plain"
        )
    app = request.app
    await ws.prepare(request)
    status, streams = app[STATUS], app[STREAMS]
    streams.add(ws)
    status.streams["tail"] += 1
    hub = app[HUB]
    subscription = hub.subscribe(app[SETTINGS].stream_backlog)
    reader = asyncio.create_task(_drain(ws))
    gate = app[QUERY_GATE]
    try:
        live = LiveEntries(request, query)
        # The backlog ends at the moment of subscribing: what is logged later comes through
        # the subscription, so nothing is missed or sent twice though the backlog is read in
        # slices with pauses between.
        with query_pace(request) as pace:
            recent = await run_log_query(
                Sources(app[EVENT_LOG], app[STORE], app[LABELLER], app[INDEX]),
                query,
                start,
                time.time_ns(),
                limit=limit,
                backward=True,
                stats=Stats(),
                pace=pace,
            )
        for _labels, values in recent.streams.values():
            values.reverse()
        if recent.count:
            await ws.send_str(encode.tail_body(recent))
        last_ping = time.monotonic()
        while not ws.closed and not reader.done() and not subscription.closed:
            frames = await subscription.next_batch(wait=PING_INTERVAL)
            # Filtering live frames is not a query: it takes no slot and has no deadline, but
            # pauses like one, however many frames came at once.
            with gate.pace(capped=False) as filtering:
                found = await live.collect(frames, filtering)
            if found.count and not ws.closed:
                await ws.send_str(encode.tail_body(found))
            if time.monotonic() - last_ping >= PING_INTERVAL and not ws.closed:
                await ws.ping()
                last_ping = time.monotonic()
    except ConnectionResetError:
        pass  # the client went away mid-send
    except (QueryTimeoutError, TooManyQueriesError, QueryCancelledError) as err:
        if not ws.closed:
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=_reason(str(err)))
    finally:
        subscription.close()
        streams.discard(ws)
        status.streams["tail"] -= 1
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await reader
        if not ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await ws.close()
    return ws
