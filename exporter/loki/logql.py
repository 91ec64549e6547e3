"""LogQL: a tokenizer, the syntax tree, and a recursive-descent parser with positioned errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from exporter.loki.regex import LogRegex, RegexError, compile_logql

MAX_QUERY_LENGTH: Final = 16_384
MAX_DEPTH: Final = 64


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


# ----- syntax tree ----------------------------------------------------------------------------

MatchOp: TypeAlias = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """`name op "value"`; a regex is compiled once, fully anchored as Loki's matchers are."""

    name: str
    op: MatchOp
    value: str
    regex: LogRegex | None = field(default=None, compare=False)

    def matches(self, value: str) -> bool:
        match self.op:
            case "=":
                return value == self.value
            case "!=":
                return value != self.value
            case "=~":
                assert self.regex is not None
                return self.regex.matches(value)
            case _:
                assert self.regex is not None
                return not self.regex.matches(value)


@dataclass(frozen=True, slots=True)
class StreamSelector:
    """`{name="value", …}`: which streams a query reads."""

    matchers: tuple[Matcher, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.matchers)


@dataclass(frozen=True, slots=True)
class LineFilter:
    """`|= "a" or "b"`, `!= …`, `|~ …`, `!~ …`: keep or drop lines by content."""

    op: Literal["|=", "!=", "|~", "!~"]
    values: tuple[str, ...]
    regexes: tuple[LogRegex, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Parser:
    """`| json`, `| logfmt` (optionally with `label="path"` parameters) or `| regexp "…"`."""

    kind: Literal["json", "logfmt", "regexp"]
    params: tuple[tuple[str, str], ...] = ()
    regex: LogRegex | None = field(default=None, compare=False)


CompareOp: TypeAlias = Literal["=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="]


@dataclass(frozen=True, slots=True)
class LabelCompare:
    """One label test: a string match, or a number, duration or byte-size comparison."""

    name: str
    op: CompareOp
    kind: Literal["string", "number", "duration", "bytes"]
    text: str = ""
    number: float = 0.0
    regex: LogRegex | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class LabelAnd:
    left: LabelPredicate
    right: LabelPredicate


@dataclass(frozen=True, slots=True)
class LabelOr:
    left: LabelPredicate
    right: LabelPredicate


LabelPredicate: TypeAlias = LabelCompare | LabelAnd | LabelOr


@dataclass(frozen=True, slots=True)
class LabelFilter:
    """`| status >= 500 and level="error"`: keep lines whose labels pass."""

    predicate: LabelPredicate


@dataclass(frozen=True, slots=True)
class Template:
    """A Go text/template subset: literal text and `{{ .label }}` / `{{ __line__ }}` actions."""

    source: str
    parts: tuple[tuple[bool, str], ...]
    """(is_action, text): an action names a label (or __line__ / __timestamp__)."""


@dataclass(frozen=True, slots=True)
class LineFormat:
    """`| line_format "{{.label}}"`: replace the line with a rendered template."""

    template: Template


@dataclass(frozen=True, slots=True)
class LabelFormat:
    """`| label_format dst=src, dst="{{.x}}"`: rename labels or set them from templates."""

    items: tuple[tuple[str, str | Template], ...]


@dataclass(frozen=True, slots=True)
class DropLabels:
    """`| drop a, b="x"`: remove labels (a matcher removes only when it matches)."""

    names: tuple[str, ...]
    matchers: tuple[Matcher, ...] = ()


@dataclass(frozen=True, slots=True)
class KeepLabels:
    """`| keep a, b="x"`: remove every other label."""

    names: tuple[str, ...]
    matchers: tuple[Matcher, ...] = ()


@dataclass(frozen=True, slots=True)
class Unwrap:
    """`| unwrap latency` / `| unwrap bytes(size)`: the sample value for `*_over_time`."""

    label: str
    conversion: Literal["", "bytes", "duration", "duration_seconds"] = ""


Stage: TypeAlias = (
    LineFilter | Parser | LabelFilter | LineFormat | LabelFormat | DropLabels | KeepLabels | Unwrap
)


@dataclass(frozen=True, slots=True)
class LogQuery:
    """A selector and its pipeline: what log queries return and metric queries count."""

    selector: StreamSelector
    stages: tuple[Stage, ...] = ()
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class RangeAggregation:
    """`count_over_time(<log query> [5m])` and friends, evaluated per series at each step."""

    func: str
    query: LogQuery
    range_ns: int
    offset_ns: int = 0
    param: float | None = None
    grouping: Grouping | None = None


@dataclass(frozen=True, slots=True)
class Grouping:
    """`by (a, b)` or `without (a, b)`."""

    labels: tuple[str, ...]
    without: bool = False


@dataclass(frozen=True, slots=True)
class VectorAggregation:
    """`sum by (type) (…)`, `topk(5, …)`: combine series at each step."""

    op: str
    expr: MetricExpr
    grouping: Grouping | None = None
    param: MetricExpr | None = None


@dataclass(frozen=True, slots=True)
class NumberLiteral:
    value: float


@dataclass(frozen=True, slots=True)
class VectorLiteral:
    """`vector(1)`: one series with no labels."""

    value: float


@dataclass(frozen=True, slots=True)
class VectorMatching:
    """`on (a)` / `ignoring (a)` for binary operations between two vectors."""

    labels: tuple[str, ...]
    on: bool


@dataclass(frozen=True, slots=True)
class BinaryOp:
    """Arithmetic, comparison or set operation between scalars and vectors."""

    op: str
    left: MetricExpr
    right: MetricExpr
    bool_mode: bool = False
    matching: VectorMatching | None = None


MetricExpr: TypeAlias = (
    RangeAggregation | VectorAggregation | NumberLiteral | VectorLiteral | BinaryOp
)
Expr: TypeAlias = LogQuery | MetricExpr

RANGE_FUNCTIONS: Final = frozenset({"count_over_time", "rate", "bytes_over_time", "bytes_rate"})
UNWRAP_FUNCTIONS: Final = frozenset(
    {
        "sum_over_time",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "first_over_time",
        "last_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "quantile_over_time",
        "rate_counter",
    }
)
VECTOR_OPS: Final = frozenset(
    {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk"}
)
_PRECEDENCE: Final = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    ">": 3,
    ">=": 3,
    "<": 3,
    "<=": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "^": 6,
}
COMPARISONS: Final = frozenset({"==", "!=", ">", ">=", "<", "<="})
SET_OPS: Final = frozenset({"and", "or", "unless"})
_LINE_FILTERS: Final = frozenset({"|=", "!=", "|~", "!~"})
_LABEL_OPS: Final = frozenset({"=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="})
_STRING_OPS: Final = frozenset({"=", "!=", "=~", "!~"})
_TEMPLATE_ACTION: Final = re.compile(
    r"\{\{-?\s*(\.[A-Za-z_][A-Za-z0-9_]*|__line__|__timestamp__)\s*-?\}\}"
)


# ----- regexes --------------------------------------------------------------------------------


def compile_regex(
    text: str, pos: int, source: str, *, search: bool, captures: bool = False
) -> LogRegex:
    """A query regex compiled with RE2 as Loki compiles it (see exporter.loki.regex).

    `search` for line filters and the regexp parser (unanchored); matchers are anchored. A
    pattern RE2 refuses is a parse error at its string, in Go's words.
    """
    try:
        return compile_logql(text, anchored=not search, captures=captures)
    except RegexError as err:
        raise position_error(source, str(err), pos) from None


def parse_template(text: str, pos: int, source: str) -> Template:
    """Check a line_format/label_format template and split it into text and label actions."""
    parts: list[tuple[bool, str]] = []
    i = 0
    while (start := text.find("{{", i)) >= 0:
        match = _TEMPLATE_ACTION.match(text, start)
        if match is None:
            end = text.find("}}", start)
            action = text[start : end + 2] if end >= 0 else text[start:]
            raise position_error(
                source, f"unsupported template action {action!r}; use {{{{.label}}}}", pos
            )
        if start > i:
            parts.append((False, text[i:start]))
        parts.append((True, match.group(1).lstrip(".")))
        i = match.end()
    if text[i:]:
        parts.append((False, text[i:]))
    return Template(text, tuple(parts))


# ----- parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = Lexer(text).tokens()
        self.i = 0
        self.depth = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != EOF:
            self.i += 1
        return tok

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        tok = tok or self.tok
        return position_error(self.text, message, tok.pos)

    def unexpected(self, expecting: str = "") -> ParseError:
        tok = self.tok
        found = tok.kind if tok.kind in (EOF, NUMBER, STRING, DURATION, BYTES) else repr(tok.text)
        if tok.kind == IDENT:
            found = f"identifier {tok.text!r}"
        hint = f", expecting {expecting}" if expecting else ""
        return self.error(f"syntax error: unexpected {found}{hint}")

    def expect(self, kind: str, what: str | None = None) -> Token:
        if self.tok.kind != kind:
            raise self.unexpected(what or repr(kind))
        return self.advance()

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == IDENT and self.tok.text in words

    def string(self, what: str = "a string") -> Token:
        return self.expect(STRING, what)

    # entry
    def parse(self) -> Expr:
        if self.tok.kind == EOF:
            raise self.error("syntax error: empty query")
        expr = self.expr(0)
        if self.tok.kind != EOF:
            raise self.unexpected("end of query")
        return expr

    # metric expressions
    def expr(self, min_prec: int) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error("query is nested too deeply")
        left_tok = self.tok
        left = self.unary()
        while True:
            op = self.tok.text if self.tok.kind in (IDENT, *_PRECEDENCE) else ""
            prec = _PRECEDENCE.get(op)
            if prec is None or prec < min_prec:
                break
            op_tok = self.advance()
            bool_mode = False
            if self.is_word("bool"):
                if op not in COMPARISONS:
                    raise self.error("bool modifier can only be used on comparison operators")
                self.advance()
                bool_mode = True
            matching = self.vector_matching()
            right_tok = self.tok
            # ^ is right-associative; everything else binds left.
            right = self.expr(prec if op == "^" else prec + 1)
            lhs = self.metric(left, left_tok)
            rhs = self.metric(right, right_tok)
            if op in SET_OPS and (isinstance(lhs, NumberLiteral) or isinstance(rhs, NumberLiteral)):
                raise self.error(f"set operator {op!r} is not allowed between scalars", op_tok)
            left = BinaryOp(op, lhs, rhs, bool_mode, matching)
        self.depth -= 1
        return left

    def metric(self, expr: Expr, tok: Token) -> MetricExpr:
        if isinstance(expr, LogQuery):
            raise self.error(
                "a log query cannot be used in a metric expression; "
                "wrap it in a range aggregation such as count_over_time(…[1m])",
                tok,
            )
        return expr

    def vector_matching(self) -> VectorMatching | None:
        if not self.is_word("on", "ignoring"):
            return None
        on = self.advance().text == "on"
        labels = self.label_list()
        if self.is_word("group_left", "group_right"):
            raise self.error("group_left and group_right are not supported")
        return VectorMatching(labels, on)

    def unary(self) -> Expr:
        tok = self.tok
        if tok.kind in ("-", "+"):
            self.advance()
            operand = self.metric(self.expr(_PRECEDENCE["^"]), self.tok)
            if tok.kind == "+":
                return operand
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value)
            return BinaryOp("*", NumberLiteral(-1.0), operand)
        return self.primary()

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == NUMBER:
            self.advance()
            return NumberLiteral(_number(tok.text))
        if tok.kind == "(":
            self.advance()
            inner = self.expr(0)
            self.expect(")", "')'")
            return inner
        if tok.kind == "{":
            return self.log_query()
        if tok.kind == IDENT:
            name = tok.text
            if name in RANGE_FUNCTIONS or name in UNWRAP_FUNCTIONS:
                return self.range_aggregation()
            if name in VECTOR_OPS:
                return self.vector_aggregation()
            if name == "vector":
                self.advance()
                self.expect("(", "'('")
                value = self.expect(NUMBER, "a number")
                self.expect(")", "')'")
                return VectorLiteral(_number(value.text))
            if name in ("inf", "Inf", "nan", "NaN"):
                self.advance()
                return NumberLiteral(float(name))
            if self.peek().kind == "(":
                raise self.error(f"unknown or unsupported function {name!r}")
        raise self.unexpected("a stream selector, a number or a function")

    def label_list(self) -> tuple[str, ...]:
        self.expect("(", "'('")
        names: list[str] = []
        while self.tok.kind != ")":
            names.append(self.expect(IDENT, "a label name").text)
            if self.tok.kind != ",":
                break
            self.advance()
        self.expect(")", "')'")
        return tuple(names)

    def grouping(self) -> Grouping | None:
        if not self.is_word("by", "without"):
            return None
        without = self.advance().text == "without"
        return Grouping(self.label_list(), without)

    def vector_aggregation(self) -> VectorAggregation:
        op_tok = self.advance()
        op = op_tok.text
        grouping = self.grouping()
        self.expect("(", "'('")
        param: MetricExpr | None = None
        if op in ("topk", "bottomk"):
            param_tok = self.tok
            param = self.metric(self.expr(0), param_tok)
            self.expect(",", "','")
        inner_tok = self.tok
        inner = self.metric(self.expr(0), inner_tok)
        self.expect(")", "')'")
        after = self.grouping()
        if after is not None:
            if grouping is not None:
                raise self.error("grouping given twice", op_tok)
            grouping = after
        if op in ("topk", "bottomk") and not isinstance(param, NumberLiteral):
            raise self.error(f"{op} needs a number as its first parameter", op_tok)
        return VectorAggregation(op, inner, grouping, param)

    def range_aggregation(self) -> RangeAggregation:
        func_tok = self.advance()
        func = func_tok.text
        self.expect("(", "'('")
        param: float | None = None
        if func == "quantile_over_time":
            param = _number(self.expect(NUMBER, "a quantile").text)
            self.expect(",", "','")
        query, range_ns = self.log_range()
        offset_ns = 0
        if self.is_word("offset"):
            self.advance()
            offset_ns = self.duration("an offset duration")
        self.expect(")", "')'")
        grouping = self.grouping()
        unwraps = [s for s in query.stages if isinstance(s, Unwrap)]
        if func in UNWRAP_FUNCTIONS:
            if not unwraps:
                raise self.error(f"{func} needs an unwrapped label: add | unwrap <label>", func_tok)
        elif unwraps:
            raise self.error(f"{func} does not take an unwrapped label", func_tok)
        elif grouping is not None:
            raise self.error(f"{func} does not take a grouping; use sum by (…)", func_tok)
        if len(unwraps) > 1:
            raise self.error("only one | unwrap is allowed", func_tok)
        return RangeAggregation(func, query, range_ns, offset_ns, param, grouping)

    def log_range(self) -> tuple[LogQuery, int]:
        start = self.tok
        selector = self.selector()
        range_ns: int | None = None
        if self.tok.kind == "[":
            range_ns = self.range()
        stages = self.pipeline(allow_unwrap=True)
        if self.tok.kind == "[":
            if range_ns is not None:
                raise self.error("range given twice")
            range_ns = self.range()
        if range_ns is None:
            raise self.unexpected("a range such as [5m]")
        return LogQuery(selector, stages, start.pos), range_ns

    def range(self) -> int:
        self.expect("[", "'['")
        ns = self.duration("a duration such as 5m")
        self.expect("]", "']'")
        return ns

    def duration(self, what: str) -> int:
        tok = self.tok
        if tok.kind != DURATION:
            raise self.unexpected(what)
        self.advance()
        ns = parse_duration(tok.text)
        if ns is None or ns <= 0:
            raise self.error(f"invalid duration {tok.text!r}", tok)
        return ns

    # log queries
    def log_query(self) -> LogQuery:
        start = self.tok
        selector = self.selector()
        stages = self.pipeline(allow_unwrap=False)
        return LogQuery(selector, stages, start.pos)

    def selector(self) -> StreamSelector:
        open_tok = self.expect("{", "'{'")
        matchers: list[Matcher] = []
        while self.tok.kind != "}":
            matchers.append(self.matcher())
            if self.tok.kind != ",":
                break
            self.advance()
        self.expect("}", "',' or '}'")
        if not matchers:
            raise self.error('queries require at least one matcher, such as {job="…"}', open_tok)
        return StreamSelector(tuple(matchers))

    def matcher(self) -> Matcher:
        name = self.expect(IDENT, "a label name").text
        op_tok = self.tok
        if op_tok.kind not in _STRING_OPS:
            raise self.unexpected("=, !=, =~ or !~")
        self.advance()
        value = self.string("a quoted label value")
        regex = None
        if op_tok.kind in ("=~", "!~"):
            regex = compile_regex(value.value, value.pos, self.text, search=False)
        op: MatchOp = op_tok.kind  # type: ignore[assignment]
        return Matcher(name, op, value.value, regex)

    def pipeline(self, *, allow_unwrap: bool) -> tuple[Stage, ...]:
        stages: list[Stage] = []
        while True:
            tok = self.tok
            if tok.kind in _LINE_FILTERS:
                stages.append(self.line_filter())
            elif tok.kind == "|":
                self.advance()
                stage = self.stage()
                if isinstance(stage, Unwrap) and not allow_unwrap:
                    raise self.error("| unwrap is only allowed inside a range aggregation", tok)
                stages.append(stage)
            elif tok.kind in ("|>", "!>"):
                raise self.error("pattern line filters (|> and !>) are not supported")
            else:
                return tuple(stages)

    def line_filter(self) -> LineFilter:
        op_tok = self.advance()
        values = [self.filter_value()]
        while self.is_word("or") and self.peek().kind == STRING:
            self.advance()
            values.append(self.filter_value())
        regexes: tuple[LogRegex, ...] = ()
        if op_tok.kind in ("|~", "!~"):
            regexes = tuple(compile_regex(v.value, v.pos, self.text, search=True) for v in values)
        op = op_tok.kind
        return LineFilter(op, tuple(v.value for v in values), regexes)  # type: ignore[arg-type]

    def filter_value(self) -> Token:
        if self.is_word("ip") and self.peek().kind == "(":
            raise self.error("ip() line filters are not supported")
        return self.string("a quoted filter value")

    def stage(self) -> Stage:
        tok = self.tok
        if tok.kind == IDENT:
            word = tok.text
            follower = self.peek().kind
            # A label filter may use any label name, even "json": it is followed by an operator.
            if follower not in _LABEL_OPS:
                if word == "json":
                    return self.parser_stage("json")
                if word == "logfmt":
                    return self.parser_stage("logfmt")
                if word == "regexp":
                    self.advance()
                    value = self.string("a regular expression")
                    regex = compile_regex(
                        value.value, value.pos, self.text, search=True, captures=True
                    )
                    if not regex.names:
                        raise self.error("at least one named capture must be supplied", value)
                    return Parser("regexp", (), regex)
                if word == "line_format":
                    self.advance()
                    value = self.string("a template string")
                    return LineFormat(parse_template(value.value, value.pos, self.text))
                if word == "label_format":
                    return self.label_format()
                if word in ("drop", "keep"):
                    return self.drop_keep(word)
                if word == "unwrap":
                    return self.unwrap()
                if word in ("pattern", "unpack", "decolorize", "distinct"):
                    raise self.error(f"| {word} is not supported")
        if tok.kind in (IDENT, "("):
            return LabelFilter(self.label_or())
        raise self.unexpected("a parser, a label filter or a formatting stage")

    def parser_stage(self, kind: Literal["json", "logfmt"]) -> Parser:
        self.advance()
        while kind == "logfmt" and self.tok.kind == "-" and self.peek().kind == "-":
            self.advance()
            self.advance()
            flag = self.expect(IDENT, "a logfmt flag")
            if flag.text not in ("strict", "keep_empty"):
                raise self.error(f"unknown logfmt flag --{flag.text}", flag)
        params: list[tuple[str, str]] = []
        while self.tok.kind == IDENT:
            name = self.advance().text
            path = name
            if self.tok.kind == "=":
                self.advance()
                path = self.string("a quoted path").value
            params.append((name, path))
            if self.tok.kind != ",":
                break
            self.advance()
        for name, path in params:
            if kind == "json" and _json_path(path) is None:
                raise self.error(f"invalid JSON path {path!r} for {name!r}")
        return Parser(kind, tuple(params))

    def label_format(self) -> LabelFormat:
        self.advance()
        items: list[tuple[str, str | Template]] = []
        while True:
            name = self.expect(IDENT, "a label name").text
            self.expect("=", "'='")
            if self.tok.kind == STRING:
                value = self.advance()
                items.append((name, parse_template(value.value, value.pos, self.text)))
            else:
                items.append((name, self.expect(IDENT, "a label name or a template").text))
            if self.tok.kind != ",":
                return LabelFormat(tuple(items))
            self.advance()

    def drop_keep(self, word: str) -> DropLabels | KeepLabels:
        self.advance()
        names: list[str] = []
        matchers: list[Matcher] = []
        while True:
            if self.tok.kind == IDENT and self.peek().kind in _STRING_OPS:
                matchers.append(self.matcher())
            else:
                names.append(self.expect(IDENT, "a label name").text)
            if self.tok.kind != ",":
                break
            self.advance()
        if word == "drop":
            return DropLabels(tuple(names), tuple(matchers))
        return KeepLabels(tuple(names), tuple(matchers))

    def unwrap(self) -> Unwrap:
        self.advance()
        name = self.expect(IDENT, "a label name").text
        if name in ("bytes", "duration", "duration_seconds") and self.tok.kind == "(":
            self.advance()
            label = self.expect(IDENT, "a label name").text
            self.expect(")", "')'")
            return Unwrap(label, name)  # type: ignore[arg-type]
        return Unwrap(name)

    def label_or(self) -> LabelPredicate:
        left = self.label_and()
        while self.is_word("or"):
            self.advance()
            left = LabelOr(left, self.label_and())
        return left

    def label_and(self) -> LabelPredicate:
        left = self.label_atom()
        while True:
            if self.is_word("and") or self.tok.kind == ",":
                self.advance()
            elif not (
                self.tok.kind == "(" or (self.tok.kind == IDENT and self.peek().kind in _LABEL_OPS)
            ):
                return left
            left = LabelAnd(left, self.label_atom())

    def label_atom(self) -> LabelPredicate:
        if self.tok.kind == "(":
            self.advance()
            inner = self.label_or()
            self.expect(")", "')'")
            return inner
        name = self.expect(IDENT, "a label name").text
        op_tok = self.tok
        if op_tok.kind not in _LABEL_OPS:
            raise self.unexpected("a comparison operator")
        self.advance()
        op: CompareOp = op_tok.kind  # type: ignore[assignment]
        value = self.tok
        if value.kind == STRING:
            if op not in _STRING_OPS:
                raise self.error(f"operator {op} needs a number, duration or size", value)
            self.advance()
            regex = None
            if op in ("=~", "!~"):
                regex = compile_regex(value.value, value.pos, self.text, search=False)
            return LabelCompare(name, op, "string", value.value, regex=regex)
        if op in ("=~", "!~"):
            raise self.unexpected("a quoted regex")
        if value.kind not in (NUMBER, DURATION, BYTES):
            raise self.unexpected("a string, number, duration or size")
        self.advance()
        number_op: CompareOp = "==" if op == "=" else op
        if value.kind == NUMBER:
            return LabelCompare(name, number_op, "number", value.text, _number(value.text))
        if value.kind == DURATION:
            ns = parse_duration(value.text)
            assert ns is not None  # the lexer only makes DURATION tokens that parse
            return LabelCompare(name, number_op, "duration", value.text, ns / 1e9)
        size = parse_bytes(value.text)
        assert size is not None
        return LabelCompare(name, number_op, "bytes", value.text, size)


def _number(text: str) -> float:
    if text.lower().startswith("0x"):
        return float(int(text, 16))
    return float(text)


_PATH_PART: Final = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def _json_path(path: str) -> tuple[str | int, ...] | None:
    """`a.b[0]["c d"]` as (a, b, 0, "c d"); None when it is not a path."""
    parts: list[str | int] = []
    i = 0
    while i < len(path):
        match = _PATH_PART.match(path, i)
        if match is None or match.end() == i:
            return None
        name, index, quoted = match.groups()
        if name is not None:
            parts.append(name)
        elif index is not None:
            parts.append(int(index))
        else:
            parts.append(quoted.replace('\\"', '"'))
        i = match.end()
    return tuple(parts) if parts else None


def json_path(path: str) -> tuple[str | int, ...]:
    """The parts of a JSON path already checked by the parser."""
    parts = _json_path(path)
    assert parts is not None
    return parts


def parse(text: str) -> Expr:
    """Parse a LogQL query; raises ParseError with Loki's `parse error at line L, col C` form."""
    if len(text) > MAX_QUERY_LENGTH:
        raise ParseError(f"query is longer than {MAX_QUERY_LENGTH} characters", 1, 1)
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise ParseError("query is nested too deeply", 1, 1) from None
