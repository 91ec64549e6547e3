"""The live writer's shared batches: encoded once per pass, held within a byte bound."""

from __future__ import annotations

from exporter.api.fanout import SharedBatches
from exporter.api.live import FrameFilter
from exporter.api.stream import SSE
from exporter.eventlog import Frame

EVERYTHING = FrameFilter()


def frames(start: int, count: int, size: int = 1000) -> list[Frame]:
    return [
        Frame("event", i, data='{"pad":"' + "x" * size + '"}') for i in range(start, start + count)
    ]


def test_readers_of_one_pass_share_one_encoding() -> None:
    batches = SharedBatches()
    batch = frames(0, 10)
    first = batches.encode(SSE, EVERYTHING, batch)
    assert batches.encode(SSE, EVERYTHING, list(batch)) is first
    assert b'"pad"' in first


def test_held_batches_stay_within_their_byte_bound_under_a_steady_stream() -> None:
    batches = SharedBatches(max_bytes=200_000)
    passes = [frames(i * 50, 50) for i in range(400)]
    encoded = [batches.encode(SSE, EVERYTHING, batch) for batch in passes]
    assert all(len(data) > 50_000 for data in encoded)  # each batch a quarter of the bound
    assert batches.held_bytes <= 200_000
    assert len(batches) == 200_000 // len(encoded[0])  # the newest that fit, no more
    assert batches.encode(SSE, EVERYTHING, passes[-1]) is encoded[-1]  # still shared


def test_a_batch_larger_than_the_bound_is_still_shared_until_the_next() -> None:
    batches = SharedBatches(max_bytes=10_000)
    big = frames(0, 50)
    first = batches.encode(SSE, EVERYTHING, big)
    assert len(first) > 10_000
    assert batches.encode(SSE, EVERYTHING, big) is first
    after = batches.encode(SSE, EVERYTHING, frames(50, 50))
    assert len(batches) == 1
    assert batches.held_bytes == len(after)
