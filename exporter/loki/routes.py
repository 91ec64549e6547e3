"""The /loki/api/v1 routes that Grafana's Loki datasource calls, and Loki's /ready probe."""

from __future__ import annotations

import time
from collections.abc import Mapping

import orjson
from aiohttp import web
from multidict import MultiDict, MultiDictProxy, MultiMapping

from exporter.keys import EVENT_LOG, SETTINGS, STATUS, STORE
from exporter.loki import encode
from exporter.loki.catalog import StreamTotals, streams_in_range
from exporter.loki.evaluate import (
    QueryError,
    Sources,
    Stats,
    evaluate_metric,
    range_steps,
    run_log_query,
)
from exporter.loki.forward import forwarding
from exporter.loki.index import INDEX, StreamIndex
from exporter.loki.logql import Expr, LogQuery, ParseError, StreamSelector, parse
from exporter.loki.pacing import (
    QUERY_GATE,
    QueryCancelledError,
    QueryGate,
    QueryTimeoutError,
    TooManyQueriesError,
    query_pace,
)
from exporter.loki.params import (
    ParamError,
    parse_direction,
    parse_limit,
    parse_step,
    parse_time,
    time_range,
)
from exporter.loki.push import handle_push
from exporter.loki.streams import LABELLER, StreamLabeller
from exporter.loki.tail import handle_tail
from exporter.loki.vectors import LabelsKey

PREFIX = "/loki/api/v1"
METADATA_LOOKBACK_NS = 6 * 3_600_000_000_000
"""Loki's default range for labels, values and series: the last six hours."""
INSTANT_LOG_QUERY = (
    "log queries are not supported as an instant query type, "
    "please change your query to a range query type"
)


def sources(app: web.Application) -> Sources:
    """What queries read, from the application."""
    return Sources(app[EVENT_LOG], app[STORE], app[LABELLER], app[INDEX])


def text_error(message: str, status: int = 400) -> web.Response:
    """Loki's error form: a status and the reason as plain text."""
    return web.Response(status=status, text=message, content_type="text/plain")


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def _params(request: web.Request) -> MultiMapping[str]:
    """Query-string parameters, plus form fields when the request is a form POST."""
    if request.method != "POST" or request.content_type != "application/x-www-form-urlencoded":
        return request.query
    merged: MultiDict[str] = MultiDict(request.query)
    for name, value in (await request.post()).items():
        if isinstance(value, str):
            merged.add(name, value)
    return MultiDictProxy(merged)


def _query(params: Mapping[str, str]) -> Expr:
    text = params.get("query", "")
    if not text.strip():
        raise ParamError("query parameter is required")
    return parse(text)


def _selector(text: str) -> StreamSelector:
    """The stream selector of a `query` or `match[]` parameter (a pipeline is ignored)."""
    expr = parse(text)
    if not isinstance(expr, LogQuery):
        raise ParamError('only a stream selector such as {job="shopper-events"} is allowed here')
    return expr.selector


def refusal(err: Exception) -> web.Response:
    """Loki's answer for a query it will not or cannot finish."""
    if isinstance(err, QueryTimeoutError):
        return text_error(str(err), 504)
    if isinstance(err, TooManyQueriesError):
        response = text_error(str(err), 429)
        response.headers["Retry-After"] = str(err.retry_after)
        return response
    if isinstance(err, QueryCancelledError):
        return text_error(str(err), 499)
    return text_error(str(err))


QUERY_REFUSALS = (
    ParseError,
    ParamError,
    QueryError,
    QueryTimeoutError,
    TooManyQueriesError,
    QueryCancelledError,
)
"""What a query may stop with; `refusal` turns each into Loki's status and text."""


async def handle_query_range(request: web.Request) -> web.Response:
    """Log queries → streams (limit, direction); metric queries → matrix over the steps."""
    params = await _params(request)
    stats = Stats()
    try:
        expr = _query(params)
        start, end = time_range(params)
        with query_pace(request) as pace:
            if isinstance(expr, LogQuery):
                streams = await run_log_query(
                    sources(request.app),
                    expr,
                    start,
                    end,
                    limit=parse_limit(params.get("limit")),
                    backward=parse_direction(params.get("direction")),
                    stats=stats,
                    pace=pace,
                )
                return _json(encode.streams_body(streams, stats))
            # `limit` arrives on metric queries too (Grafana always sends it): it means nothing.
            steps = range_steps(start, end, parse_step(params.get("step"), start, end))
            value = await evaluate_metric(sources(request.app), expr, steps, stats, pace)
            return _json(encode.matrix_body(value, steps, stats))
    except QUERY_REFUSALS as err:
        return refusal(err)


