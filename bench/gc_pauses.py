"""What a full garbage collection costs once a snapshot writer has ended: unfrozen or kept frozen.

    .venv/bin/python bench/gc_pauses.py [--shoppers 200000,1000000]

In one process per size: a store of N shoppers is ingested and the collector tuned as the
service does; then the objects a full collection scans and its time, (1) with the state kept
frozen as exporter/gc_policy does after a writer ends (one turn, then `gc.collect()`), and (2)
as before, the state unfrozen when the writer ended (`gc.unfreeze()`, then `gc.collect()`).
Also the search index's first sync over the same store, the other long step after a restart.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from compare import load_average, machine  # noqa: E402
from page_bench import crowd, iso_now  # noqa: E402

from exporter.cli import tune_collector  # noqa: E402
from exporter.eventlog import EventLog, Hub  # noqa: E402
from exporter.finder import ShopperFinder  # noqa: E402
from exporter.gc_policy import GcPolicy  # noqa: E402
from exporter.ingest import Ingestor  # noqa: E402
from exporter.settings import Settings  # noqa: E402
from exporter.store import ShopperStore  # noqa: E402


def full_collection() -> tuple[int, float]:
    """Objects a full collection scans now, and its milliseconds."""
    scanned = len(gc.get_objects())
    started = time.perf_counter()
    gc.collect()
    return scanned, (time.perf_counter() - started) * 1000


def one(shoppers: int) -> str:
    settings = Settings()
    store = ShopperStore(settings)
    ingestor = Ingestor(settings, store, EventLog(), Hub())
    records = crowd(shoppers, iso_now())
    for start in range(0, len(records), 10_000):
        ingestor.ingest(records[start : start + 10_000], "http")
    del records
    tune_collector()
    policy = GcPolicy(store.__len__)
    policy.start()
    started = time.perf_counter()
    ShopperFinder(store).sync()
    index_ms = (time.perf_counter() - started) * 1000
    policy.tend()  # a writer ended: one turn
    kept = full_collection()
    frozen = gc.get_freeze_count()
    gc.unfreeze()  # a writer ended, as before
    unfrozen = full_collection()
    policy.stop()
    return (
        f"| {shoppers:,} | {frozen:,} | {kept[0]:,} objects, {kept[1]:,.1f} ms "
        f"| {unfrozen[0]:,} objects, {unfrozen[1]:,.1f} ms | {index_ms:,.0f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shoppers", default="200000,1000000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(one(args.one), flush=True)
        return
    print(f"Machine: {machine()}; load average at start {load_average()}")
    print()
    print(
        "| Shoppers | Frozen objects | Full collection, state kept frozen "
        "| Full collection, state unfrozen | Search index's first sync |"
    )
    print("|---|---|---|---|---|")
    for n in args.shoppers.split(","):
        # A fresh process per size: frozen objects of one size never count in the next.
        subprocess.run([sys.executable, __file__, "--one", n], check=True)
    print(f"\nLoad average at end {load_average()}")


if __name__ == "__main__":
    main()
