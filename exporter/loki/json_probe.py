"""`| json | <label filter>` fused: the filter is tried on the few fields it reads first.

Most lines fail a selective filter such as `cartValue > 100`, and turning every field of every
line into labels is what made the query slow. A field name without `_` can only come from the
line's top-level key of that very name (nested fields are joined with `_`, and sanitizing only
ever introduces `_`), so the filter's verdict on those fields alone is its verdict on all the
labels. Only lines that pass are flattened in full; the result is the same as the two stages.

Most lines need not even be parsed: a field is read straight from the text when its key
(`"name":`) appears once, with no `{` or `[` before it, so it can only be a top-level key, and
its value is a plain scalar. That reading is right for a line that is valid JSON; for one that
is not, the json stage would have added no field at all, so a line is dropped on that reading
only when the filter fails without the fields too. Anything unusual is parsed in full.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from exporter.loki.syntax import LabelAnd, LabelCompare, LabelOr, LabelPredicate

Labels = dict[str, str]
StageFn = Callable[[int, str, Labels], tuple[str, Labels] | None]
_FAIL = 0
_SCALAR: Final = re.compile(
    r'"((?:[^"\\]|\\.)*)"|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(true|false|null)'
)
_UNSURE: Final = object()


def read_field(line: str, name: str, scalar: Callable[[Any], str]) -> str | object | None:
    """The label `| json` would make of top-level field `name`, read from the text: its value,
    None when the line has no such scalar field, `_UNSURE` when only parsing can tell."""
    key = f'"{name}":'
    at = line.find(key)
    if at < 0:
        return _UNSURE if f'"{name}"' in line or "\\u" in line else None
    if line.find(key, at + 1) >= 0 or "{" in line[1:at] or "[" in line[1:at]:
        return _UNSURE
    start = at + len(key)
    if line.startswith(("{", "["), start):
        return None  # an object or array: the json stage makes no label of this name
    found = _SCALAR.match(line, start)
    if found is None:
        return _UNSURE
    text, number, word = found.groups()
    if text is not None:
        return text if "\\" not in text else str(orjson.loads(found.group()))
    if number is not None:
        is_float = "." in number or "e" in number or "E" in number
        return scalar(float(number)) if is_float else str(int(number))
    return scalar({"true": True, "false": False, "null": None}[word])


def names_read(predicate: LabelPredicate) -> set[str]:
    """Every label name the filter looks at."""
    if isinstance(predicate, LabelCompare):
        return {predicate.name}
    return names_read(predicate.left) | names_read(predicate.right)


def names_needed(predicate: LabelPredicate) -> set[str]:
    """Names a line must have for the filter to keep it (a missing label fails the test)."""
    if isinstance(predicate, LabelAnd):
        return names_needed(predicate.left) | names_needed(predicate.right)
    if isinstance(predicate, LabelOr):
        return names_needed(predicate.left) & names_needed(predicate.right)
    if predicate.kind != "string":
        return {predicate.name}
    if predicate.op == "=" and predicate.text:
        return {predicate.name}
    if predicate.op == "=~" and predicate.regex is not None and not predicate.regex.matches(""):
        return {predicate.name}
    return set()


def fusable(predicate: LabelPredicate) -> bool:
    """Whether every name the filter reads is a plain top-level field name."""
    return all("_" not in name for name in names_read(predicate))


def fused_stage(
    predicate: LabelPredicate,
    check: Callable[[LabelPredicate, Labels], int],
    scalar: Callable[[Any], str],
    flatten: Callable[[dict[str, Any], Labels], Labels],
    json_stage: StageFn,
    filter_stage: StageFn,
) -> StageFn:
    """One stage doing `| json | predicate`. `flatten(obj, stream labels)` gives every label
    the json stage would; lines that are not JSON objects go through the two stages as written."""
    read = tuple(sorted(names_read(predicate)))
    needles = tuple((name, f'"{name}"') for name in sorted(names_needed(predicate)))
    fails_bare: dict[int, tuple[Labels, bool]] = {}

    def fails_without_fields(labels: Labels) -> bool:
        # Per stream label set (shared dicts, remembered by identity and kept alive here).
        known = fails_bare.get(id(labels))
        if known is None or known[0] is not labels:
            bare = dict(labels)
            bare["__error__"] = "JSONParserErr"
            known = fails_bare[id(labels)] = (labels, check(predicate, bare) == _FAIL)
            if len(fails_bare) > 10_000:
                fails_bare.clear()
        return known[1]

    def quick(line: str, labels: Labels) -> Labels | None:
        probe: Labels = {}
        for name in read:
            if name in labels:
                probe[name] = labels[name]
                continue
            value = read_field(line, name, scalar)
            if value is _UNSURE:
                return None
            if isinstance(value, str):
                probe[name] = value
        return probe

    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels] | None:
        # A needed field whose key is not in the line: the filter fails, parsed or not
        # (a key could hide only behind a \u escape).
        for name, quoted in needles:
            if name not in labels and quoted not in line and "\\u" not in line:
                return None
        if line.startswith("{"):
            read_off = quick(line, labels)
            if (
                read_off is not None
                and check(predicate, read_off) == _FAIL
                and fails_without_fields(labels)
            ):
                return None
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is not dict:
            parsed = json_stage(ts, line, labels)
            return None if parsed is None else filter_stage(ts, *parsed)
        probe: Labels = {}
        for name in read:
            if name in labels:
                probe[name] = labels[name]  # the stream's label wins; the field gets _extracted
            elif name in obj:
                value = obj[name]
                kind = type(value)
                if kind is str:
                    probe[name] = value
                elif kind is not dict and kind is not list:
                    probe[name] = scalar(value)
        if check(predicate, probe) == _FAIL:
            return None
        return filter_stage(ts, line, flatten(obj, labels))

    return stage


def prefilter(
    predicate: LabelPredicate,
    stream_names: frozenset[str],
    check: Callable[[LabelPredicate, Labels], int],
    scalar: Callable[[Any], str],
) -> Callable[[str], bool] | None:
    """A test on the raw line that drops only lines `| json | predicate` would drop, for the
    scan to run before any label is worked out; None when the stream's labels could matter."""
    read = tuple(sorted(names_read(predicate)))
    if stream_names.intersection(read):
        return None
    if check(predicate, {"__error__": "JSONParserErr"}) != _FAIL:
        return None  # a line that is not JSON would be kept: only parsing can tell
    if isinstance(predicate, LabelCompare) and predicate.kind == "number":
        return _number_test(predicate)
    needles = tuple(f'"{name}"' for name in sorted(names_needed(predicate)))

    def keep(line: str) -> bool:
        for quoted in needles:
            if quoted not in line and "\\u" not in line:
                return False
        if not line.startswith("{"):
            return True
        probe: Labels = {}
        for name in read:
            value = read_field(line, name, scalar)
            if value is _UNSURE:
                return True
            if isinstance(value, str):
                probe[name] = value
        return check(predicate, probe) != _FAIL

    return keep


