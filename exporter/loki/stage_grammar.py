"""LogQL's log-query grammar: stream selectors and every pipeline stage, parsed from tokens."""

from __future__ import annotations

import re
from typing import Final, Literal

from exporter.loki.grammar import (
    LABEL_OPS,
    LINE_FILTERS,
    LOGFMT_FLAGS,
    STRING_OPS,
    UNWRAP_CONVERSIONS,
)
from exporter.loki.lexer import (
    BYTES,
    DURATION,
    EOF,
    IDENT,
    NUMBER,
    STRING,
    ParseError,
    Token,
    parse_bytes,
    parse_duration,
    position_error,
)
from exporter.loki.netmatch import IpMatch, IpPatternError, parse_ip
from exporter.loki.patterns import Pattern, PatternError, parse_pattern
from exporter.loki.regex import LogRegex, RegexError, compile_logql
from exporter.loki.syntax import (
    CompareOp,
    Decolorize,
    DropLabels,
    KeepLabels,
    LabelAnd,
    LabelCompare,
    LabelFilter,
    LabelFormat,
    LabelOr,
    LabelPredicate,
    LineFilter,
    LineFormat,
    LogQuery,
    Matcher,
    MatchOp,
    Parser,
    Stage,
    StreamSelector,
    Template,
    Unwrap,
)
from exporter.loki.templates import TemplateSyntaxError, compile_template

_FLAG: Final = re.compile(r"--([A-Za-z_-]+)")
EMPTY_SELECTOR: Final = (
    "queries require at least one regexp or equality matcher that does not have an "
    'empty-compatible value. For instance, app=~".*" does not meet this requirement, '
    'but app=~".+" will'
)


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
    """A line_format/label_format template compiled once; Go's words when it does not parse."""
    try:
        return Template(text, compile_template(text))
    except TemplateSyntaxError as err:
        raise position_error(source, f"template: {err}", pos) from None


