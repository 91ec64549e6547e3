"""The endpoints Grafana's Logs Drilldown app calls beside queries: volumes, detected labels and
fields, patterns, its limits and the build info (shapes in docs/loki-drilldown.md)."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

import orjson
from aiohttp import web
from multidict import MultiMapping

from exporter import __version__
from exporter.keys import EVENT_LOG, SETTINGS
from exporter.loki.evaluate import range_steps
from exporter.loki.line_patterns import pattern_samples
from exporter.loki.logql import LogQuery, StreamSelector, parse
from exporter.loki.pacing import query_pace
from exporter.loki.params import ParamError, parse_step, time_range
from exporter.loki.pipeline import Labels
from exporter.loki.routes import PREFIX, QUERY_REFUSALS, _params, refusal, sources
from exporter.loki.sample import newest_lines
from exporter.loki.streams import EVENT_LABEL_NAMES, STATE_LABEL_NAMES, event_level
from exporter.loki.volumes import LINE_SIZES, LineSizes, Volume, stream_volumes

LOKI_VERSION: Final = "3.4.0"
"""The Loki release whose HTTP API this one answers as (Grafana reads features from it)."""
DEFAULT_VOLUME_LIMIT: Final = 100
DEFAULT_LINE_LIMIT: Final = 1000
DEFAULT_FIELD_LIMIT: Final = 1000
MAX_LINES: Final = 5000
SERVICE_LABELS: Final = ["service_name", "service", "app", "application", "job"]
LEVEL_FIELDS: Final = ["detected_level", "level", "lvl", "severity"]


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _selector(params: Mapping[str, str], *, required: bool = True) -> StreamSelector | None:
    """The stream selector of `query` (a pipeline after it is ignored here)."""
    text = params.get("query", "").strip()
    if not text or text == "{}":
        if required:
            raise ParamError("query parameter is required")
        return None
    expr = parse(text)
    if not isinstance(expr, LogQuery):
        raise ParamError('query must be a stream selector such as {service_name="shopper-events"}')
    return expr.selector


def _log_query(params: Mapping[str, str]) -> LogQuery:
    text = params.get("query", "").strip()
    if not text:
        raise ParamError("query parameter is required")
    expr = parse(text)
    if not isinstance(expr, LogQuery):
        raise ParamError("query must be a log query (a selector and an optional pipeline)")
    return expr


def _count(params: Mapping[str, str], name: str, default: int, most: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(f"invalid {name}: {raw!r} (a whole number)") from None
    if value <= 0:
        raise ParamError(f"invalid {name}: {raw!r} (above 0)")
    return min(value, most)


def _grouping(params: Mapping[str, str], selector: StreamSelector) -> tuple[list[str], bool]:
    """(labels to aggregate into, whether by label names only) from targetLabels/aggregateBy."""
    targets = [name.strip() for name in params.get("targetLabels", "").split(",") if name.strip()]
    if not targets:
        targets = sorted({m.name for m in selector.matchers})
    by = params.get("aggregateBy", "series").strip() or "series"
    if by not in ("series", "labels"):
        raise ParamError(f"invalid aggregateBy: {by!r} (series or labels)")
    return targets, by == "labels"


Groups = dict[int, tuple[Labels, tuple[tuple[str, str], ...]]]
"""Stream labels (shared dicts, by identity; the dict is held so its id stays its own) and
the group they aggregate into."""


def _aggregate(
    volumes: Iterable[Volume], targets: list[str], by_labels: bool, groups: Groups | None = None
) -> dict[tuple[tuple[str, str], ...], int]:
    """Bytes per group; `groups` remembers each stream's group across calls (one per step)."""
    out: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
    if groups is None:
        groups = {}
    for volume in volumes:
        labels = volume.labels
        if by_labels:
            for name in targets:
                if name in labels:
                    out[((name, ""),)] += volume.bytes
            continue
        known = groups.get(id(labels))
        if known is None:
            group = tuple((name, labels[name]) for name in targets if name in labels)
            known = groups[id(labels)] = (labels, group)
        if known[1]:
            out[known[1]] += volume.bytes
    return out


class _VolumeAsk(NamedTuple):
    """What both volume requests ask: which streams, grouped how, how many series."""

    selector: StreamSelector
    targets: list[str]
    by_labels: bool
    limit: int


def _volume_ask(params: Mapping[str, str]) -> _VolumeAsk:
    selector = _selector(params)
    assert selector is not None
    targets, by_labels = _grouping(params, selector)
    limit = _count(params, "limit", DEFAULT_VOLUME_LIMIT, 100_000)
    return _VolumeAsk(selector, targets, by_labels, limit)


async def _volumes(
    request: web.Request, ask: _VolumeAsk, spans: list[tuple[int, int]]
) -> list[list[Volume]]:
    with query_pace(request) as pace:
        return await stream_volumes(
            sources(request.app), ask.selector, spans, pace, sizes=request.app[LINE_SIZES]
        )


