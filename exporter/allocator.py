"""Large blocks go straight back to the system when freed, so RSS follows what the service holds.

glibc serves big allocations (request bodies, the tables of the shopper maps) from its heap once
the first of them is freed: its mmap threshold grows to the largest block freed so far. Under
steady churn (shoppers forgotten and new ones taken in under --max-shoppers) the heap then keeps
the holes, and RSS creeps up with nothing held (bench/RESULTS.md, "Identity flood"). A fixed
threshold keeps every block of 128 KiB or more in its own mapping, returned when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
LARGE = 128 * 1024
"""Bytes from which a block gets its own mapping (glibc's initial threshold, kept fixed)."""


def keep_large_blocks_apart() -> bool:
    """Fix glibc's mmap and trim thresholds; False where the C library has no `mallopt`."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl): nothing to tune
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, LARGE)) and bool(mallopt(M_TRIM_THRESHOLD, LARGE))
    if not done:
        log.debug("mallopt refused the thresholds; the allocator keeps its defaults")
    return done
