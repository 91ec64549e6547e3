"""Substring screens: a scan drops, in C, the lines its exact test would drop for certain.

A screen is a tuple of strings; a line that contains none of them fails the scan's test (a
leading `|= "a" or "b"`, or a `| json | filter` whose field must be in the line). Screening a
slice of lines is a few `map`s over C functions, where the exact test is a Python call per
line; the test still runs on every line that passes the screens, so the result is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import reduce
from itertools import repeat
from operator import and_, contains, eq, ge, gt, le, lt, ne, or_
from typing import Final

from exporter.loki.syntax import LabelCompare, LabelPredicate, LineFilter

Screen = tuple[str, ...]
NumberScreen = tuple[str, Callable[[float, float], bool], float]
"""(detail name, comparison, limit): `| json | name > 100` read off the packed details."""

_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    "==": eq,
    "!=": ne,
    ">": gt,
    ">=": ge,
    "<": lt,
    "<=": le,
}
LINE_KEYS: Final = frozenset({"time", "type", "userId", "userName", "message"})
"""Keys of an event line that are not its details (exporter.eventlog.render_line)."""


def of_line_filter(stage: LineFilter) -> Screen | None:
    """`|= "a" or "b"`: a kept line contains "a" or "b"; None for any other filter."""
    if stage.op != "|=" or stage.ips or stage.patterns or not stage.values:
        return None
    if "" in stage.values:
        return None
    return stage.values


def of_json_filter(
    predicate: LabelPredicate | None, stream_names: frozenset[str]
) -> NumberScreen | None:
    """`| json | name > 100` first in a pipeline: the event's own detail `name`, when it is a
    JSON number, is the label the filter compares (a number's text parses back to it), so an
    event whose number fails is dropped without its line. None when a stream label or a line
    key of that name would be the label instead, or for any other filter."""
    if not isinstance(predicate, LabelCompare) or predicate.kind != "number":
        return None
    name = predicate.name
    if name in stream_names or name in LINE_KEYS or "_" in name:
        return None
    return name, _COMPARE[predicate.op], predicate.number


def passing(lines: Sequence[str], screens: Sequence[Screen]) -> Iterable[bool]:
    """For each line, whether it contains a string of every screen."""
    verdicts: list[Iterator[bool]] = [
        reduce(_either, (map(contains, lines, repeat(needle)) for needle in screen))
        for screen in screens
    ]
    return reduce(_both, verdicts)


def _either(one: Iterator[bool], other: Iterator[bool]) -> Iterator[bool]:
    return map(or_, one, other)


def _both(one: Iterator[bool], other: Iterator[bool]) -> Iterator[bool]:
    return map(and_, one, other)
