"""Loki's response bodies, in the order Grafana's parser needs: resultType, result, stats."""

from __future__ import annotations

import math
from typing import Any

import orjson

from exporter.loki.evaluate import Stats, Streams
from exporter.loki.vectors import LabelsKey, Scalar, Vector


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: "2", "0.5", "NaN", "+Inf"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def seconds(ts_ns: int) -> int | float:
    """A sample time as a JSON number of seconds (whole when it can be)."""
    if ts_ns % 1_000_000_000 == 0:
        return ts_ns // 1_000_000_000
    return round(ts_ns / 1e9, 3)


def _success(result_type: str, result: Any, stats: Stats) -> bytes:
    data = {"resultType": result_type, "result": result, "stats": stats.summary()}
    return orjson.dumps({"status": "success", "data": data})


def _labels(key: LabelsKey) -> dict[str, str]:
    return dict(key)


def streams_body(streams: Streams, stats: Stats) -> bytes:
    """`streams`: each entry a [ns timestamp string, line] pair (no categorized labels)."""
    result = [
        {"stream": labels, "values": [[str(ts), line] for ts, line in values]}
        for labels, values in streams.streams.values()
    ]
    return _success("streams", result, stats)


def matrix_body(value: Vector | Scalar, steps: list[int], stats: Stats) -> bytes:
    """`matrix`: one series per label set, steps without a sample left out."""
    if isinstance(value, Scalar):
        value = Vector({(): [*value.values]})
    result = []
    for key in sorted(value.series):
        points = [
            [seconds(t), format_value(v)]
            for t, v in zip(steps, value.series[key], strict=True)
            if v is not None
        ]
        if points:
            result.append({"metric": _labels(key), "values": points})
    return _success("matrix", result, stats)


def instant_body(value: Vector | Scalar, ts_ns: int, stats: Stats) -> bytes:
    """`vector` (one sample per series) or `scalar` for an instant query."""
    if isinstance(value, Scalar):
        return _success("scalar", [seconds(ts_ns), format_value(value.values[0])], stats)
    present = [
        (key, v) for key, values in sorted(value.series.items()) if (v := values[0]) is not None
    ]
    if value.order:
        # sort / sort_desc: by value (NaN last either way), labels breaking ties.
        present.sort(
            key=lambda pair: (math.isnan(pair[1]), pair[1] if value.order == "asc" else -pair[1])
        )
    result = [
        {"metric": _labels(key), "value": [seconds(ts_ns), format_value(v)]} for key, v in present
    ]
    return _success("vector", result, stats)


def data_body(data: Any) -> bytes:
    """`{"status": "success", "data": …}` for labels, values and series."""
    return orjson.dumps({"status": "success", "data": data})


def tail_body(streams: Streams) -> str:
    """One tail message: `{"streams": [...]}` with ns timestamp strings."""
    result = [
        {"stream": labels, "values": [[str(ts), line] for ts, line in values]}
        for labels, values in streams.streams.values()
    ]
    return orjson.dumps({"streams": result}).decode()
