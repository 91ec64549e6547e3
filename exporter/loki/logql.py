"""LogQL: the metric grammar on top of the pipeline grammar, and `parse`, with positioned errors.

The lexer (exporter.loki.lexer), the syntax tree (exporter.loki.syntax), the keyword tables
(exporter.loki.grammar) and selectors/pipelines (exporter.loki.stage_grammar) live beside it;
the names below are re-exported so callers import one module.
"""

from __future__ import annotations

from typing import Final

from exporter.loki.grammar import (
    COMPARISONS,
    GROUPING_RANGE_FUNCTIONS,
    LOG_RANGE_FUNCTIONS,
    PARAM_OPS,
    PRECEDENCE,
    RANGE_FUNCTIONS,
    SET_OPS,
    UNWRAP_FUNCTIONS,
    VECTOR_OPS,
)
from exporter.loki.lexer import (
    DURATION,
    EOF,
    IDENT,
    NUMBER,
    STRING,
    Lexer,
    ParseError,
    Token,
    parse_bytes,
    parse_duration,
    position_error,
)
from exporter.loki.stage_grammar import (
    PipelineGrammar,
    compile_regex,
    json_path,
    number,
    parse_template,
)
from exporter.loki.syntax import (
    BinaryOp,
    Decolorize,
    DropLabels,
    Expr,
    Grouping,
    KeepLabels,
    LabelAnd,
    LabelCompare,
    LabelFilter,
    LabelFormat,
    LabelOr,
    LabelPredicate,
    LabelReplace,
    LineFilter,
    LineFormat,
    LogQuery,
    Matcher,
    MetricExpr,
    NumberLiteral,
    Parser,
    RangeAggregation,
    Stage,
    StreamSelector,
    Template,
    Unwrap,
    VectorAggregation,
    VectorLiteral,
    VectorMatching,
)

__all__ = [
    "COMPARISONS",
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "SET_OPS",
    "BinaryOp",
    "Decolorize",
    "DropLabels",
    "Expr",
    "Grouping",
    "KeepLabels",
    "LabelAnd",
    "LabelCompare",
    "LabelFilter",
    "LabelFormat",
    "LabelOr",
    "LabelPredicate",
    "LabelReplace",
    "LineFilter",
    "LineFormat",
    "LogQuery",
    "Matcher",
    "MetricExpr",
    "NumberLiteral",
    "ParseError",
    "Parser",
    "RangeAggregation",
    "Stage",
    "StreamSelector",
    "Template",
    "Unwrap",
    "VectorAggregation",
    "VectorLiteral",
    "VectorMatching",
    "compile_regex",
    "json_path",
    "parse",
    "parse_bytes",
    "parse_duration",
    "parse_template",
    "position_error",
]

MAX_QUERY_LENGTH: Final = 16_384
MAX_DEPTH: Final = 64
_LABEL_NAME_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
)


def _is_scalar(expr: MetricExpr) -> bool:
    if isinstance(expr, NumberLiteral):
        return True
    if isinstance(expr, BinaryOp):
        return _is_scalar(expr.left) and _is_scalar(expr.right)
    return False


