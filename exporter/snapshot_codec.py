"""The state as snapshot sections and back: shoppers in columns, counters, caps, windows, the log.

Shoppers are kept column by column, one array per field, so that a write reads a field of every
shopper in one C loop and a restore sets it the same way. A value repeated across shoppers is
kept once and restored as one shared object, as ingest shares it: label strings through their
caps, feature lists, featureTime mappings, names, and floats such as the arrival time that every
shopper of a body shares. A restored store therefore holds no more objects than the live one did.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from itertools import compress, count, repeat
from operator import attrgetter, methodcaller
from typing import Any, Final, Literal

import orjson

from exporter import __version__, snapshot_events
from exporter.ingest import Ingestor
from exporter.labels import LabelCap
from exporter.reported import tally_of
from exporter.shopper import NO_TIME
from exporter.snapshot_file import SectionWriter, SnapshotError
from exporter.store import Shopper, ShopperStore
from exporter.tallies import FUNNEL_STAGES, Histogram, Recent

IDS: Final = "ids"
"""The shopper's key, one JSON list."""
TEXT: Final = "text"
"""Strings (or None) through a table of the distinct ones; through its label cap if it has one."""
NUMBER: Final = "number"
"""Floats as they are (mostly distinct: each shopper's own object live too)."""
SHARED: Final = "shared"
"""Floats through a table of the distinct ones (one object per value)."""
COUNT: Final = "count"
"""Integers (int64)."""
FLAG: Final = "flag"
"""Booleans."""
TIME: Final = "time"
"""A float or None, mostly the shopper's own timestamp (then the same object, as live)."""
LIST: Final = "list"
"""Tuples of label values through a table, shared through the label cap."""
MINUTES: Final = "minutes"
"""featureTime mappings through a table of the distinct ones."""
TALLY: Final = "tally"
"""Tuples of integers (or None) through a table of the distinct ones."""

COLUMNS: Final[dict[str, tuple[str, str | None]]] = {
    "user_id": (IDS, None),
    "activity": (TEXT, "activity"),
    "cart_open": (FLAG, None),
    "cart_value": (SHARED, None),
    "changed": (COUNT, None),
    "clicks": (COUNT, None),
    "coupons": (COUNT, None),
    "dashboards_viewed": (COUNT, None),
    "delivery_window": (TEXT, "delivery_window"),
    "events_triggered": (COUNT, None),
    "feature_time": (MINUTES, "activity"),
    "features_used": (LIST, "activity"),
    "fingerprint": (COUNT, None),
    "is_active": (FLAG, None),
    "items_in_cart": (COUNT, None),
    "last_action": (TEXT, "last_action"),
    "last_action_time": (TIME, None),
    "last_order_at": (SHARED, None),
    "location": (TEXT, "location"),
    "membership": (TEXT, "membership"),
    "online": (FLAG, None),
    "order_ids": (LIST, None),
    "page_views": (COUNT, None),
    "products_viewed": (COUNT, None),
    "queries_run": (COUNT, None),
    "received": (SHARED, None),
    "reported": (TALLY, None),
    "reports_created": (COUNT, None),
    "scroll_depth": (SHARED, None),
    "searches": (COUNT, None),
    "session_seconds": (NUMBER, None),
    "session_started": (NUMBER, None),
    "stages": (COUNT, None),
    "timestamp": (NUMBER, None),
    "user_name": (TEXT, None),
}
"""How each Shopper field is kept (tests check that every field has a way)."""

Typecode = Literal["d", "q", "B", "I"]
_TYPECODES: Final[dict[str, Typecode]] = {NUMBER: "d", COUNT: "q", FLAG: "B", TIME: "d"}
_BOOLS: Final = (False, True)

Column = Callable[[int, int, dict[str, list[Any]]], list[Any]]
"""A saved field: the values of shoppers [start, end), given the fields already made for them."""
Columns = dict[str, Column]
_CHUNK: Final = 16384


def caps(store: ShopperStore) -> dict[str, LabelCap]:
    """The store's label caps by name, the last-action cap included."""
    return {**store.labels, "last_action": store.tables().actions}


# ----- writing ------------------------------------------------------------------------------