async def handle_query(request: web.Request) -> web.Response:
    """Instant metric queries (Grafana's health check among them) → vector or scalar."""
    params = await _params(request)
    stats = Stats()
    try:
        expr = _query(params)
        at = parse_time(params.get("time"), time.time_ns(), "time")
        if isinstance(expr, LogQuery):
            raise QueryError(INSTANT_LOG_QUERY)
        with query_pace(request) as pace:
            value = await evaluate_metric(sources(request.app), expr, [at], stats, pace)
        return _json(encode.instant_body(value, at, stats))
    except QUERY_REFUSALS as err:
        return refusal(err)


def _metadata_scope(params: Mapping[str, str]) -> tuple[list[StreamSelector], int, int]:
    start, end = time_range(params, METADATA_LOOKBACK_NS)
    query = params.get("query", "")
    return ([_selector(query)] if query.strip() else []), start, end


async def _streams(
    request: web.Request,
    selectors: list[StreamSelector],
    start: int,
    end: int,
    *,
    with_bytes: bool = False,
) -> dict[LabelsKey, StreamTotals]:
    with query_pace(request) as pace:
        return await streams_in_range(
            sources(request.app), selectors, start, end, pace, with_bytes=with_bytes
        )


async def handle_labels(request: web.Request) -> web.Response:
    """Label names of the streams in range (`query` narrows to a selector)."""
    try:
        selectors, start, end = _metadata_scope(request.query)
        found = await _streams(request, selectors, start, end)
    except QUERY_REFUSALS as err:
        return refusal(err)
    names: set[str] = set()
    for totals in found.values():
        names.update(totals.labels)
    if not selectors:
        # Grafana up to 10.1 tests the datasource by asking for label names: never answer none.
        names.add("job")
    return _json(encode.data_body(sorted(names)))


async def handle_label_values(request: web.Request) -> web.Response:
    """Values of one label across the streams in range (`query` narrows to a selector)."""
    name = request.match_info["name"]
    try:
        selectors, start, end = _metadata_scope(request.query)
        found = await _streams(request, selectors, start, end)
    except QUERY_REFUSALS as err:
        return refusal(err)
    values: set[str] = set()
    for totals in found.values():
        value = totals.labels.get(name)
        if value is not None:
            values.add(value)
    return _json(encode.data_body(sorted(values)))


async def handle_series(request: web.Request) -> web.Response:
    """Label sets of the streams in range that any `match[]` selector picks."""
    params = await _params(request)
    try:
        start, end = time_range(params, METADATA_LOOKBACK_NS)
        selectors = [_selector(text) for text in params.getall("match[]", []) if text.strip()]
        found = await _streams(request, selectors, start, end)
    except QUERY_REFUSALS as err:
        return refusal(err)
    return _json(encode.data_body([found[key].labels for key in sorted(found)]))


async def handle_index_stats(request: web.Request) -> web.Response:
    """Size of what a selector reads in range: a bare object, as Loki answers."""
    try:
        selectors, start, end = _metadata_scope(request.query)
        found = await _streams(request, selectors, start, end, with_bytes=True)
    except QUERY_REFUSALS as err:
        return refusal(err)
    entries = sum(t.entries for t in found.values())
    size = sum(t.bytes for t in found.values())
    body = {"streams": len(found), "chunks": len(found), "entries": entries, "bytes": size}
    return _json(orjson.dumps(body))


async def handle_ready(request: web.Request) -> web.Response:
    """Loki's readiness probe: plain `ready` once the service runs."""
    if request.app[STATUS].ready:
        return web.Response(text="ready", content_type="text/plain")
    return web.Response(status=503, text="not ready", content_type="text/plain")


def setup_loki(app: web.Application) -> None:
    """The Loki-compatible API over the event log and shopper state, plus forwarding."""
    app[LABELLER] = StreamLabeller(app[SETTINGS].label_cap)
    app[INDEX] = StreamIndex(app[EVENT_LOG])
    settings = app[SETTINGS]
    app[QUERY_GATE] = QueryGate(settings.loki_query_timeout, settings.loki_max_concurrent_queries)
    router = app.router
    for path, handler in (
        ("/query_range", handle_query_range),
        ("/query", handle_query),
        ("/series", handle_series),
    ):
        router.add_get(PREFIX + path, handler)
        router.add_post(PREFIX + path, handler)
    router.add_get(PREFIX + "/labels", handle_labels)
    router.add_get(PREFIX + "/label/{name}/values", handle_label_values)
    router.add_get(PREFIX + "/index/stats", handle_index_stats)
    router.add_get(PREFIX + "/tail", handle_tail)
    router.add_post(PREFIX + "/push", handle_push)
    router.add_get("/ready", handle_ready)
    app.cleanup_ctx.append(forwarding)
