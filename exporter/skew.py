"""The clock-skew rule: records stamped too far ahead of the service's clock are refused.

A shopper's state only moves forward in time, so one record from the future would make every
later record of that shopper look stale, for good. What the service keeps is never ahead of its
clock by more than the limit; a state that is (restored from before the rule) yields to the next
valid record.
"""

from __future__ import annotations

from typing import Final

from exporter.model import FieldError
from exporter.views import iso_time

FUTURE: Final = "future"
"""The reason such records are counted under (`shopper_updates_rejected_total{reason}`)."""


class ClockSkew:
    """How far ahead of the service's clock a record's time may be."""

    __slots__ = ("limit",)

    def __init__(self, limit: float) -> None:
        self.limit = limit
        """Seconds (--max-clock-skew)."""

    def horizon(self, now: float) -> float:
        """The latest time a record may carry at `now`."""
        return now + self.limit

    def refusal(self, at: float, now: float, field: str = "timestamp") -> FieldError:
        """Why a record stamped `at` is refused at `now`."""
        return FieldError(
            field,
            f"in the future: {iso_time(at) or 'the time'} is {at - now:,.0f} s ahead of the "
            f"service's clock; at most {self.limit:g} s are allowed (--max-clock-skew)",
        )

    def trusted(self, stored: float, now: float) -> bool:
        """Whether a stored time is within the limit (one beyond it yields to new records)."""
        return stored <= now + self.limit