def write(out: SectionWriter, ingestor: Ingestor, saved_at: float) -> None:
    """Write the whole state; runs where nothing changes it meanwhile (a forked child)."""
    store, log = ingestor.store, ingestor.log
    tables = store.tables()
    shoppers = list(tables.shoppers.values())
    out.section(
        "meta",
        orjson.dumps(
            {
                "savedAt": saved_at,
                "shoppers": len(shoppers),
                "events": len(log),
                "exporter": __version__,
                "shard": None if ingestor.shard is None else str(ingestor.shard),
            }
        ),
    )
    out.section("store", orjson.dumps(_store_state(store)))
    kinds: dict[str, str] = {}
    for name, (kind, _cap) in COLUMNS.items():
        kinds[name] = kind
        _write_column(out, name, kind, map(attrgetter(name), shoppers))
    online = compress(shoppers, map(attrgetter("online"), shoppers))
    queued = list(tables.online.newest())
    queued.reverse()
    if list(map(id, online)) != list(map(id, queued)):
        # The online shoppers are not in the order of the others: keep their order explicitly.
        position = {id(shopper): i for i, shopper in enumerate(shoppers)}
        order = array("I", (position[id(shopper)] for shopper in queued))
        out.section("online", order)
    out.section(
        "layout",
        orjson.dumps({"shoppers": len(shoppers), "columns": kinds, "byteorder": sys.byteorder}),
    )
    snapshot_events.write(out, log)
    out.section(
        "ingest",
        orjson.dumps(
            {
                "received": ingestor.received,
                "rejected": [[t, r, n] for (t, r), n in ingestor.rejected.items()],
            }
        ),
    )


def _write_column(out: SectionWriter, name: str, kind: str, values: Iterator[Any]) -> None:
    if kind == IDS:
        out.section(f"col.{name}", orjson.dumps(list(values)))
        return
    if kind == TIME:
        out.section(f"col.{name}", array("d", [math.nan if v is None else v for v in values]))
        return
    typecode = _TYPECODES.get(kind)
    if typecode is not None:
        out.section(f"col.{name}", array(typecode, values))
        return
    if kind == MINUTES:
        values = map(tuple, map(methodcaller("items"), values))
    index: defaultdict[Any, int] = defaultdict(count().__next__)
    out.section(f"col.{name}", array("I", map(index.__getitem__, values)))
    table = list(index)
    if kind == SHARED:
        out.section(f"tab.{name}", array("d", table))
    else:
        out.section(f"tab.{name}", orjson.dumps(table))


def _store_state(store: ShopperStore) -> dict[str, Any]:
    counters = store.counters
    aggregates = store.aggregates
    return {
        "counters": {f.name: _plain(getattr(counters, f.name)) for f in fields(counters)},
        "aggregates": {f.name: getattr(aggregates, f.name) for f in fields(aggregates)},
        "windows": {
            name: value.state() for name, value in vars(store).items() if isinstance(value, Recent)
        },
        "labels": {
            name: {"values": cap.values(), "lists": cap.shared_lists(), "overflow": cap.overflow}
            for name, cap in caps(store).items()
        },
        "capacity": {"evicted": store.capacity.evicted, "refused": store.capacity.refused},
        "lastUpdate": store.last_update,
    }


def _plain(value: Any) -> Any:
    return value.state() if isinstance(value, Histogram) else value


# ----- reading ------------------------------------------------------------------------------


def read(found: Mapping[str, memoryview], ingestor: Ingestor) -> dict[str, Any]:
    """Load a snapshot's sections into a fresh ingestor; its meta (savedAt, counts)."""
    meta: dict[str, Any] = orjson.loads(found["meta"])
    layout: dict[str, Any] = orjson.loads(found["layout"])
    if layout.get("byteorder") != sys.byteorder:
        raise SnapshotError(f"written on a {layout.get('byteorder')}-endian machine")
    store = ingestor.store
    state: dict[str, Any] = orjson.loads(found["store"])
    load_labels(store, state["labels"])
    n = int(layout["shoppers"])
    columns, changed = _read_columns(found, layout["columns"], caps(store), n)
    order = _array("I", found["online"]) if "online" in found else None
    place(store, columns, n, order)
    load_store(store, state, recount=changed)
    if snapshot_events.present(found):
        snapshot_events.read(found, ingestor.log, store.tables().shoppers)
    else:  # format 2: the events as one JSON list
        load_log(ingestor, orjson.loads(found["eventlog"]))
    load_ingest(ingestor, orjson.loads(found["ingest"]))
    return meta


def _array(typecode: Typecode, raw: memoryview, length: int | None = None) -> memoryview[Any]:
    view: memoryview[Any] = raw.cast(typecode)
    if length is not None and len(view) != length:
        raise SnapshotError(f"a column holds {len(view)} values for {length} shoppers")
    return view


