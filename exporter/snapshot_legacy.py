"""Snapshots of format 1 (one JSON object, before the columnar format) read into today's state."""

from __future__ import annotations

import math
from typing import Any

from exporter.ingest import Ingestor
from exporter.labels import OTHER
from exporter.reported import tally_of
from exporter.shopper import NO_TIME, Shopper
from exporter.snapshot_codec import (
    COLUMNS,
    FLAG,
    LIST,
    MINUTES,
    TALLY,
    TEXT,
    caps,
    given,
    load_labels,
    load_rest,
    load_store,
    place,
)
from exporter.snapshot_file import SnapshotError, UnsupportedVersionError

FORMAT = 1
_HISTOGRAMS = {"session_duration": "session_duration", "order_value": "order_value_hist"}


def read(state: dict[str, Any], ingestor: Ingestor) -> dict[str, Any]:
    """Load a format-1 snapshot into a fresh ingestor; its meta (savedAt, counts)."""
    version = state.get("format")
    if not isinstance(version, int) or "store" not in state:
        raise SnapshotError("not a snapshot of this service")
    if version != FORMAT:
        raise UnsupportedVersionError(version)
    saved = state["store"]
    store = ingestor.store
    load_labels(
        store,
        {
            name: {"values": values, "overflow": saved.get("overflow", {}).get(name, 0)}
            for name, values in saved.get("labels", {}).items()
        },
    )
    fields: list[str] = saved["fields"]
    rows: list[list[Any]] = saved["shoppers"]
    # Format 1 kept no last-action cap: take the values back in the order they appear.
    if "last_action" in fields:
        at = fields.index("last_action")
        actions = dict.fromkeys(row[at] for row in rows if row[at] != OTHER)
        caps(store)["last_action"].load(actions, (), 0)
    values: dict[str, list[Any]] = {}
    for name, column in zip(fields, zip(*rows, strict=True) if rows else (), strict=False):
        if name in Shopper.__slots__ or name == "last_order_id":
            values[name] = list(column)
    _share(values, caps(store))
    place(store, {name: given(column) for name, column in values.items()}, len(rows))
    counters = dict(saved.get("counters", {}))
    for name, attribute in _HISTOGRAMS.items():
        if name in saved.get("histograms", {}):
            counters[attribute] = saved["histograms"][name]
    load_store(
        store,
        {
            "counters": counters,
            "windows": {f"{k}_recent": v for k, v in saved.get("recent", {}).items()},
            "lastUpdate": saved.get("lastUpdate"),
        },
        recount=True,
    )
    ingest = {"received": state.get("received", {}), "rejected": state.get("rejected", [])}
    load_rest(ingestor, state["eventLog"], ingest)
    return {"savedAt": state.get("savedAt"), "shoppers": len(rows), "format": FORMAT}


def _share(columns: dict[str, list[Any]], by_name: dict[str, Any]) -> None:
    """Values as today's restore shares them (format 1 kept every one apart)."""
    for name, values in columns.items():
        kind, cap_name = COLUMNS.get(name, (None, None))
        cap = by_name.get(cap_name) if cap_name else None
        if kind == TEXT:
            if cap is not None:
                columns[name] = [v if v is None else cap.known(v) for v in values]
            else:
                seen: dict[Any, Any] = {}
                columns[name] = [seen.setdefault(v, v) for v in values]
        elif kind == LIST:
            many = cap.known_many if cap is not None else tuple
            columns[name] = [many(v) for v in values]
        elif kind == MINUTES:
            known = cap.known if cap is not None else str
            # Older snapshots hold [name, minutes] pairs, newer ones an object: dict() takes both.
            columns[name] = [
                {known(k): float(m) for k, m in dict(v).items()} if v else NO_TIME for v in values
            ]
        elif kind == FLAG:
            columns[name] = [bool(v) for v in values]
        elif kind == TALLY:
            columns[name] = [tally_of(v) for v in values]
    if "last_order_id" in columns:  # before a shopper kept their last few order ids
        columns["order_ids"] = [() if v is None else (v,) for v in columns.pop("last_order_id")]
    if "last_order_at" in columns:  # JSON has no -inf
        columns["last_order_at"] = [-math.inf if v is None else v for v in columns["last_order_at"]]
    if "last_action_time" in columns and "timestamp" in columns:
        # The same object as the timestamp when equal, as ingest shares it.
        columns["last_action_time"] = [
            t if a == t else a
            for a, t in zip(columns["last_action_time"], columns["timestamp"], strict=True)
        ]
