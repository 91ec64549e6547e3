"""LogQL's syntax tree: what a parsed query is made of, from selectors to binary operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from exporter.loki.netmatch import IpMatch
from exporter.loki.patterns import Pattern
from exporter.loki.regex import LogRegex
from exporter.loki.templates import Program

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
    """`|= "a" or "b"`, `!= …`, `|~ …`, `!~ …`, `|> "<_> x"`, `!> …`, `|= ip("…")`."""

    op: Literal["|=", "!=", "|~", "!~", "|>", "!>"]
    values: tuple[str, ...]
    regexes: tuple[LogRegex, ...] = field(default=(), compare=False)
    patterns: tuple[Pattern, ...] = field(default=(), compare=False)
    ips: tuple[IpMatch, ...] = field(default=(), compare=False)
    """Set for `|= ip("…")` / `!= ip("…")`: the values are address patterns."""


@dataclass(frozen=True, slots=True)
class Parser:
    """`| json`, `| logfmt [--strict] [--keep-empty]`, `| regexp`, `| pattern`, `| unpack`."""

    kind: Literal["json", "logfmt", "regexp", "pattern", "unpack"]
    params: tuple[tuple[str, str], ...] = ()
    regex: LogRegex | None = field(default=None, compare=False)
    pattern: Pattern | None = field(default=None, compare=False)
    strict: bool = False
    keep_empty: bool = False


@dataclass(frozen=True, slots=True)
class Decolorize:
    """`| decolorize`: strip ANSI colour codes from the line."""


CompareOp: TypeAlias = Literal["=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="]


@dataclass(frozen=True, slots=True)
class LabelCompare:
    """One label test: a string match, or a number, duration or byte-size comparison."""

    name: str
    op: CompareOp
    kind: Literal["string", "number", "duration", "bytes", "ip"]
    text: str = ""
    number: float = 0.0
    regex: LogRegex | None = field(default=None, compare=False)
    ip: IpMatch | None = field(default=None, compare=False)


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
    """A Go text/template, compiled (exporter.loki.templates)."""

    source: str
    program: Program = field(compare=False)


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
    LineFilter
    | Parser
    | LabelFilter
    | LineFormat
    | LabelFormat
    | DropLabels
    | KeepLabels
    | Unwrap
    | Decolorize
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
    """`on (a)` / `ignoring (a)`, optionally `group_left (b)` / `group_right (b)`."""

    labels: tuple[str, ...]
    on: bool
    card: Literal["one-to-one", "many-to-one", "one-to-many"] = "one-to-one"
    include: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BinaryOp:
    """Arithmetic, comparison or set operation between scalars and vectors."""

    op: str
    left: MetricExpr
    right: MetricExpr
    bool_mode: bool = False
    matching: VectorMatching | None = None


@dataclass(frozen=True, slots=True)
class LabelReplace:
    """`label_replace(v, "dst", "replacement", "src", "regex")`, as in Prometheus."""

    expr: MetricExpr
    dst: str
    replacement: str
    src: str
    regex: LogRegex = field(compare=False)


MetricExpr: TypeAlias = (
    RangeAggregation | VectorAggregation | NumberLiteral | VectorLiteral | BinaryOp | LabelReplace
)
Expr: TypeAlias = LogQuery | MetricExpr