def _read_columns(
    found: Mapping[str, memoryview], saved: dict[str, str], by_name: dict[str, LabelCap], n: int
) -> tuple[Columns, bool]:
    """Every saved column, ready to restore; and whether a label value had to become `other`
    (a smaller --label-cap than when saved)."""
    columns: Columns = {}
    changed = False
    for name, kind in saved.items():
        known = COLUMNS.get(name)
        if known is None:
            continue  # a field this version no longer has
        if known[0] != kind:
            raise SnapshotError(f"field {name} is kept as {kind}, not {known[0]}")
        raw = found[f"col.{name}"]
        if kind == IDS:
            ids = orjson.loads(raw)
            if len(ids) != n:
                raise SnapshotError(f"{len(ids)} shopper ids for {n} shoppers")
            columns[name] = given(ids)
        elif kind == TIME:
            columns[name] = _times(_array("d", raw, n))
        elif kind in (NUMBER, COUNT):
            columns[name] = _numbers(_array(_TYPECODES[kind], raw, n))
        elif kind == FLAG:
            columns[name] = _through(_BOOLS, _array("B", raw, n))
        else:
            cap = by_name.get(known[1]) if known[1] else None
            table, moved = _table(kind, found[f"tab.{name}"], cap)
            changed = changed or moved
            columns[name] = _through(table, _array("I", raw, n))
    return columns, changed


def given(values: Sequence[Any]) -> Column:
    """A column of values already made."""
    return lambda start, end, _: list(values[start:end])


def _numbers(view: memoryview[Any]) -> Column:
    return lambda start, end, _: view[start:end].tolist()


def _through(table: Sequence[Any], indexes: memoryview[Any]) -> Column:
    """A column of positions in a table of the objects to share."""
    return lambda start, end, _: list(map(table.__getitem__, indexes[start:end]))


def _times(view: memoryview[Any]) -> Column:
    """A float-or-None column: the same object as the timestamp when equal (as ingest shares
    it); NaN is None."""

    def decode(start: int, end: int, made: dict[str, list[Any]]) -> list[Any]:
        pairs = zip(view[start:end], made["timestamp"], strict=True)
        return [t if a == t else (None if a != a else a) for a, t in pairs]

    return decode


def _table(kind: str, raw: memoryview, cap: LabelCap | None) -> tuple[list[Any], bool]:
    """A column's table of distinct values, as the objects to share; and whether a label value
    became `other`."""
    if kind == SHARED:
        return raw.cast("d").tolist(), False
    table: list[Any] = orjson.loads(raw)
    if kind == TEXT:
        if cap is None:
            return table, False
        shared = [value if value is None else cap.known(value) for value in table]
        return shared, shared != table
    if kind == LIST:
        if cap is None:
            return [tuple(items) for items in table], False
        lists = [cap.known_many(items) for items in table]
        return lists, any(list(a) != b for a, b in zip(lists, table, strict=True))
    if kind == TALLY:
        return [tally_of(items) for items in table], False
    if kind == MINUTES:
        known = cap.known if cap is not None else str
        return [{known(k): v for k, v in pairs} if pairs else NO_TIME for pairs in table], False
    raise SnapshotError(f"unknown column kind {kind}")


def load_labels(store: ShopperStore, saved: dict[str, Any]) -> None:
    """Label caps as saved, before any shopper's values go through them."""
    by_name = caps(store)
    for name, cap_state in saved.items():
        cap = by_name.get(name)
        if cap is not None:
            cap.load(cap_state["values"], cap_state.get("lists", ()), int(cap_state["overflow"]))


def place(
    store: ShopperStore, columns: Columns, n: int, order: Sequence[int] | None = None
) -> None:
    """Make the shoppers from their columns and put them in the (empty) store, in order; the
    online ones in `order` (positions) or, by default, in the order of all shoppers."""
    if "user_id" not in columns:
        raise SnapshotError("the shoppers have no ids")
    # Timestamps first: action times share their objects.
    names = sorted(FIELDS, key=lambda name: name == "last_action_time")
    blank = Shopper("")
    made: list[Shopper] = []
    # In chunks, so that each chunk's new objects are still in the CPU cache when set.
    for start in range(0, n, _CHUNK):
        end = min(start + _CHUNK, n)
        decoded: dict[str, list[Any]] = {}
        for name in names:
            column = columns.get(name)
            # A field the snapshot predates takes a new shopper's value.
            decoded[name] = (
                column(start, end, decoded) if column else [getattr(blank, name)] * (end - start)
            )
        chunk = list(map(object.__new__, repeat(Shopper, end - start)))
        _fill(chunk, zip(*(decoded[name] for name in FIELDS), strict=True))
        made += chunk
    tables = store.tables()
    tables.shoppers.update(zip(map(attrgetter("user_id"), made), made, strict=True))
    if len(tables.shoppers) != n:
        raise SnapshotError("two shoppers have the same id")
    if order is None:
        online = list(compress(made, map(attrgetter("online"), made)))
    else:
        online = list(map(made.__getitem__, order))
    for shopper in online:
        tables.online.push(shopper)
    # Offline shoppers wait to make room in the order they were last seen, as after an idle sweep.
    for shopper in made:
        if not shopper.online:
            store.capacity.idled(shopper)


