"""The garbage collector kept off the long-lived state, and every collection's pause timed.

CPython's full collection scans every tracked object: at a million shoppers that stops the loop
for seconds. So the state lives in the permanent generation (`gc.freeze()`), which collections
never scan: every `TEND_EVERY` seconds what is alive is collected once (only the objects made
since the last turn are scanned) and frozen. The cost is that an object frozen while alive that
later becomes cyclic garbage is never collected; that garbage is bounded by a full collection of
everything, run only when the frozen objects outgrow those found alive by the last one (and what
the shoppers added since bring) by `GROWTH` (CPython's own rule for full collections) plus
`SLACK`, and never while a snapshot writer shares the pages.

Counting the frozen objects walks every one of them (about 0.15 µs each, so hundreds of
milliseconds at a million shoppers): a turn counts them only once the interpreter's allocated
blocks (`sys.getallocatedblocks`, a walk over arenas, not objects) grew by as much as the frozen
objects still may (and by `GROWTH` at least), which frozen garbage cannot do without.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from exporter.tallies import Histogram

log = logging.getLogger(__name__)

TEND_EVERY: Final = 1.0
"""Seconds between turns: what the last turn left unfrozen is what a collection can scan."""
GROWTH: Final = 0.25
SLACK: Final = 200_000
"""Frozen objects allowed past the growth bound: cheap to scan, whatever the state's size."""
PER_SHOPPER: Final = 4
"""Frozen objects a new shopper may bring while the state is too small to measure its ratio."""
MEASURED: Final = 1000
"""Shoppers from which the frozen objects per shopper are measured rather than assumed."""
PAUSE_BOUNDS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOW_PAUSE: Final = 0.1
"""A collection pausing the service this long is logged."""


class GcPolicy:
    """Times every collection by generation, and keeps long-lived objects frozen and bounded."""

    def __init__(self, size: Callable[[], int] = lambda: 0) -> None:
        self.size = size
        """How big the state is now (tracked shoppers): frozen objects may grow with it."""
        self.pauses = [Histogram(PAUSE_BOUNDS) for _ in range(3)]
        self.reclaims = 0
        """Full collections of the frozen objects, run because they outgrew the bound."""
        self.clean, self.clean_size = gc.get_freeze_count(), 0
        """Frozen objects (all alive) and the state's size, at the last full collection."""
        self.frozen = self.clean
        """Frozen objects at the last count."""
        self._blocks = sys.getallocatedblocks()
        """Allocated blocks at the last count."""
        self.writer_at_work: Callable[[], bool] = lambda: False
        """Whether a forked writer shares the pages now (a full collection would copy them)."""
        self._started = 0.0

    @property
    def bound(self) -> int:
        """Frozen objects past which the next turn collects them all: those alive at the last
        full collection, plus what the shoppers added since bring (at the ratio then measured;
        `PER_SHOPPER` before a state was measured), plus a quarter and `SLACK`."""
        added = max(0, self.size() - self.clean_size)
        per = self.clean / self.clean_size if self.clean_size >= MEASURED else PER_SHOPPER
        return int((self.clean + added * per) * (1 + GROWTH)) + SLACK

    def start(self) -> None:
        """Time collections from now on; what is frozen now (startup, a restored state) is
        taken as alive."""
        self.clean, self.clean_size = gc.get_freeze_count(), self.size()
        self._counted(self.clean)
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def stop(self) -> None:
        """Stop timing collections."""
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def tend(self) -> bool:
        """One turn: collect what was made since the last one and freeze what survives; when the
        frozen objects outgrew the bound (and no writer shares the pages), collect them all
        first. True if that full collection ran."""
        if self.writer_at_work() or not self._may_be_past_bound():
            return self._collect_young()
        self._collect_young()
        started = time.perf_counter()
        frozen, bound = gc.get_freeze_count(), self.bound
        took = time.perf_counter() - started
        (log.info if took >= SLOW_PAUSE else log.debug)(
            "counted %d frozen objects (bound %d) in %.2f s", frozen, bound, took
        )
        if frozen <= bound:
            self._counted(frozen)
            return False
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.clean, self.clean_size = gc.get_freeze_count(), self.size()
        self._counted(self.clean)
        self.reclaims += 1
        log.info(
            "collected all %d frozen objects (bound %d): %d remain, in %.2f s",
            frozen,
            bound,
            self.clean,
            time.perf_counter() - started,
        )
        return True

    def _collect_young(self) -> bool:
        """Collect what was made since the last turn and freeze what survives."""
        gc.collect()
        gc.freeze()
        return False

    def _may_be_past_bound(self) -> bool:
        """Whether the heap grew enough since the last count for the frozen objects to have
        passed their bound (every frozen object small enough to be garbage is a block)."""
        # And at least `GROWTH` of the heap between counts, so counts come at most
        # geometrically often while the state grows (each is a walk over all of it); the
        # bound then holds within that much.
        allowance = max(self.bound - self.frozen, int(self._blocks * GROWTH), SLACK // 4)
        return sys.getallocatedblocks() - self._blocks > allowance

    def _counted(self, frozen: int) -> None:
        self.frozen, self._blocks = frozen, sys.getallocatedblocks()

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = min(2, int(info.get("generation", 2)))
        self.pauses[generation].observe(pause)
        if pause >= SLOW_PAUSE:
            log.warning(
                "garbage collection of generation %d paused the service %.0f ms (%d collected)",
                generation,
                pause * 1000,
                info.get("collected", 0),
            )
