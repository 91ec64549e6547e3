"""Restart safety: periodic atomic snapshots of the state, restored at start.

A snapshot holds the shoppers, the counters (so Prometheus sees them carry on, not reset), the
label caps, the recent-window buckets and the event log. It is written to a temporary file,
fsynced, and renamed over the previous one, so a crash leaves either the old or the new snapshot.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from exporter.eventlog import EventLog
from exporter.ingest import Ingestor

FORMAT = 1
log = logging.getLogger(__name__)


class SnapshotError(Exception):
    """A snapshot file that cannot be used."""


def capture(ingestor: Ingestor) -> dict[str, Any]:
    """The whole state as plain data (runs on the loop, so it is consistent)."""
    return {
        "format": FORMAT,
        "savedAt": time.time(),
        "store": ingestor.store.export_state(),
        "eventLog": ingestor.log.export_state(),
        "received": ingestor.received,
        "rejected": [[t, r, n] for (t, r), n in ingestor.rejected.items()],
    }


def restore(ingestor: Ingestor, state: dict[str, Any]) -> None:
    """Load a captured state into a fresh ingestor, its store and its log."""
    if state.get("format") != FORMAT:
        raise SnapshotError(f"unknown snapshot format {state.get('format')!r}")
    ingestor.store.import_state(state["store"])
    log_state = state["eventLog"]
    event_log: EventLog = ingestor.log
    event_log.import_state(log_state)
    ingestor.received.update({str(k): int(v) for k, v in state.get("received", {}).items()})
    for transport, reason, n in state.get("rejected", []):
        ingestor.rejected[(str(transport), str(reason))] = int(n)


def write_atomic(path: Path, payload: bytes) -> None:
    """Write, fsync, rename, fsync the folder: the file is always a whole snapshot."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read(path: Path) -> dict[str, Any] | None:
    """The snapshot at `path`, None if there is none; a corrupt one is moved aside and reported."""
    if not path.exists():
        return None
    try:
        state = orjson.loads(path.read_bytes())
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise SnapshotError("not a snapshot of this service")
        return state
    except (orjson.JSONDecodeError, SnapshotError, OSError) as err:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        path.replace(aside)
        raise SnapshotError(f"{path} is unreadable ({err}); kept as {aside}") from None


def load(path: Path, fresh: Callable[[], Ingestor]) -> Ingestor:
    """A fresh ingestor holding the snapshot at `path`; empty (file kept aside) if unusable."""
    ingestor = fresh()
    try:
        state = read(path)
        if state is None:
            log.info("no snapshot at %s; starting empty", path)
            return ingestor
        restore(ingestor, state)
    except SnapshotError as err:
        log.error("%s; starting empty", err)
        return fresh()
    except (KeyError, TypeError, ValueError, IndexError) as err:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        path.replace(aside)
        log.error("snapshot %s does not fit (%r); kept as %s; starting empty", path, err, aside)
        return fresh()
    log.info(
        "restored %d shoppers and %d events from %s",
        len(ingestor.store),
        len(ingestor.log),
        path,
    )
    return ingestor


def save(path: Path, state: dict[str, Any]) -> None:
    """Encode and write a captured state (safe to run in a worker thread)."""
    write_atomic(path, orjson.dumps(state))
