"""The expiry sweep: a great many sessions falling due at once end in slices, with the loop free
between them."""

from __future__ import annotations

import asyncio

from snapshot_shapes import T0, Clock, make_ingestor, record

from exporter.app import SWEEP_SLICE, _sweep
from exporter.settings import Settings


async def test_a_mass_expiry_ends_every_session_and_yields_between_slices() -> None:
    """2.5 slices' worth of shoppers idle at once: one sweep ends every session, and another
    task runs between its slices."""
    clock = Clock()
    ingestor = make_ingestor(Settings(), clock)
    shoppers = SWEEP_SLICE * 5 // 2
    for start in range(0, shoppers, 1000):
        batch = [record(f"s{n}", 0) for n in range(start, min(start + 1000, shoppers))]
        ingestor.ingest(batch, "http")
    assert ingestor.store.aggregates.active == shoppers
    clock.now = T0 + Settings().active_window + 1
    turns = 0
    stop = asyncio.Event()

    async def other_work() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    await _sweep(ingestor)
    during = turns - before
    stop.set()
    await other
    assert ingestor.store.aggregates.active == 0
    assert ingestor.store.counters.sessions_ended == shoppers
    assert during >= 2  # once after each of the first two slices
