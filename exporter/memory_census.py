"""An allocation census: where the process's memory was allocated, by file and line, beside RSS,
the garbage collector's counts and how many objects of the project's own types are alive."""

from __future__ import annotations

import collections
import gc
import os
import sys
import tracemalloc
from typing import Any, Final

FRAMES: Final = 1
"""Frames kept per allocation: the allocating line is what a census reports; deeper tracebacks
cost memory for every live block."""
PROJECT: Final = "exporter"
"""Module prefix of the project's own types."""
TOP_TYPES: Final = 15
"""Most numerous types of any origin reported beside the project's own."""


def start() -> bool:
    """Trace allocations from now on; False if they were traced already (someone else owns it)."""
    if tracemalloc.is_tracing():
        return False
    tracemalloc.start(FRAMES)
    return True


def stop() -> None:
    """Stop tracing and free the traces."""
    tracemalloc.stop()


def rss_bytes() -> int:
    """This process's resident set size, from /proc (0 where there is no /proc)."""
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def allocation_sites(top: int) -> list[dict[str, Any]]:
    """Live traced memory grouped by the allocating file and line, largest first (`top` of
    them; 0 = every site). The snapshot is reduced to its lines at once and dropped: its
    per-block traces would otherwise stay alive as long as the reply."""
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    del snapshot
    chosen = stats if top <= 0 else stats[:top]
    return [
        {
            "site": f"{_short(frame.filename)}:{frame.lineno}",
            "bytes": stat.size,
            "blocks": stat.count,
        }
        for stat in chosen
        for frame in (stat.traceback[0],)
    ]


def _short(filename: str) -> str:
    """A source file's path from the import root it was found under (`exporter/store.py`,
    `aiohttp/web_protocol.py`, `asyncio/events.py`)."""
    roots = [root for root in sys.path if root and filename.startswith(root + os.sep)]
    if not roots:
        return filename
    return filename[len(max(roots, key=len)) + 1 :]


def object_counts() -> tuple[dict[str, int], dict[str, int]]:
    """Live objects the collector tracks, by type: the project's own types (all of them), and
    the most numerous types of any origin. The permanent generation (the frozen state) is
    counted too: it is unfrozen for the walk and frozen again, as a turn of the collection
    policy would leave it, after collecting what is garbage among the unfrozen objects."""
    gc.collect()
    gc.unfreeze()
    try:
        counts = collections.Counter(type(obj) for obj in gc.get_objects())
    finally:
        gc.freeze()
    ours = {type_name(kind): n for kind, n in counts.items() if _module(kind) == PROJECT}
    common = {type_name(kind): n for kind, n in counts.most_common(TOP_TYPES)}
    return dict(sorted(ours.items(), key=lambda item: -item[1])), common


def _module(kind: type) -> str:
    """The top package a type was defined in ("" when it does not say: some C types)."""
    module = getattr(kind, "__module__", "")
    return module.split(".", 1)[0] if isinstance(module, str) else ""


def type_name(kind: type) -> str:
    """`module.QualifiedName` of a type (builtins by their bare name)."""
    module = getattr(kind, "__module__", "")
    prefix = f"{module}." if isinstance(module, str) and module != "builtins" else ""
    return prefix + kind.__qualname__


def collector_view() -> dict[str, Any]:
    """The garbage collector's own counts: per generation, frozen, and uncollectable."""
    return {
        "counts": list(gc.get_count()),
        "thresholds": list(gc.get_threshold()),
        "generations": gc.get_stats(),
        "frozen": gc.get_freeze_count(),
        "garbage": len(gc.garbage),
    }


def census(top: int, count_objects: bool = True) -> dict[str, Any]:
    """One census of the process: RSS, traced memory and its top sites, the collector's view,
    and object counts by type (None when not to be counted). Sites are empty when allocations
    are not traced."""
    tracing = tracemalloc.is_tracing()
    sites = allocation_sites(top) if tracing else []
    current, peak = tracemalloc.get_traced_memory() if tracing else (0, 0)
    overhead = tracemalloc.get_tracemalloc_memory() if tracing else 0
    ours, common = object_counts() if count_objects else (None, None)
    return {
        "rss": rss_bytes(),
        "tracing": tracing,
        "traced": {"current": current, "peak": peak, "overhead": overhead},
        "allocatedBlocks": sys.getallocatedblocks(),
        "gc": collector_view(),
        "objects": ours,
        "commonObjects": common,
        "sites": sites,
    }
