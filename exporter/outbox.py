"""A producer's records by shard: split a batch, hold a down shard's records, merge the replies."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from exporter.sharding import shard_of

DEFAULT_QUEUE_LIMIT = 100_000
"""Records held for one down shard before the oldest are dropped."""


OWNERS_REMEMBERED = 65_536
"""Shoppers whose shard a producer remembers (a few MiB): the hash is pure Python, about 8 µs
a record here, and a producer sends the same shoppers again and again."""


def owner_of(record: Mapping[str, Any], count: int) -> int:
    """The shard of a record's `userId`; a record without a usable one goes to shard 0, whose
    replica refuses it by field (so the producer hears why)."""
    user_id = record.get("userId")
    return _remembered_shard(user_id, count) if isinstance(user_id, str) else 0


@lru_cache(maxsize=OWNERS_REMEMBERED)
def _remembered_shard(user_id: str, count: int) -> int:
    return shard_of(user_id, count)


@dataclass(slots=True)
class Part:
    """One shard's share of a batch: its records, and where each sat in the original batch."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    metric_at: list[int] = field(default_factory=list)
    event_at: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.metrics) + len(self.events)


def split(
    metrics: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]], count: int
) -> dict[int, Part]:
    """The batch's records by owning shard, in their order (shards without records left out)."""
    parts: dict[int, Part] = {}
    for at, metric in enumerate(metrics):
        part = parts.setdefault(owner_of(metric, count), Part())
        part.metrics.append(dict(metric))
        part.metric_at.append(at)
    for at, event in enumerate(events):
        part = parts.setdefault(owner_of(event, count), Part())
        part.events.append(dict(event))
        part.event_at.append(at)
    return parts


def empty_report() -> dict[str, Any]:
    return {"accepted": 0, "ignored": 0, "ignoredRecords": [], "rejected": [], "queued": 0}


def merge(total: dict[str, Any], reply: Mapping[str, Any], part: Part) -> None:
    """Add one shard's reply to the batch's report, with indexes back in the batch's terms."""
    total["accepted"] += int(reply.get("accepted", 0))
    total["ignored"] += int(reply.get("ignored", 0))
    positions = {"metric": part.metric_at, "event": part.event_at}
    for key in ("ignoredRecords", "rejected"):
        for entry in reply.get(key, []):
            at = positions.get(str(entry.get("kind")), [])
            index = entry.get("index")
            if isinstance(index, int) and 0 <= index < len(at):
                entry = {**entry, "index": at[index]}
            total[key].append(entry)


class Outbox:
    """Records waiting for a shard that could not be reached, oldest first, at most `limit`.

    When it is full the oldest are dropped (and counted): a shard down for long must not take the
    producer's memory with it.
    """

    def __init__(self, limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        self.limit = limit
        self.metrics: deque[dict[str, Any]] = deque()
        self.events: deque[dict[str, Any]] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.metrics) + len(self.events)

    def hold(self, metrics: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]]) -> None:
        """Keep records to send later; drop the oldest past the limit."""
        self.metrics.extend(metrics)
        self.events.extend(events)
        while len(self) > self.limit:
            # Updates first: a later update carries the state on; an event is a fact of its own.
            (self.metrics if self.metrics else self.events).popleft()
            self.dropped += 1

    def take(self, most: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Up to `most` held records (updates, then events), removed from the box."""
        metrics = [self.metrics.popleft() for _ in range(min(most, len(self.metrics)))]
        room = most - len(metrics)
        events = [self.events.popleft() for _ in range(min(room, len(self.events)))]
        return metrics, events

    def put_back(self, metrics: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        """Return taken records to the front (the send failed), in their order."""
        self.metrics.extendleft(reversed(metrics))
        self.events.extendleft(reversed(events))
