"""Why a valid record changed nothing: ignored (stale, duplicate) or refused for lack of room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from exporter.views import iso_time

STALE: Final = "stale"
DUPLICATE: Final = "duplicate"
CAPACITY: Final = "capacity"


@dataclass(frozen=True, slots=True)
class Unapplied:
    """A valid record the store did not apply, and why.

    `stale` and `duplicate` records are ignored (the state already holds what they say);
    `capacity` records are refused (no room for a new shopper: the sender may retry later).
    """

    reason: str
    message: str
    at: float | None = None
    """The record's time (stale records)."""
    stored: float | None = None
    """The time of the state it is older than (stale records)."""

    @property
    def refused(self) -> bool:
        return self.reason == CAPACITY

    def to_json(self, index: int, kind: str) -> dict[str, Any]:
        """One entry of a reply's `ignoredRecords`."""
        body: dict[str, Any] = {
            "index": index,
            "kind": kind,
            "reason": self.reason,
            "message": self.message,
        }
        if self.at is not None:
            body["timestamp"] = iso_time(self.at)
        if self.stored is not None:
            body["storedTimestamp"] = iso_time(self.stored)
        return body


def stale(at: float, stored: float) -> Unapplied:
    """An update older than the stored state of its shopper."""
    return Unapplied(
        STALE,
        f"older than the stored state: the record is stamped {iso_time(at)}, "
        f"the stored state {iso_time(stored)}",
        at,
        stored,
    )


def duplicate(message: str) -> Unapplied:
    """A record that repeats what was already counted."""
    return Unapplied(DUPLICATE, message)


def no_room(limit: int) -> Unapplied:
    """A new shopper's record while every tracked shopper is online and the store is full."""
    return Unapplied(
        CAPACITY,
        f"the service tracks its limit of {limit} shoppers (--max-shoppers) and every one of "
        "them is online; retry later",
    )
