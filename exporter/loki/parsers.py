"""Stages that read labels out of the line: logfmt (with flags), pattern, unpack; decolorize."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from exporter.loki.patterns import Pattern

Labels = dict[str, str]
StageFn = Callable[[int, str, Labels], tuple[str, Labels] | None]
AddLabel = Callable[[Labels, Labels, str, str], None]
"""(out, stream labels, name, value): sets a parsed label, `_extracted` on a collision."""

ERROR_LABEL: Final = "__error__"
ERROR_DETAILS: Final = "__error_details__"
LOGFMT_ERROR: Final = "LogfmtParserErr"
JSON_ERROR: Final = "JSONParserErr"
_ANSI: Final = re.compile(r"\x1b\[[0-9;:?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_UNESCAPE: Final = {"n": "\n", "t": "\t", "r": "\r"}


def scan_logfmt(line: str) -> tuple[list[tuple[str, str | None]], str]:
    """`key=value key="quoted" flag` pairs in order (None for a standalone key), and the first
    fault found ("" when the line is well formed); scanning goes on past a fault."""
    pairs: list[tuple[str, str | None]] = []
    fault = ""
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        start = i
        while i < n and line[i] not in " \t=":
            i += 1
        key = line[start:i]
        if '"' in key and not fault:
            fault = f"unexpected '\"' in key {key!r}"
        value: str | None = None
        if i < n and line[i] == "=":
            i += 1
            if not key and not fault:
                fault = "unexpected '=' without a key"
            if i < n and line[i] == '"':
                i += 1
                chars: list[str] = []
                while i < n and line[i] != '"':
                    if line[i] == "\\" and i + 1 < n:
                        i += 1
                        chars.append(_UNESCAPE.get(line[i], line[i]))
                    else:
                        chars.append(line[i])
                    i += 1
                if i >= n:
                    return pairs, fault or "unterminated quoted value"
                i += 1
                value = "".join(chars)
            else:
                start = i
                while i < n and line[i] not in " \t":
                    i += 1
                value = line[start:i]
        if key and '"' not in key:
            pairs.append((key, value))
    return pairs, fault


def logfmt_stage(
    wanted: list[tuple[str, str]],
    add: AddLabel,
    sanitize: Callable[[str], str],
    *,
    strict: bool,
    keep_empty: bool,
) -> StageFn:
    """`| logfmt [--strict] [--keep-empty] [a, b="key"]`: standalone keys only with
    --keep-empty; a malformed line is an error only with --strict (else what parsed is kept)."""

    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        pairs, fault = scan_logfmt(line)
        out = dict(labels)
        if fault and strict:
            out[ERROR_LABEL] = LOGFMT_ERROR
            out[ERROR_DETAILS] = f"logfmt syntax error: {fault}"
            return line, out
        found = {k: v for k, v in pairs if v is not None or keep_empty}
        if wanted:
            for name, key in wanted:
                if key in found:
                    add(out, labels, name, found[key] or "")
        else:
            for key, value in found.items():
                add(out, labels, sanitize(key), value or "")
        return line, out

    return stage


def pattern_stage(pattern: Pattern, add: AddLabel, sanitize: Callable[[str], str]) -> StageFn:
    """`| pattern "<ip> - <_> <status>"`: captures become labels; no match adds nothing."""
    names = {name: sanitize(name) for name in pattern.names}

    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        found = pattern.extract(line)
        if not found:
            return line, labels
        out = dict(labels)
        for name, value in found.items():
            add(out, labels, names[name], value)
        return line, out

    return stage


def unpack_stage(add: AddLabel, sanitize: Callable[[str], str]) -> StageFn:
    """`| unpack`: a JSON object's string fields become labels and `_entry` becomes the line
    (what Promtail's `pack` stage wrote); anything else is a JSONParserErr."""

    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        try:
            obj: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            out = dict(labels)
            out[ERROR_LABEL] = JSON_ERROR
            return line, out
        out = dict(labels)
        for key, value in obj.items():
            if not isinstance(value, str):
                continue
            if key == "_entry":
                line = value
            else:
                add(out, labels, sanitize(key), value)
        return line, out

    return stage


def decolorize_stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
    """`| decolorize`: the line without ANSI colour and cursor codes."""
    if "\x1b" not in line:
        return line, labels
    return _ANSI.sub("", line), labels