FIELDS: Final = Shopper.__slots__
"""Shopper's fields, in the order `_fill` sets them (tests check that it does)."""


def _fill(made: list[Shopper], rows: Iterator[tuple[Any, ...]]) -> None:
    """Set every field of each shopper from its row, in FIELDS order.

    One unpacking statement per shopper: several times faster than a loop over the fields or
    one C loop per field (each a call of the slot's setter).
    """
    for shopper, row in zip(made, rows, strict=True):
        (
            shopper.activity,
            shopper.cart_open,
            shopper.cart_value,
            shopper.changed,
            shopper.clicks,
            shopper.coupons,
            shopper.dashboards_viewed,
            shopper.delivery_window,
            shopper.events_triggered,
            shopper.feature_time,
            shopper.features_used,
            shopper.fingerprint,
            shopper.is_active,
            shopper.items_in_cart,
            shopper.last_action,
            shopper.last_action_time,
            shopper.last_order_at,
            shopper.location,
            shopper.membership,
            shopper.online,
            shopper.order_ids,
            shopper.page_views,
            shopper.products_viewed,
            shopper.queries_run,
            shopper.received,
            shopper.reported,
            shopper.reports_created,
            shopper.scroll_depth,
            shopper.searches,
            shopper.session_seconds,
            shopper.session_started,
            shopper.stages,
            shopper.timestamp,
            shopper.user_id,
            shopper.user_name,
        ) = row


def load_store(store: ShopperStore, state: dict[str, Any], *, recount: bool) -> None:
    """Counters, aggregates (or a recount), recent windows and the last update time."""
    counters = store.counters
    for f in fields(counters):
        if f.name not in state["counters"]:
            continue
        saved, current = state["counters"][f.name], getattr(counters, f.name)
        if isinstance(current, Histogram):
            current.restore(saved)
        elif isinstance(current, dict):
            setattr(counters, f.name, dict(saved))
        else:
            setattr(counters, f.name, type(current)(saved))
    counters.funnel = {stage: int(counters.funnel.get(stage, 0)) for stage in FUNNEL_STAGES}
    saved_aggregates = state.get("aggregates")
    if recount or saved_aggregates is None:
        store.recount()
    else:
        by_name = caps(store)
        aggregates = store.aggregates
        for f in fields(aggregates):
            value = saved_aggregates.get(f.name)
            if isinstance(value, dict):
                cap = by_name.get(f.name.removeprefix("by_"))
                known = cap.known if cap is not None else str
                setattr(aggregates, f.name, {known(k): int(v) for k, v in value.items()})
            elif value is not None:
                setattr(aggregates, f.name, int(value))
    for name, window in state.get("windows", {}).items():
        current = getattr(store, name, None)
        if isinstance(current, Recent):
            current.restore(window)
    capacity = state.get("capacity", {})
    store.capacity.evicted = int(capacity.get("evicted", 0))
    store.capacity.refused = int(capacity.get("refused", 0))
    store.last_update = state.get("lastUpdate")
    store.fit()


def load_rest(ingestor: Ingestor, log_state: dict[str, Any], ingest: dict[str, Any]) -> None:
    """The event log and the ingest counters of the JSON-era formats."""
    load_log(ingestor, log_state)
    load_ingest(ingestor, ingest)


def load_log(ingestor: Ingestor, log_state: dict[str, Any]) -> None:
    """An event log saved as one list of events (sharing strings with the shoppers and caps)."""
    shoppers = ingestor.store.tables().shoppers
    labels = {value: value for cap in caps(ingestor.store).values() for value in cap.values()}
    for row in log_state["events"]:
        # [id, ts_ns, type, user_id, user_name, at, props]
        row[2] = sys.intern(row[2])
        shopper = shoppers.get(row[3])
        if shopper is not None:
            row[3] = shopper.user_id
            if row[4] == shopper.user_name:
                row[4] = shopper.user_name
        props = row[6]
        for key in ("location", "activity", "membership"):
            value = props.get(key)
            if isinstance(value, str):
                props[key] = labels.get(value, value)
    ingestor.log.import_state(log_state)


def load_ingest(ingestor: Ingestor, ingest: dict[str, Any]) -> None:
    """The ingest counters: records received by transport, refused by transport and reason."""
    ingestor.received.update({str(k): int(v) for k, v in ingest.get("received", {}).items()})
    for transport, reason, n in ingest.get("rejected", []):
        ingestor.rejected[(str(transport), str(reason))] = int(n)