class _Parser(PipelineGrammar):
    def __init__(self, text: str) -> None:
        super().__init__(text, Lexer(text).tokens())

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
            op = self.tok.text if self.tok.kind in (IDENT, *PRECEDENCE) else ""
            prec = PRECEDENCE.get(op)
            if prec is None or prec < min_prec:
                break
            op_tok = self.advance()
            bool_mode = False
            if self.is_word("bool"):
                if op not in COMPARISONS:
                    raise self.error("bool modifier can only be used on comparison operators")
                self.advance()
                bool_mode = True
            matching = self.vector_matching(op)
            right_tok = self.tok
            # ^ is right-associative; everything else binds left.
            right = self.expr(prec if op == "^" else prec + 1)
            lhs = self.metric(left, left_tok)
            rhs = self.metric(right, right_tok)
            if op in SET_OPS and (_is_scalar(lhs) or _is_scalar(rhs)):
                raise self.error(f"set operator {op!r} is not allowed between scalars", op_tok)
            if op in COMPARISONS and not bool_mode and _is_scalar(lhs) and _is_scalar(rhs):
                raise self.error("comparisons between scalars must use BOOL modifier", op_tok)
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

    def vector_matching(self, op: str) -> VectorMatching | None:
        labels: tuple[str, ...] = ()
        on = False
        given = self.is_word("on", "ignoring")
        if given:
            on = self.advance().text == "on"
            labels = self.label_list()
        if not self.is_word("group_left", "group_right"):
            return VectorMatching(labels, on) if given else None
        side_tok = self.advance()
        if op in SET_OPS:
            raise self.error(f'no grouping allowed for "{op}" operation', side_tok)
        include = self.label_list() if self.tok.kind == "(" else ()
        if side_tok.text == "group_left":
            return VectorMatching(labels, on, "many-to-one", include)
        return VectorMatching(labels, on, "one-to-many", include)

    def unary(self) -> Expr:
        tok = self.tok
        if tok.kind in ("-", "+"):
            self.advance()
            operand = self.metric(self.expr(PRECEDENCE["^"]), self.tok)
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
            return NumberLiteral(number(tok.text))
        if tok.kind == "(":
            self.advance()
            inner = self.expr(0)
            self.expect(")", "')'")
            return inner
        if tok.kind == "{":
            return self.log_query()
        if tok.kind == IDENT:
            name = tok.text
            if name in RANGE_FUNCTIONS:
                return self.range_aggregation()
            if name in VECTOR_OPS:
                return self.vector_aggregation()
            if name == "label_replace":
                return self.label_replace()
            if name == "vector":
                self.advance()
                self.expect("(", "'('")
                sign = -1.0 if self.tok.kind == "-" and self.advance() else 1.0
                value = self.expect(NUMBER, "a number")
                self.expect(")", "')'")
                return VectorLiteral(sign * number(value.text))
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
        if op in PARAM_OPS:
            param = self.k_parameter(op)
            self.expect(",", "','")
        inner_tok = self.tok
        inner = self.metric(self.expr(0), inner_tok)
        self.expect(")", "')'")
        after = self.grouping()
        if after is not None:
            if grouping is not None:
                raise self.error("grouping given twice", op_tok)
            grouping = after
        if grouping is not None and op in ("sort", "sort_desc"):
            raise self.error("sort and sort_desc doesn't allow grouping by", op_tok)
        if grouping is not None and op == "approx_topk":
            raise self.error(f"grouping not allowed for {op} aggregation", op_tok)
        return VectorAggregation(op, inner, grouping, param)

    def k_parameter(self, op: str) -> NumberLiteral:
        """topk's k: Loki takes a whole number above zero, nothing else."""
        tok = self.tok
        if tok.kind != NUMBER:
            raise self.unexpected("a number")
        self.advance()
        if not tok.text.isdigit():
            raise self.error(f"invalid parameter {op}({tok.text},", tok)
        if int(tok.text) <= 0:
            raise self.error(f"invalid parameter (must be greater than 0) {op}({tok.text}", tok)
        return NumberLiteral(float(int(tok.text)))

    def label_replace(self) -> LabelReplace:
        self.advance()
        self.expect("(", "'('")
        inner_tok = self.tok
        inner = self.metric(self.expr(0), inner_tok)
        args: list[Token] = []
        for _ in range(4):
            self.expect(",", "','")
            args.append(self.expect(STRING, "a string"))
        self.expect(")", "')'")
        dst, replacement, src, pattern = args
        if not dst.value or not set(dst.value) <= _LABEL_NAME_CHARS or dst.value[0].isdigit():
            raise self.error(f"invalid destination label name in label_replace: {dst.value}", dst)
        try:
            regex = compile_regex(
                pattern.value, pattern.pos, self.text, search=False, captures=True
            )
        except ParseError as err:
            raise self.error(f"invalid regex in label_replace: {err}", pattern) from None
        return LabelReplace(inner, dst.value, replacement.value, src.value, regex)

    def range_aggregation(self) -> RangeAggregation:
        func_tok = self.advance()
        func = func_tok.text
        self.expect("(", "'('")
        param: float | None = None
        if func == "quantile_over_time":
            sign = -1.0 if self.tok.kind == "-" and self.advance() else 1.0
            param = sign * number(self.expect(NUMBER, "a quantile").text)
            self.expect(",", "','")
        query, range_ns, offset_ns = self.log_range()
        self.expect(")", "')'")
        grouping = self.grouping()
        unwraps = [s for s in query.stages if isinstance(s, Unwrap)]
        if len(unwraps) > 1:
            raise self.error("only one | unwrap is allowed", func_tok)
        if grouping is not None and func not in GROUPING_RANGE_FUNCTIONS:
            raise self.error(f"grouping not allowed for {func} aggregation", func_tok)
        if unwraps and func not in UNWRAP_FUNCTIONS:
            raise self.error(f"invalid aggregation {func} with unwrap", func_tok)
        if not unwraps and func not in LOG_RANGE_FUNCTIONS:
            raise self.error(f"invalid aggregation {func} without unwrap", func_tok)
        return RangeAggregation(func, query, range_ns, offset_ns, param, grouping)

    def log_range(self) -> tuple[LogQuery, int, int]:
        """`{…} | … [5m]`, `{…}[5m] | …`, `({…} | …)[5m]`, each with an optional offset."""
        start = self.tok
        closing = self.tok.kind == "("
        if closing:
            self.advance()
        selector = self.selector()
        range_ns: int | None = None
        if self.tok.kind == "[":
            range_ns = self.range()
        stages = self.pipeline(allow_unwrap=True)
        if self.tok.kind == "[":
            if range_ns is not None:
                raise self.error("range given twice")
            range_ns = self.range()
        offset_ns = self.offset()
        if closing:
            self.expect(")", "')'")
            if range_ns is None and self.tok.kind == "[":
                range_ns = self.range()
            offset_ns = offset_ns or self.offset()
        if range_ns is None:
            raise self.unexpected("a range such as [5m]")
        return LogQuery(selector, stages, start.pos), range_ns, offset_ns

    def offset(self) -> int:
        if not self.is_word("offset"):
            return 0
        self.advance()
        sign = 1
        if self.tok.kind == "-":
            self.advance()
            sign = -1
        return sign * self.duration("an offset duration")

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


def parse(text: str) -> Expr:
    """Parse a LogQL query; raises ParseError with Loki's `parse error at line L, col C` form."""
    if len(text) > MAX_QUERY_LENGTH:
        raise ParseError(f"query is longer than {MAX_QUERY_LENGTH} characters", 1, 1)
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise ParseError("query is nested too deeply", 1, 1) from None