async def handle_volume(request: web.Request) -> web.Response:
    """`index/volume`: bytes per series (or label) in range, as a vector at the range's end."""
    params = await _params(request)
    try:
        ask = _volume_ask(params)
        start, end = time_range(params)
        volumes = await _volumes(request, ask, [(start, end)])
    except QUERY_REFUSALS as err:
        return refusal(err)
    totals = _aggregate(volumes[0], ask.targets, ask.by_labels)
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[: ask.limit]
    at = end / 1e9
    result = [{"metric": dict(key), "value": [at, str(size)]} for key, size in ranked]
    return _json({"status": "success", "data": {"resultType": "vector", "result": result}})


async def handle_volume_range(request: web.Request) -> web.Response:
    """`index/volume_range`: the same per step, as a matrix (a point per step with entries)."""
    params = await _params(request)
    try:
        ask = _volume_ask(params)
        start, end = time_range(params)
        step = parse_step(params.get("step"), start, end)
        steps = range_steps(start, end, step)
        # A point at t holds what was logged in (t - step, t], as Prometheus ranges do.
        volumes = await _volumes(request, ask, [(t - step + 1, t + 1) for t in steps])
    except QUERY_REFUSALS as err:
        return refusal(err)
    series: dict[tuple[tuple[str, str], ...], list[list[Any]]] = defaultdict(list)
    totals: Counter[tuple[tuple[str, str], ...]] = Counter()
    groups: Groups = {}
    for t, span in zip(steps, volumes, strict=True):
        for key, size in sorted(_aggregate(span, ask.targets, ask.by_labels, groups).items()):
            series[key].append([t / 1e9, str(size)])
            totals[key] += size
    kept = sorted(series, key=lambda key: (-totals[key], key))[: ask.limit]
    result = [{"metric": dict(key), "values": series[key]} for key in sorted(kept)]
    return _json({"status": "success", "data": {"resultType": "matrix", "result": result}})


async def handle_detected_labels(request: web.Request) -> web.Response:
    """`detected_labels`: each stream label in range with its number of distinct values."""
    params = await _params(request)
    try:
        selector = _selector(params, required=False)
        start, end = time_range(params)
        with query_pace(request) as pace:
            volumes = await stream_volumes(sources(request.app), selector, [(start, end)], pace)
    except QUERY_REFUSALS as err:
        return refusal(err)
    values: dict[str, set[str]] = defaultdict(set)
    for volume in volumes[0]:
        for name, value in volume.labels.items():
            values[name].add(value)
    detected = [{"label": name, "cardinality": len(values[name])} for name in sorted(values)]
    return _json({"detectedLabels": detected})


async def _lines(request: web.Request, params: MultiMapping[str]) -> list[str]:
    """The newest lines in range that the query (selector and pipeline) keeps."""
    query = _log_query(params)
    start, end = time_range(params)
    limit = _count(params, "line_limit", DEFAULT_LINE_LIMIT, MAX_LINES)
    with query_pace(request) as pace:
        return await newest_lines(sources(request.app), query, start, end, limit, pace)


_TYPES: Final = {bool: "boolean", int: "int", float: "float"}


def _flatten(
    body: Mapping[str, Any], path: tuple[str, ...], out: dict[tuple[str, ...], list[Any]]
) -> None:
    """Add the nested object's leaves to `out` by JSON path, as Loki's `json` parser reaches
    them (arrays are not fields)."""
    for key, value in body.items():
        if type(value) is dict:
            _flatten(value, (*path, key), out)
        elif type(value) is not list:
            out.setdefault((*path, key), []).append(value)


class _Field:
    __slots__ = ("path", "type", "values")

    def __init__(self, path: tuple[str, ...], values: list[Any]) -> None:
        self.path = path
        types = {_TYPES.get(type(v), "string") for v in values if v is not None}
        self.type = types.pop() if len(types) == 1 else "string"
        self.values = {v if type(v) is str else orjson.dumps(v).decode() for v in set(values)}


def _fields(lines: Iterable[str], stream_labels: frozenset[str]) -> dict[str, _Field]:
    """Fields of JSON lines by the name the `json` parser gives them (nested keys joined by
    `_`; a name a stream label already has gets `_extracted`), with their types and values."""
    leaves: dict[tuple[str, ...], list[Any]] = {}
    for line in lines:
        try:
            body = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if type(body) is not dict:
            continue
        for key, value in body.items():
            # Most values are flat: the common case without the recursion.
            if type(value) is dict:
                _flatten(value, (key,), leaves)
            elif type(value) is not list:
                bucket = leaves.get((key,))
                if bucket is None:
                    bucket = leaves[(key,)] = []
                bucket.append(value)
    found: dict[str, _Field] = {}
    for path, values in leaves.items():
        name = "_".join(path)
        if name in stream_labels:
            name += "_extracted"
        found[name] = _Field(path, values)
    return found


