"""Restart safety: the state saved whole to one file, and read back into a fresh service at start.

A snapshot holds the shoppers, the counters (so Prometheus sees them carry on, not reset), the
label caps, the aggregates, the recent-window buckets, the event log and the ingest counters, all
as they were at one instant (exporter.snapshot_writer takes that instant without stopping the
service). Its format is exporter.snapshot_file's; files of older formats are still read. A
file that cannot be used is kept aside under another name, the reason is logged, and the service
starts empty.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from exporter import snapshot_codec, snapshot_legacy
from exporter.ingest import Ingestor
from exporter.snapshot_file import SnapshotError, is_snapshot, leftovers, sections, write_atomic

log = logging.getLogger(__name__)


class Restored(NamedTuple):
    """What `load` found: the ingestor holding it, when it was taken and its size."""

    ingestor: Ingestor
    taken_at: float | None
    size: int


def save(path: Path, ingestor: Ingestor, pause: float = 0.0) -> int:
    """Write the state now, in this process (the state must not change meanwhile); its size."""
    taken_at = time.time()
    return write_atomic(path, lambda out: snapshot_codec.write(out, ingestor, taken_at), pause)


def load(path: Path, fresh: Callable[[], Ingestor]) -> Restored:
    """A fresh ingestor holding the snapshot at `path`; empty (file kept aside) if unusable."""
    for tmp in leftovers(path):
        log.warning("removing %s, left by a snapshot writer that did not finish", tmp)
        with contextlib.suppress(OSError):
            tmp.unlink()
    if not path.exists():
        log.info("no snapshot at %s; starting empty", path)
        return Restored(fresh(), None, 0)
    started, cpu = time.perf_counter(), time.process_time()
    collecting = gc.isenabled()
    # Millions of new objects, none of them garbage: collections would only rescan them.
    gc.disable()
    ingestor = fresh()
    try:
        data = path.read_bytes()
        meta = _read(data, ingestor)
        _keep_own_shoppers(ingestor, meta.get("shard"))
    except SnapshotError as err:
        _set_aside(path, err.suffix, f"{path} cannot be used: {err}")
        return Restored(fresh(), None, 0)
    except (OSError, KeyError, TypeError, ValueError, IndexError) as err:
        _set_aside(path, "corrupt", f"{path} is unreadable or does not fit ({err!r})")
        return Restored(fresh(), None, 0)
    finally:
        if collecting:
            gc.enable()
    log.info(
        "restored %d shoppers and %d events from %s (%.1f MiB) in %.2f s (%.2f s of CPU)",
        len(ingestor.store),
        len(ingestor.log),
        path,
        len(data) / 2**20,
        time.perf_counter() - started,
        time.process_time() - cpu,
    )
    taken_at = meta.get("savedAt")
    return Restored(ingestor, float(taken_at) if taken_at is not None else None, len(data))


def _keep_own_shoppers(ingestor: Ingestor, saved_shard: object) -> None:
    """A state saved under another sharding keeps only the shoppers this replica owns now, so
    the shard check may trust every tracked shopper (see Ingestor). Pseudonyms hide the ids
    the shards are reckoned from: those states are kept whole."""
    shard = ingestor.shard
    if shard is None or saved_shard == str(shard) or ingestor.pseudonyms is not None:
        return
    store = ingestor.store
    foreign = [uid for uid in store.tables().shoppers if shard.owner(uid) != shard.index]
    for user_id in foreign:
        store.erase(user_id)
    log.warning(
        "the snapshot was taken as shard %s; as shard %s this replica keeps %d of its shoppers "
        "and lets go of %d that other shards own",
        saved_shard or "(none)",
        shard,
        len(store),
        len(foreign),
    )


def _read(data: bytes, ingestor: Ingestor) -> dict[str, Any]:
    if is_snapshot(data):
        return snapshot_codec.read(sections(data), ingestor)
    if data[:1] == b"{":
        try:
            state = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise SnapshotError(f"not JSON ({err})") from None
        if not isinstance(state, dict):
            raise SnapshotError("not a snapshot of this service")
        return snapshot_legacy.read(state, ingestor)
    raise SnapshotError("not a snapshot of this service")


def _set_aside(path: Path, suffix: str, reason: str) -> None:
    aside = path.with_name(f"{path.name}.{suffix}-{int(time.time())}")
    try:
        path.replace(aside)
    except OSError as err:
        log.error("%s; could not keep it aside (%s); starting empty", reason, err)
        return
    log.error("%s; kept as %s; starting empty", reason, aside)
