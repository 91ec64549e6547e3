"""LogQL's regular expressions: RE2 (the syntax and linear-time engine of Loki's Go regexp).

Every regex a query carries is compiled here, anchored the way Loki anchors it:

- `=~` / `!~` in stream selectors, label filters and drop/keep matchers test the whole value,
  with `.` matching a newline too (Prometheus' label matcher, which Loki uses);
- `|~` / `!~` line filters and the `| regexp` parser search anywhere in the line.

RE2 never backtracks, so no pattern makes a query take more than linear time per line; what
RE2 refuses (backreferences, lookaround, possessive repeats) is refused with Go's wording.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

import re2
from re2 import _re2

_ANCHOR_BOTH: Final = _re2.RE2.Anchor.ANCHOR_BOTH
_UNANCHORED: Final = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH: Final = (-1, -1)

# RE2's error codes in the words of Go's regexp/syntax, which is what Loki users read.
_GO_WORDS: Final = {
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class": "invalid character class",
    "invalid character class range": "invalid character class range",
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "unexpected )": "unexpected )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid UTF-8": "invalid UTF-8",
    "invalid named capture group": "invalid named capture",
    "pattern too large - compile failed": "expression too large",
}


class RegexError(ValueError):
    """A pattern RE2 (and so Loki) refuses; the message is Go's `error parsing regexp: …`."""


def _go_message(re2_error: str) -> str:
    code, _, arg = re2_error.partition(": ")
    words = _GO_WORDS.get(code)
    if words is None:  # a code this table does not know: keep RE2's own text
        return f"error parsing regexp: {re2_error}"
    return f"error parsing regexp: {words}: `{arg}`"


def _options(*, dot_nl: bool, captures: bool) -> Any:
    options = re2.Options()
    options.log_errors = False  # refusals are answered to the client, not written to stderr
    options.dot_nl = dot_nl
    options.never_capture = not captures
    return options


_ESCAPES_AND_NAMES: Final = re2.compile(
    r"\\(?s:.)|\[\^?\]?(?:\\(?s:.)|[^\\\]])*\]|\(\?P?<(\w+)>", _options(dot_nl=False, captures=True)
)


def _scan(pattern: str) -> list[str]:
    """The group names a pattern declares; refuses `\\C`, which Go does not have.

    (RE2's `\\C` matches one byte, which could split a character of the UTF-8 text.)
    """
    names: list[str] = []
    for token in _ESCAPES_AND_NAMES.finditer(pattern):
        if token.group() == "\\C":
            raise RegexError("error parsing regexp: invalid escape sequence: `\\C`")
        if token.group(1) is not None:
            names.append(token.group(1))
    return names


_META: Final = frozenset("\\^$.|?*+()[]{}")


def _literals(pattern: str) -> list[str] | None:
    """The alternatives of a pattern that is only literal text joined by `|`, else None."""
    if not _META.isdisjoint(pattern.replace("|", "")):
        return None
    return pattern.split("|")


class LogRegex:
    """A compiled LogQL regex: whether a text matches, and what its named groups captured."""

    __slots__ = ("_anchor", "_re", "anchored", "matches", "names", "pattern")

    def __init__(self, pattern: str, *, anchored: bool, captures: bool) -> None:
        names = _scan(pattern)
        compiled = _re2.RE2(
            pattern.encode("utf-8", "surrogatepass"), _options(dot_nl=anchored, captures=captures)
        )
        if not compiled.ok():
            raise RegexError(_go_message(compiled.error().decode("utf-8", "replace")))
        self.pattern = pattern
        self.anchored = anchored
        self._re = compiled
        self._anchor = _ANCHOR_BOTH if anchored else _UNANCHORED
        self.names: dict[str, int] = (
            {name.decode(): index for name, index in compiled.NamedCapturingGroups()}
            if captures
            else {}
        )
        """Named groups and their numbers (only when compiled with captures)."""
        if len(names) != len(set(names)):
            duplicate = next(n for n in names if names.count(n) > 1)
            raise RegexError(f"duplicate extracted label name '{duplicate}'")
        self.matches: Callable[[str], bool] = self._matcher()
        """Whether a text matches: as a whole when anchored, anywhere in it otherwise."""

    def _matcher(self) -> Callable[[str], bool]:
        # Literal text (or literals joined by `|`) needs no regex engine: a set lookup or a
        # substring search gives the same answer, as Loki's and Prometheus' matchers do.
        literals = _literals(self.pattern)
        if literals is not None:
            if self.anchored:
                return frozenset(literals).__contains__
            if len(literals) == 1:
                needle = literals[0]
                return lambda text: needle in text
            return lambda text: any(literal in text for literal in literals)
        compiled, anchor = self._re, self._anchor

        def matches(text: str) -> bool:
            data = text.encode("utf-8", "surrogatepass")
            return bool(compiled.Match(anchor, data, 0, len(data))[0] != _NO_MATCH)

        return matches

    def __repr__(self) -> str:
        return f"LogRegex({self.pattern!r}, anchored={self.anchored})"

    def groups(self, text: str) -> list[str | None] | None:
        """The text of every group of the first match (0 = the whole match), or None."""
        data = text.encode("utf-8", "surrogatepass")
        spans = self._re.Match(self._anchor, data, 0, len(data))
        if spans[0] == _NO_MATCH:
            return None
        return [
            None if span == _NO_MATCH else data[span[0] : span[1]].decode("utf-8", "surrogatepass")
            for span in spans
        ]

    def replace_all(self, text: str, replacement: Callable[[list[str | None]], str]) -> str:
        """Every non-overlapping match replaced by what `replacement` makes of its groups."""
        data = text.encode("utf-8", "surrogatepass")
        out: list[bytes] = []
        pos = done = 0
        while pos <= len(data):
            spans = self._re.Match(_UNANCHORED, data, pos, len(data))
            start, end = spans[0]
            if (start, end) == _NO_MATCH:
                break
            groups = [
                None if s == _NO_MATCH else data[s[0] : s[1]].decode("utf-8", "surrogatepass")
                for s in spans
            ]
            out.append(data[done:start])
            out.append(replacement(groups).encode("utf-8", "surrogatepass"))
            done = end
            pos = end if end > start else end + 1
            while 0 < pos < len(data) and data[pos] & 0xC0 == 0x80:
                pos += 1  # never restart inside a UTF-8 sequence
        out.append(data[done:])
        return b"".join(out).decode("utf-8", "surrogatepass")

    def named(self, text: str) -> dict[str, str] | None:
        """What each named group captured in the first match (groups that took part), or None."""
        found = self.groups(text)
        if found is None:
            return None
        return {name: value for name, i in self.names.items() if (value := found[i]) is not None}


@lru_cache(maxsize=1024)
def compile_logql(pattern: str, *, anchored: bool, captures: bool = False) -> LogRegex:
    """A LogQL regex, compiled once per pattern and use; raises RegexError in Go's words.

    `anchored` for matchers (`=~`, `!~` on a label, and label_replace), not for line filters or
    the regexp parser; `captures` when the groups' text is wanted.
    """
    return LogRegex(pattern, anchored=anchored, captures=captures)
