"""Bounded label values: each Prometheus label keeps at most `cap` distinct values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

OTHER: Final = "other"
UNKNOWN: Final = "unknown"
SHARED_MAPPINGS: Final = 1024
"""Mappings `LabelCap.keyed` keeps to share before it starts over (each a few hundred bytes)."""


class LabelCap:
    """Maps raw values to label values; past the cap, new values become `other` and are counted.

    The value returned is the one stored, so every shopper with the same activity shares one
    string object (this is most of what keeps a tracked shopper under a kilobyte).
    """

    __slots__ = ("_mappings", "_seen", "_sets", "cap", "name", "overflow")

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self.overflow = 0
        self._seen: dict[str, str] = {}
        self._sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._mappings: dict[tuple[tuple[str, float], ...], dict[str, float]] = {}

    def __call__(self, value: str) -> str:
        known = self._seen.get(value)
        if known is not None:
            return known
        if not value:
            return UNKNOWN
        if len(self._seen) >= self.cap:
            self.overflow += 1
            return OTHER
        self._seen[value] = value
        return value

    def many(self, values: Iterable[str]) -> tuple[str, ...]:
        """The values through the cap, as one tuple shared by every shopper with the same ones.

        At most `cap` distinct tuples are shared; past that each caller keeps its own, so odd
        combinations cost memory only while someone holds them.
        """
        capped = tuple(self(value) for value in values)
        known = self._sets.get(capped)
        if known is not None:
            return known
        if len(self._sets) < self.cap:
            self._sets[capped] = capped
        return capped

    def keyed(self, mapping: dict[str, float]) -> dict[str, float]:
        """The mapping with every key through the cap, as one dict shared by every caller with
        the same keys and values lately (`SHARED_MAPPINGS` of them): callers never change it in
        place, and a flood of new shoppers reporting the same minutes holds them once."""
        seen = self._seen
        pairs = tuple(
            (known if (known := seen.get(key)) is not None else self(key), value)
            for key, value in mapping.items()
        )
        shared = self._mappings.get(pairs)
        if shared is not None:
            return shared
        out = dict(pairs)
        if len(self._mappings) >= SHARED_MAPPINGS:
            self._mappings.clear()  # the latest ones are the likeliest to come again
        self._mappings[pairs] = out
        return out

    def values(self) -> list[str]:
        """Values admitted so far."""
        return list(self._seen)

    def shared_lists(self) -> list[tuple[str, ...]]:
        """Lists shared so far (by `many`), in the order they came."""
        return list(self._sets)

    def load(self, values: Iterable[str], lists: Iterable[Iterable[str]], overflow: int) -> None:
        """Take back what a snapshot saved (into an empty cap): values and shared lists in their
        order, as many as the cap holds, and the overflow count."""
        for value in values:
            if value and len(self._seen) < self.cap:
                self._seen.setdefault(value, value)
        for items in lists:
            shared = tuple(map(self.known, items))
            if len(self._sets) < self.cap:
                self._sets.setdefault(shared, shared)
        self.overflow = overflow

    def known(self, value: str) -> str:
        """The stored object for a value already through the cap (restores share it this way):
        an admitted value, `other`, `unknown` or the empty string. A value the cap does not hold
        (saved with a larger cap) becomes `other`, without counting it again."""
        found = self._seen.get(value)
        if found is not None:
            return found
        if not value:
            return ""
        return UNKNOWN if value == UNKNOWN else OTHER

    def known_many(self, values: Iterable[str]) -> tuple[str, ...]:
        """`known` for a list, as the one shared tuple when the cap shares it."""
        shared = tuple(map(self.known, values))
        return self._sets.get(shared, shared)