def screen(
    predicate: LabelPredicate,
    stream_names: frozenset[str],
    check: Callable[[LabelPredicate, Labels], int],
) -> tuple[str, str] | None:
    """What every line `prefilter` keeps contains: a needed field's quoted key, or a `\\u`
    escape that could spell it; None when `prefilter` would not run or needs no field."""
    if stream_names.intersection(names_read(predicate)):
        return None
    if check(predicate, {"__error__": "JSONParserErr"}) != _FAIL:
        return None
    if isinstance(predicate, LabelCompare) and predicate.kind == "number":
        return f'"{predicate.name}"', "\\u"
    needed = sorted(names_needed(predicate))
    return (f'"{needed[0]}"', "\\u") if needed else None


_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?=[,}\s])")
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "==": float.__eq__,
    "!=": float.__ne__,
    ">": float.__gt__,
    ">=": float.__ge__,
    "<": float.__lt__,
    "<=": float.__le__,
}


def _number_test(test: LabelCompare) -> Callable[[str], bool]:
    """`name > 100` and the like on a raw line: the hot loop of a selective json query, so the
    field's number is read and compared inline; anything but a plain top-level number, or a
    line `read_field` would be unsure of, is kept for the stages to decide."""
    key, quoted = f'"{test.name}":', f'"{test.name}"'
    limit, compare = test.number, _OPS[test.op]
    number_at = _NUMBER.match

    def keep(line: str) -> bool:
        at = line.find(key)
        if at < 0:
            # No such key: no label, and a missing label fails a numeric test.
            return quoted in line or "\\u" in line
        start = at + len(key)
        if (
            line.find(key, start) >= 0
            or line.find("{", 1, at) >= 0
            or line.find("[", 1, at) >= 0
            or not line.startswith("{")
        ):
            return True
        found = number_at(line, start)
        if found is None:
            return True
        return compare(float(found.group()), limit)

    return keep
