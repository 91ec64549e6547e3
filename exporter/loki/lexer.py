"""LogQL's lexer: tokens with offsets, durations and byte sizes, and positioned parse errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


class ParseError(ValueError):
    """A query that is not LogQL we understand; says where, the way Loki does."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(f"parse error at line {line}, col {col}: {message}")
        self.line = line
        self.col = col


# ----- tokens ---------------------------------------------------------------------------------

NUMBER: Final = "NUMBER"
DURATION: Final = "DURATION"
BYTES: Final = "BYTES"
STRING: Final = "STRING"
IDENT: Final = "IDENTIFIER"
EOF: Final = "end of input"

_SYMBOLS: Final = (
    "|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=",
    "{", "}", "(", ")", "[", "]", ",", "|", "=", ">", "<", "+", "-", "*", "/", "%", "^",
)  # fmt: skip

_DURATION_UNIT: Final = r"(?:ms|us|µs|ns|s|m|h|d|w|y)"
_DURATION_RE: Final = re.compile(rf"(?:\d+(?:\.\d+)?{_DURATION_UNIT})+")
_DURATION_PART: Final = re.compile(rf"(\d+(?:\.\d+)?)({_DURATION_UNIT})")
_BYTES_RE: Final = re.compile(r"(\d+(?:\.\d+)?)([KMGTPE]i?B|B)", re.IGNORECASE)
_NUMBER_RE: Final = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+")
_IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000,
    "y": 365 * 86_400_000_000_000,
}
_BYTE_UNITS: Final = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "tib": 1024**4,
    "pb": 1000**5,
    "pib": 1024**5,
    "eb": 1000**6,
    "eib": 1024**6,
}
_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


@dataclass(frozen=True, slots=True)
class Token:
    """One lexeme: its kind (a symbol, or NUMBER/DURATION/…), text, value and offset."""

    kind: str
    text: str
    pos: int
    value: str = ""


def parse_duration(text: str) -> int | None:
    """A Prometheus-style duration ("1m30s", "15000ms") in nanoseconds; None if it is not one."""
    if not _DURATION_RE.fullmatch(text):
        return None
    total = 0.0
    for amount, unit in _DURATION_PART.findall(text):
        total += float(amount) * _UNIT_NS[unit]
    return round(total)


def parse_bytes(text: str) -> float | None:
    """A humanized byte size ("20MB", "1KiB", "512") in bytes; None if it is not one."""
    match = _BYTES_RE.fullmatch(text.strip())
    if match is None:
        try:
            return float(text)
        except ValueError:
            return None
    return float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]


class Lexer:
    """Turns query text into tokens; every token keeps its offset for error messages."""

    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, message: str, pos: int) -> ParseError:
        return position_error(self.text, message, pos)

    def tokens(self) -> list[Token]:
        text, i, n = self.text, 0, len(self.text)
        out: list[Token] = []
        while i < n:
            ch = text[i]
            if ch in " \t\r\n":
                i += 1
                continue
            if ch == "#":  # a comment runs to the end of the line
                end = text.find("\n", i)
                i = n if end < 0 else end
                continue
            if ch == '"':
                value, end = self._quoted(i)
                out.append(Token(STRING, text[i:end], i, value))
                i = end
                continue
            if ch == "`":
                end = text.find("`", i + 1)
                if end < 0:
                    raise self.error("unterminated raw string", i)
                out.append(Token(STRING, text[i : end + 1], i, text[i + 1 : end]))
                i = end + 1
                continue
            if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
                token = self._number(i)
                out.append(token)
                i += len(token.text)
                continue
            match = _IDENT_RE.match(text, i)
            if match is not None:
                out.append(Token(IDENT, match.group(), i, match.group()))
                i = match.end()
                continue
            for symbol in _SYMBOLS:
                if text.startswith(symbol, i):
                    out.append(Token(symbol, symbol, i))
                    i += len(symbol)
                    break
            else:
                raise self.error(f"unexpected character {ch!r}", i)
        out.append(Token(EOF, "", n))
        return out

    def _number(self, start: int) -> Token:
        text = self.text
        end = start
        while end < len(text) and (text[end].isalnum() or text[end] in ".µ"):
            end += 1
        word = text[start:end]
        # 1e3 and 1e-3 are numbers; the sign belongs to the exponent.
        exp = _NUMBER_RE.match(text, start)
        if exp is not None and exp.end() > end:
            word = exp.group()
        if _NUMBER_RE.fullmatch(word):
            return Token(NUMBER, word, start, word)
        if _DURATION_RE.fullmatch(word):
            return Token(DURATION, word, start, word)
        if _BYTES_RE.fullmatch(word):
            return Token(BYTES, word, start, word)
        raise self.error(f"invalid number, duration or size {word!r}", start)

    def _quoted(self, start: int) -> tuple[str, int]:
        """A Go-style double-quoted string: its value and the offset just after it."""
        text, i = self.text, start + 1
        parts: list[str] = []
        while i < len(text):
            ch = text[i]
            if ch == '"':
                return "".join(parts), i + 1
            if ch == "\n":
                break
            if ch != "\\":
                parts.append(ch)
                i += 1
                continue
            if i + 1 >= len(text):
                break
            esc = text[i + 1]
            if esc in _ESCAPES:
                parts.append(_ESCAPES[esc])
                i += 2
                continue
            width = {"x": 2, "u": 4, "U": 8}.get(esc)
            if width is not None:
                digits = text[i + 2 : i + 2 + width]
                if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
                    code = int(digits, 16)
                    if code <= 0x10FFFF:
                        parts.append(chr(code))
                        i += 2 + width
                        continue
            elif esc in "01234567":
                digits = text[i + 1 : i + 4]
                if len(digits) == 3 and all(c in "01234567" for c in digits):
                    parts.append(chr(int(digits, 8)))
                    i += 4
                    continue
            raise self.error(f"invalid escape sequence \\{esc} in string", i)
        raise self.error("unterminated string", start)


def position_error(text: str, message: str, pos: int) -> ParseError:
    """A ParseError at character offset `pos` of `text`, as 1-based line and column."""
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return ParseError(message, line, col)
