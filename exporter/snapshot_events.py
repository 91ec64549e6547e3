"""The event log in a snapshot: its packed blocks written as they are held and read back as they
were, so no event is rebuilt or packed again on either side.

Sections: `events.meta` (JSON: ids, times and each block's base, length, types and detail
keys), `events.who` (each block's shoppers as a JSON array of its own, `[id, name, id, name,
...]`, end to end; the meta gives each one's byte length) and the blocks' columns end to end,
one section each (`events.ts`, `.at`, `.kinds`, `.users`, `.shapes`, `.offsets`, `.blob`). A
block's offsets are its own (one more than its events), so its slice of the blob is found by
its last offset.

The shoppers are read a block at a time, not with the meta, for the memory a restore leaves
behind: an hour of events names hundreds of thousands of shoppers, and decoding them all at
once made strings that were garbage a moment later (each is shared with the restored shopper
of that id), spread over pages that the objects kept meanwhile then held on to (about 30 MiB
of RSS at 200k shoppers). Format 3 kept them in the meta; it is still read.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from exporter.eventblock import Block, Shape
from exporter.eventlog import EventLog
from exporter.snapshot_file import SectionWriter, SnapshotError
from exporter.store import Shopper

COLUMNS: Final = (("ts", "q"), ("at", "d"), ("kinds", "H"), ("users", "H"), ("shapes", "H"))
"""The per-event columns of a block, each with its array typecode; then offsets and blob."""


def write(out: SectionWriter, log: EventLog) -> None:
    """The log's blocks and where its ids and times stand."""
    blocks = log.blocks()
    who = [orjson.dumps([name for pair in block.user_table for name in pair]) for block in blocks]
    meta = {
        "first": log.first_id,
        "nextId": log.last_id + 1,
        "lastNs": log.last_ns,
        "blocks": [
            {
                "base": block.base,
                "length": len(block),
                "kinds": block.kind_table,
                "whoBytes": len(names),
                "shapes": block.shape_table,
            }
            for block, names in zip(blocks, who, strict=True)
        ],
    }
    out.section("events.meta", orjson.dumps(meta))
    out.section("events.who", b"".join(who))
    for name, typecode in (*COLUMNS, ("offsets", "I")):
        column: array[Any] = array(typecode)
        for block in blocks:
            column.extend(getattr(block, name))
        out.section(f"events.{name}", column)
    out.section("events.blob", b"".join(block.blob for block in blocks))


def present(found: Mapping[str, memoryview]) -> bool:
    """Whether a snapshot holds its event log this way (format 3 on)."""
    return "events.meta" in found


def read(found: Mapping[str, memoryview], log: EventLog, shoppers: Mapping[str, Shopper]) -> None:
    """Load the blocks into an empty log, sharing strings with the restored shoppers."""
    meta: dict[str, Any] = orjson.loads(found["events.meta"])
    columns = {name: _Column(found, name, typecode) for name, typecode in COLUMNS}
    offsets = _Column(found, "offsets", "I")
    blob = found["events.blob"]
    shared = _Sharing(shoppers)
    who = found.get("events.who")
    blocks: list[Block] = []
    at = offset_at = blob_at = who_at = 0
    for entry in meta["blocks"]:
        length = int(entry["length"])
        if length < 1:
            raise SnapshotError("an event block holds no events")
        ts, when, kinds, users, shapes = (columns[name].take(at, length) for name, _ in COLUMNS)
        block_offsets = offsets.take(offset_at, length + 1)
        size = block_offsets[-1]
        if blob_at + size > len(blob):
            raise SnapshotError("the event blob is cut short")
        pairs: Iterable[Sequence[str]]
        if "users" in entry:  # format 3
            pairs = entry["users"]
        else:
            if who is None:
                raise SnapshotError("the events' shoppers are missing")
            who_size = int(entry["whoBytes"])
            names = orjson.loads(who[who_at : who_at + who_size])
            who_at += who_size
            pairs = zip(names[0::2], names[1::2], strict=True)
        tables = (
            [sys.intern(str(kind)) for kind in entry["kinds"]],
            [shared.who(str(uid), str(name)) for uid, name in pairs],
            [shared.shape(shape) for shape in entry["shapes"]],
        )
        parts = (ts, when, kinds, users, shapes, block_offsets)
        packed = bytes(blob[blob_at : blob_at + size])
        blocks.append(Block.sealed_from(int(entry["base"]), parts, packed, tables))
        at += length
        offset_at += length + 1
        blob_at += size
    log.adopt(blocks, int(meta["first"]), int(meta["nextId"]), int(meta["lastNs"]))


class _Column:
    """One column section, read a block's slice at a time."""

    def __init__(self, found: Mapping[str, memoryview], name: str, typecode: str) -> None:
        self.name = name
        self.typecode = typecode
        self.width = array(typecode).itemsize
        self.raw = found[f"events.{name}"]

    def take(self, start: int, count: int) -> array[Any]:
        """`count` values from value `start` on, as an array of their own."""
        values: array[Any] = array(self.typecode)
        values.frombytes(self.raw[start * self.width : (start + count) * self.width])
        if len(values) != count:
            raise SnapshotError(f"the event column {self.name} is cut short")
        return values


class _Sharing:
    """One string object per shopper id, name and props key, as live ingest holds them."""

    def __init__(self, shoppers: Mapping[str, Shopper]) -> None:
        self._shoppers = shoppers
        self._shapes: dict[tuple[str, ...], Shape] = {}

    def who(self, user_id: str, user_name: str) -> tuple[str, str]:
        shopper = self._shoppers.get(user_id)
        if shopper is None:
            return user_id, user_name
        name = shopper.user_name if user_name == shopper.user_name else user_name
        return shopper.user_id, name

    def shape(self, keys: list[str]) -> Shape:
        shape = tuple(sys.intern(str(key)) for key in keys)
        return self._shapes.setdefault(shape, shape)