class Cursor:
    """Tokens of one query and the helpers every grammar rule uses."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.depth = 0

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


class PipelineGrammar(Cursor):
    """Selectors and pipeline stages; the metric grammar (exporter.loki.logql) builds on it."""

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
        # Loki refuses a selector every stream would pass: one matcher must rule out "".
        if all(m.matches("") for m in matchers):
            raise self.error(EMPTY_SELECTOR, open_tok)
        return StreamSelector(tuple(matchers))

    def matcher(self) -> Matcher:
        name = self.expect(IDENT, "a label name").text
        op_tok = self.tok
        if op_tok.kind not in STRING_OPS:
            raise self.unexpected("=, !=, =~ or !~")
        self.advance()
        value = self.string("a quoted label value")
        regex = None
        if op_tok.kind in ("=~", "!~"):
            regex = compile_regex(value.value, value.pos, self.text, search=False)
        op: MatchOp = op_tok.kind  # type: ignore[assignment]
        return Matcher(name, op, value.value, regex)

    def log_query(self) -> LogQuery:
        start = self.tok
        selector = self.selector()
        stages = self.pipeline(allow_unwrap=False)
        return LogQuery(selector, stages, start.pos)

    def pipeline(self, *, allow_unwrap: bool) -> tuple[Stage, ...]:
        stages: list[Stage] = []
        while True:
            tok = self.tok
            if tok.kind in LINE_FILTERS:
                stages.append(self.line_filter())
            elif tok.kind == "|":
                self.advance()
                stage = self.stage()
                if isinstance(stage, Unwrap) and not allow_unwrap:
                    raise self.error("| unwrap is only allowed inside a range aggregation", tok)
                stages.append(stage)
            else:
                return tuple(stages)

    # line filters
    def line_filter(self) -> LineFilter:
        op_tok = self.advance()
        op = op_tok.kind
        if self.is_word("ip") and self.peek().kind == "(":
            return self.ip_filter(op_tok)
        values = [self.string("a quoted filter value")]
        while self.is_word("or") and self.peek().kind == STRING:
            self.advance()
            values.append(self.advance())
        regexes: tuple[LogRegex, ...] = ()
        patterns: tuple[Pattern, ...] = ()
        if op in ("|~", "!~"):
            regexes = tuple(compile_regex(v.value, v.pos, self.text, search=True) for v in values)
        elif op in ("|>", "!>"):
            patterns = tuple(self.pattern(v, need_capture=False) for v in values)
        texts = tuple(v.value for v in values)
        return LineFilter(op, texts, regexes, patterns)  # type: ignore[arg-type]

    def ip_filter(self, op_tok: Token) -> LineFilter:
        if op_tok.kind not in ("|=", "!="):
            raise self.error(f"ip() cannot be used with {op_tok.kind}; use |= or !=", op_tok)
        ip = self.ip_call()
        return LineFilter(op_tok.kind, (ip.source,), ips=(ip,))  # type: ignore[arg-type]

    def ip_call(self) -> IpMatch:
        self.advance()
        self.expect("(", "'('")
        value = self.string("a quoted IP, range or CIDR")
        self.expect(")", "')'")
        try:
            return parse_ip(value.value)
        except IpPatternError as err:
            raise self.error(str(err), value) from None

    def pattern(self, value: Token, *, need_capture: bool) -> Pattern:
        try:
            return parse_pattern(value.value, need_capture=need_capture)
        except PatternError as err:
            raise self.error(str(err), value) from None

    # stages after `|`
    def stage(self) -> Stage:
        tok = self.tok
        if tok.kind == IDENT and self.peek().kind not in LABEL_OPS:
            # A label filter may use any label name, even "json": it is followed by an operator.
            word = tok.text
            if word in ("json", "logfmt"):
                return self.parser_stage(word)  # type: ignore[arg-type]
            if word == "regexp":
                self.advance()
                value = self.string("a regular expression")
                regex = compile_regex(value.value, value.pos, self.text, search=True, captures=True)
                if not regex.names:
                    raise self.error("at least one named capture must be supplied", value)
                return Parser("regexp", (), regex)
            if word == "pattern":
                self.advance()
                value = self.string("a quoted pattern")
                return Parser("pattern", pattern=self.pattern(value, need_capture=True))
            if word == "unpack":
                self.advance()
                return Parser("unpack")
            if word == "decolorize":
                self.advance()
                return Decolorize()
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
            if word == "distinct":
                raise self.error("| distinct is not supported")
        if tok.kind in (IDENT, "("):
            return LabelFilter(self.label_or())
        raise self.unexpected("a parser, a label filter or a formatting stage")

    def parser_stage(self, kind: Literal["json", "logfmt"]) -> Parser:
        self.advance()
        strict = keep_empty = False
        while kind == "logfmt" and self.tok.kind == "-":
            flag = _FLAG.match(self.text, self.tok.pos)
            if flag is None or flag.group(1) not in LOGFMT_FLAGS:
                raise self.error(
                    f"unknown logfmt flag {flag.group() if flag else '-'}; "
                    "use --strict or --keep-empty"
                )
            while self.tok.kind != EOF and self.tok.pos < flag.end():
                self.advance()
            strict |= flag.group(1) == "strict"
            keep_empty |= flag.group(1) == "keep-empty"
        params: list[tuple[str, str]] = []
        while self.tok.kind == IDENT:
            name_tok = self.advance()
            path = name_tok.text
            if self.tok.kind == "=":
                self.advance()
                path = self.string("a quoted path").value
            if kind == "json" and json_path_parts(path) is None:
                raise self.error(f"invalid JSON path {path!r} for {name_tok.text!r}", name_tok)
            params.append((name_tok.text, path))
            if self.tok.kind != ",":
                break
            self.advance()
        return Parser(kind, tuple(params), strict=strict, keep_empty=keep_empty)

    def label_format(self) -> LabelFormat:
        self.advance()
        items: list[tuple[str, str | Template]] = []
        seen: set[str] = set()
        while True:
            name_tok = self.expect(IDENT, "a label name")
            if name_tok.text in seen:
                raise self.error(f"multiple label name '{name_tok.text}' not allowed", name_tok)
            seen.add(name_tok.text)
            self.expect("=", "'='")
            if self.tok.kind == STRING:
                value = self.advance()
                items.append((name_tok.text, parse_template(value.value, value.pos, self.text)))
            else:
                items.append((name_tok.text, self.expect(IDENT, "a label or a template").text))
            if self.tok.kind != ",":
                return LabelFormat(tuple(items))
            self.advance()

    def drop_keep(self, word: str) -> DropLabels | KeepLabels:
        self.advance()
        names: list[str] = []
        matchers: list[Matcher] = []
        while True:
            if self.tok.kind == IDENT and self.peek().kind in STRING_OPS:
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
        if name in UNWRAP_CONVERSIONS and self.tok.kind == "(":
            self.advance()
            label = self.expect(IDENT, "a label name").text
            self.expect(")", "')'")
            return Unwrap(label, name)  # type: ignore[arg-type]
        return Unwrap(name)

    # label filters
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
                self.tok.kind == "(" or (self.tok.kind == IDENT and self.peek().kind in LABEL_OPS)
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
        if op_tok.kind not in LABEL_OPS:
            raise self.unexpected("a comparison operator")
        self.advance()
        op: CompareOp = op_tok.kind  # type: ignore[assignment]
        value = self.tok
        if value.kind == STRING:
            if op not in STRING_OPS:
                raise self.error(f"operator {op} needs a number, duration or size", value)
            self.advance()
            regex = None
            if op in ("=~", "!~"):
                regex = compile_regex(value.value, value.pos, self.text, search=False)
            return LabelCompare(name, op, "string", value.value, regex=regex)
        if self.is_word("ip") and self.peek().kind == "(":
            if op not in ("=", "!="):
                raise self.error(f"ip() cannot be used with {op}; use = or !=", op_tok)
            ip = self.ip_call()
            return LabelCompare(name, op, "ip", ip.source, ip=ip)
        if op in ("=~", "!~"):
            raise self.unexpected("a quoted regex")
        sign = 1.0
        if value.kind in ("-", "+") and self.peek().kind in (NUMBER, DURATION, BYTES):
            sign = -1.0 if value.kind == "-" else 1.0
            self.advance()
            value = self.tok
        if value.kind not in (NUMBER, DURATION, BYTES):
            raise self.unexpected("a string, number, duration or size")
        self.advance()
        number_op: CompareOp = "==" if op == "=" else op
        text = ("-" if sign < 0 else "") + value.text
        if value.kind == NUMBER:
            return LabelCompare(name, number_op, "number", text, sign * number(value.text))
        if value.kind == DURATION:
            ns = parse_duration(value.text)
            assert ns is not None  # the lexer only makes DURATION tokens that parse
            return LabelCompare(name, number_op, "duration", text, sign * ns / 1e9)
        size = parse_bytes(value.text)
        assert size is not None
        return LabelCompare(name, number_op, "bytes", text, sign * size)


def number(text: str) -> float:
    """A NUMBER token's value (decimal, exponent or hex)."""
    if text.lower().startswith("0x"):
        return float(int(text, 16))
    return float(text)


_PATH_PART: Final = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def json_path_parts(path: str) -> tuple[str | int, ...] | None:
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
    parts = json_path_parts(path)
    assert parts is not None
    return parts
