"""Loki's pattern expressions: `<name> - <_> "<method> <path>"` for `| pattern` and `|>` filters.

A pattern is literal text and captures (`<name>`, or `<_>` to skip). Matching walks the line
left to right: each literal is searched for from where the previous one ended, and a capture
takes the text between them — no regex, so the cost is a few substring searches per line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_CAPTURE: Final = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
_SKIP: Final = "_"


class PatternError(ValueError):
    """A pattern Loki would refuse, in Loki's words."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed pattern: alternating parts, each ("lit", text) or ("cap", name)."""

    source: str
    parts: tuple[tuple[bool, str], ...]
    """(is_capture, text)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(text for is_cap, text in self.parts if is_cap and text != _SKIP)

    def extract(self, line: str) -> dict[str, str] | None:
        """What each named capture took (Loki's matcher: a missed literal ends the match)."""
        parts = self.parts
        if not line or not parts:
            return None
        i = 0
        pos = 0
        if not parts[0][0]:
            literal = parts[0][1]
            if not line.startswith(literal):
                return None
            pos = len(literal)
            i = 1
        if i >= len(parts):
            return None
        found: dict[str, str] = {}
        while i < len(parts):
            name = parts[i][1]
            if i + 1 >= len(parts):
                if name != _SKIP:
                    found[name] = line[pos:]
                return found
            literal = parts[i + 1][1]
            at = line.find(literal, pos)
            if at < 0:
                if name != _SKIP:
                    found[name] = line[pos:]
                return found
            if name != _SKIP:
                found[name] = line[pos:at]
            pos = at + len(literal)
            i += 2
        return found

    def test(self, line: str) -> bool:
        """Whether the whole line fits the pattern (what `|>` keeps and `!>` drops)."""
        parts = self.parts
        if not line or not parts:
            return not line and not parts
        pos = 0
        for i, (is_cap, text) in enumerate(parts):
            if is_cap:
                continue
            at = line.find(text, pos)
            if at < 0 or (i != 0 and at == pos):
                return False
            pos = at + len(text)
        ends_on_capture = parts[-1][0]
        return ends_on_capture == (pos != len(line))


def parse_pattern(source: str, *, need_capture: bool) -> Pattern:
    """Split a pattern into literals and captures; refuses what Loki refuses."""
    parts: list[tuple[bool, str]] = []
    i = 0
    for match in _CAPTURE.finditer(source):
        if match.start() > i:
            parts.append((False, source[i : match.start()]))
        name = match.group(1)
        if parts and parts[-1][0]:
            raise PatternError(f"found consecutive capture '<{name}>': {source}")
        parts.append((True, name))
        i = match.end()
    if i < len(source):
        parts.append((False, source[i:]))
    names = [text for is_cap, text in parts if is_cap and text != _SKIP]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PatternError(f"duplicate capture name ({duplicates[0]}): {source}")
    if need_capture and not names:
        raise PatternError(f"at least one capture is required: {source}")
    return Pattern(source, tuple(parts))