STREAM_LABELS: Final = frozenset(EVENT_LABEL_NAMES) | frozenset(STATE_LABEL_NAMES)


async def handle_detected_fields(request: web.Request) -> web.Response:
    """`detected_fields`: the fields of the newest matching lines, typed, with cardinality."""
    params = await _params(request)
    try:
        field_limit = _count(params, "field_limit", DEFAULT_FIELD_LIMIT, 10_000)
        found = _fields(await _lines(request, params), STREAM_LABELS)
    except QUERY_REFUSALS as err:
        return refusal(err)
    fields = [
        {
            "label": name,
            "type": field.type,
            "cardinality": len(field.values),
            "parsers": ["json"],
            "jsonPath": list(field.path),
        }
        for name, field in sorted(found.items())[:field_limit]
    ]
    return _json({"fields": fields, "limit": field_limit})


async def handle_detected_field_values(request: web.Request) -> web.Response:
    """`detected_field/{name}/values`: the distinct values of one field in the newest lines."""
    params = await _params(request)
    name = request.match_info["name"]
    try:
        limit = _count(params, "limit", DEFAULT_FIELD_LIMIT, 10_000)
        found = _fields(await _lines(request, params), STREAM_LABELS)
    except QUERY_REFUSALS as err:
        return refusal(err)
    field = found.get(name)
    values = sorted(field.values)[:limit] if field is not None else []
    return _json({"values": values, "limit": limit})


async def handle_patterns(request: web.Request) -> web.Response:
    """`patterns`: the shapes of the matching events' lines, counted per step."""
    params = await _params(request)
    try:
        selector = _selector(params)
        assert selector is not None
        start, end = time_range(params)
        step = parse_step(params.get("step"), start, end)
        range_steps(start, end, step)  # refuses too many points, as queries do
        with query_pace(request) as pace:
            found = await pattern_samples(sources(request.app), selector, start, end, step, pace)
    except QUERY_REFUSALS as err:
        return refusal(err)
    data = [
        {
            "pattern": pattern,
            "level": event_level(kind),
            "samples": [[t // 1_000_000_000, n] for t, n in sorted(samples.items())],
        }
        for (pattern, kind), samples in sorted(
            found.items(), key=lambda item: -sum(item[1].values())
        )
    ]
    return _json({"status": "success", "data": data})


def _duration(seconds: float) -> str:
    """Seconds as Go prints a duration (`30s`, `5m0s`, `1h0m0s`), as Loki's limits read."""
    whole = int(seconds)
    hours, minutes, secs = whole // 3600, whole % 3600 // 60, whole % 60
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


async def handle_drilldown_limits(request: web.Request) -> web.Response:
    """`drilldown-limits`: the limits Drilldown adapts to, from this service's settings."""
    settings = request.app[SETTINGS]
    retention = _duration(settings.event_log_retention)
    limits = {
        "discover_log_levels": True,
        "discover_service_name": SERVICE_LABELS,
        "log_level_fields": LEVEL_FIELDS,
        "max_entries_limit_per_query": 5000,
        "max_line_size_truncate": False,
        "max_query_bytes_read": "0B",
        "max_query_length": retention,
        "max_query_lookback": retention,
        "max_query_range": "0s",
        "max_query_series": 500,
        "metric_aggregation_enabled": False,
        "pattern_persistence_enabled": False,
        "query_timeout": _duration(settings.loki_query_timeout),
        "retention_period": retention,
        "volume_enabled": True,
        "volume_max_series": 1000,
    }
    return _json({"limits": limits, "pattern_ingester_enabled": True, "version": LOKI_VERSION})


async def handle_buildinfo(request: web.Request) -> web.Response:
    """`status/buildinfo`: the Loki API version answered, and this service's own version."""
    del request
    return _json(
        {
            "version": LOKI_VERSION,
            "revision": f"shopper-exporter-{__version__}",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": f"none (Python {sys.version.split()[0]})",
        }
    )


def setup_drilldown(app: web.Application) -> None:
    """The Logs Drilldown routes, beside the Loki API (setup_loki must run first)."""
    assert EVENT_LOG in app
    app[LINE_SIZES] = LineSizes()
    router = app.router
    for path, handler in (
        ("/index/volume", handle_volume),
        ("/index/volume_range", handle_volume_range),
        ("/detected_labels", handle_detected_labels),
        ("/detected_fields", handle_detected_fields),
        ("/patterns", handle_patterns),
    ):
        router.add_get(PREFIX + path, handler)
        router.add_post(PREFIX + path, handler)
    router.add_get(PREFIX + "/detected_field/{name}/values", handle_detected_field_values)
    router.add_get(PREFIX + "/drilldown-limits", handle_drilldown_limits)
    router.add_get(PREFIX + "/status/buildinfo", handle_buildinfo)
