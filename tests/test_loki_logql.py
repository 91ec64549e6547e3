"""LogQL parsing: what Grafana and people write parses to the right tree; the rest fails clearly."""

from __future__ import annotations

import re

import pytest

from exporter.loki import logql
from exporter.loki.logql import (
    BinaryOp,
    DropLabels,
    Grouping,
    KeepLabels,
    LabelAnd,
    LabelCompare,
    LabelFilter,
    LabelFormat,
    LabelOr,
    LineFilter,
    LineFormat,
    LogQuery,
    NumberLiteral,
    ParseError,
    Parser,
    RangeAggregation,
    Unwrap,
    VectorAggregation,
    VectorLiteral,
    parse,
)
from exporter.loki.pipeline import Pipeline, parse_logfmt, sanitize_key


@pytest.mark.parametrize(
    "query",
    [
        "vector(1)+vector(1)",
        '{job="shopper-events"}',
        "{job=`shopper-events`}",
        '{job="shopper-events", type!="search", activity=~"Cart|Checkout", membership!~"Free"}',
        '{job="x",}',
        '{job="x"} |= ``',
        '{job="x"} |= "a" or "b" or `c`',
        '{job="x"} != "a" |~ "(?i)error" !~ `debug.*`',
        '{job="x"} | json',
        '{job="x"} | json a="x.y", b="items[0]", c=`m["k"]`',
        '{job="x"} | json a, b',
        '{job="x"} | logfmt',
        '{job="x"} | logfmt --strict a="b"',
        '{job="x"} | regexp "(?P<user>\\\\w+) bought"',
        '{job="x"} | json | __error__=""',
        '{job="x"} | json | __error__=``',
        '{job="x"} | json | status >= 500 and level="error" or (a="b", c!~"d")',
        '{job="x"} | json | cartValue > 10.5 cartValue < 100',
        '{job="x"} | logfmt | duration > 10s | size <= 20MB',
        '{job="x"} | json | label = `value`',
        '{job="x"} | line_format "{{.userName}} {{ .type }}"',
        '{job="x"} | line_format `{{.a}}`',
        '{job="x"} | label_format who=userName, what="{{.type}}!"',
        '{job="x"} | drop __error__',
        '{job="x"} | drop a, b, c="v"',
        '{job="x"} | keep type, activity',
        'count_over_time({job="x"}[5m])',
        'count_over_time({job="x"} |= "a" [5m])',
        'count_over_time({job="x"}[5m] |= "a")',
        'rate({job="x"}[30s])',
        'bytes_over_time({job="x"}[1h])',
        'bytes_rate({job="x"}[1h])',
        'sum by (type) (count_over_time({job="shopper-events"}[1m]))',
        'sum by(type) (count_over_time({job="shopper-events"}[1m]))',
        'sum(count_over_time({job="x"}[1m])) by (type)',
        'sum without (activity) (rate({job="x"}[1m]))',
        'sum by (level, detected_level) (count_over_time({job="x"} | drop __error__[1m]))',
        'sum by (level) (count_over_time({job="x"} |= `` | drop __error__[15s]))',
        'topk(3, sum by (activity) (rate({job="x"}[5m])))',
        'bottomk by (type) (2, rate({job="x"}[5m]))',
        'avg(rate({job="x"}[1m])) / 2',
        'sum(rate({a="b"}[1m])) / sum(rate({a="c"}[1m])) * 100',
        'sum(rate({a="b"}[1m])) > 0',
        'sum(rate({a="b"}[1m])) > bool 0',
        'sum by (t) (rate({a="b"}[1m])) / on (t) sum by (t) (rate({a="c"}[1m]))',
        'rate({a="b"}[1m]) and rate({a="c"}[1m])',
        'sum_over_time({job="x"} | json | unwrap cartValue [1h])',
        'max_over_time({job="x"} | json | unwrap cartValue | __error__="" [1h]) by (type)',
        'quantile_over_time(0.99, {job="x"} | logfmt | unwrap duration(took) [5m])',
        'count_over_time({job="x"}[5m] offset 1h)',
        "1 + 2 * 3 - 4 / 2 % 3 ^ 2",
        "-1",
        "(vector(1))",
        '{job="x"}  # a comment\n |= "a"',
    ],
)
def test_valid_queries_parse(query: str) -> None:
    """Queries that Loki accepts and Grafana generates parse without error."""
    assert parse(query) is not None


def test_health_check_tree() -> None:
    """The health check is a sum of two vector literals."""
    assert parse("vector(1)+vector(1)") == BinaryOp("+", VectorLiteral(1.0), VectorLiteral(1.0))


def test_explore_log_volume_tree() -> None:
    """Explore's log-volume query: sum by two labels over a range with a drop before it."""
    expr = parse('sum by (level, detected_level) (count_over_time({job="x"} | drop __error__[1m]))')
    assert isinstance(expr, VectorAggregation)
    assert expr.op == "sum"
    assert expr.grouping == Grouping(("level", "detected_level"))
    inner = expr.expr
    assert isinstance(inner, RangeAggregation)
    assert inner.func == "count_over_time"
    assert inner.range_ns == 60 * 10**9
    assert inner.query.stages == (DropLabels(("__error__",)),)


def test_grouping_after_the_expression() -> None:
    """`sum(…) by (x)` groups the same as `sum by (x) (…)`."""
    after = parse('sum(count_over_time({job="x"}[1m])) by (type)')
    before = parse('sum by (type) (count_over_time({job="x"}[1m]))')
    assert after == before


def test_range_before_or_after_the_pipeline() -> None:
    """The range may follow the selector or the pipeline."""
    assert parse('count_over_time({a="b"}[5m] |= "x")') == parse(
        'count_over_time({a="b"} |= "x" [5m])'
    )


def test_line_filter_chain() -> None:
    """Line filters keep their order, operators and `or` alternatives."""
    expr = parse('{job="x"} |= "a" or `b` != "c" |~ "d+"')
    assert isinstance(expr, LogQuery)
    first, second, third = expr.stages
    assert first == LineFilter("|=", ("a", "b"))
    assert second == LineFilter("!=", ("c",))
    assert isinstance(third, LineFilter)
    assert third.op == "|~"
    assert third.regexes[0].pattern == "d+"


def test_label_filter_precedence() -> None:
    """`and` (or a comma) binds tighter than `or`."""
    expr = parse('{a="b"} | x="1" or y="2", z > 3')
    assert isinstance(expr, LogQuery)
    [stage] = expr.stages
    assert isinstance(stage, LabelFilter)
    pred = stage.predicate
    assert isinstance(pred, LabelOr)
    assert isinstance(pred.right, LabelAnd)
    assert isinstance(pred.right.right, LabelCompare)
    assert pred.right.right.kind == "number"
    assert pred.right.right.number == 3.0


@pytest.mark.parametrize(
    ("text", "kind", "number"),
    [("5", "number", 5.0), ("1.5", "number", 1.5), ("250ms", "duration", 0.25),
     ("1m30s", "duration", 90.0), ("20MB", "bytes", 20e6), ("1KiB", "bytes", 1024.0)],
)  # fmt: skip
def test_numeric_label_filter_values(text: str, kind: str, number: float) -> None:
    """Numbers, durations and byte sizes in label filters become comparable numbers."""
    expr = parse(f'{{a="b"}} | v >= {text}')
    assert isinstance(expr, LogQuery)
    stage = expr.stages[0]
    assert isinstance(stage, LabelFilter)
    assert stage.predicate == LabelCompare("v", ">=", kind, text, number)  # type: ignore[arg-type]


def test_parser_stages_and_params() -> None:
    """json and logfmt keep their parameters; regexp needs named groups."""
    expr = parse('{a="b"} | json first="items[0]", city | logfmt | regexp "(?P<n>\\\\d+)"')
    assert isinstance(expr, LogQuery)
    json_stage, logfmt_stage, regexp_stage = expr.stages
    assert json_stage == Parser("json", (("first", "items[0]"), ("city", "city")))
    assert logfmt_stage == Parser("logfmt")
    assert isinstance(regexp_stage, Parser)
    assert regexp_stage.regex is not None
    assert list(regexp_stage.regex.names) == ["n"]


def test_formatting_stages() -> None:
    """line_format, label_format, drop and keep parse into their stages."""
    expr = parse(
        '{a="b"} | line_format "{{.x}}-{{ .y }}" | label_format w=x, v="{{.y}}" '
        '| drop x, y="1" | keep w'
    )
    assert isinstance(expr, LogQuery)
    line, labels, drop, keep = expr.stages
    assert isinstance(line, LineFormat)
    assert line.template.program.simple == ("", "x", "-", "y", "")
    assert isinstance(labels, LabelFormat)
    assert labels.items[0] == ("w", "x")
    assert isinstance(drop, DropLabels)
    assert drop.names == ("x",)
    assert drop.matchers[0].value == "1"
    assert keep == KeepLabels(("w",))


def test_unwrap_inside_range_aggregation() -> None:
    """`| unwrap` is split off for *_over_time functions, with conversions."""
    expr = parse('sum_over_time({a="b"} | logfmt | unwrap bytes(size) [1m])')
    assert isinstance(expr, RangeAggregation)
    assert expr.query.stages[-1] == Unwrap("size", "bytes")


@pytest.mark.parametrize(
    ("query", "value"),
    [("1 + 2 * 3", 7.0), ("2 ^ 3 ^ 2", 512.0), ("(1 + 2) * 3", 9.0), ("-2 ^ 2", -4.0),
     ("10 / 4", 2.5), ("7 % 4", 3.0), ("1 - 2 - 3", -4.0)],
)  # fmt: skip
def test_arithmetic_precedence(query: str, value: float) -> None:
    """Operators follow PromQL precedence and associativity."""
    assert _constant(parse(query)) == value


def _constant(expr: object) -> float:
    if isinstance(expr, NumberLiteral):
        return expr.value
    assert isinstance(expr, BinaryOp)
    a, b = _constant(expr.left), _constant(expr.right)
    ops = {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "%": a % b, "^": a**b}
    return ops[expr.op]


def test_regex_matchers_are_fully_anchored() -> None:
    """`=~` matches the whole value, as Loki's RE2 matchers do."""
    expr = parse('{type=~"cart"}')
    assert isinstance(expr, LogQuery)
    [matcher] = expr.selector.matchers
    assert matcher.matches("cart")
    assert not matcher.matches("cart_add")
    assert not matcher.matches("my_cart")


def test_go_escapes_in_strings() -> None:
    """Double-quoted strings take Go escapes; backtick strings are raw."""
    expr = parse('{a="x\\ty\\u00e9\\""} |= `\\d`')
    assert isinstance(expr, LogQuery)
    assert expr.selector.matchers[0].value == 'x\tyé"'
    assert expr.stages[0] == LineFilter("|=", ("\\d",))


@pytest.mark.parametrize(
    ("query", "col", "fragment"),
    [
        ("", 1, "empty query"),
        ("{", 2, "unexpected end of input"),
        ('{job="x"', 9, "expecting ',' or '}'"),
        ("{}", 1, "at least one matcher"),
        ('{job="x}', 6, "unterminated string"),
        ("{job=`x}", 6, "unterminated raw string"),
        ('{job="x"} |', 12, "unexpected end of input"),
        ('{job="x"} |= "a" or', 20, "unexpected end of input"),
        ('{job="x"} | json |', 19, "unexpected end of input"),
        ('{job="x"} | a >', 16, "expecting a string, number, duration or size"),
        ('{job="x"} | a > "5"', 17, "needs a number"),
        ('{job="x"} | a =~ 5', 18, "expecting a quoted regex"),
        ('{job="x"} | pattern "a"', 21, "at least one capture is required"),
        ('{job="x"} | pattern "<a><b>"', 21, "found consecutive capture"),
        ('{job="x"} |~ "("', 14, "error parsing regexp: missing closing ): `(`"),
        ('{job="x"} |~ "a{5000}"', 14, "error parsing regexp: invalid repeat count: `{5000}`"),
        ('{job="x"} | regexp "(\\\\d+)"', 20, "at least one named capture must be supplied"),
        ('{job="x"} | line_format "{{ if .a }}x"', 25, "template: unexpected EOF"),
        ('{job="x"} | line_format "{{ nope .a }}"', 25, 'function "nope" not defined'),
        ('{job="x"} | unwrap x', 11, "only allowed inside a range aggregation"),
        ('count_over_time({job="x"})', 26, "expecting a range"),
        ('count_over_time({job="x"}[5])', 27, "expecting a duration"),
        ('count_over_time({job="x"}[5m][1m])', 30, "range given twice"),
        ('sum_over_time({job="x"}[1m])', 1, "invalid aggregation sum_over_time without unwrap"),
        ('count_over_time({job="x"} | unwrap v [1m])', 1, "count_over_time with unwrap"),
        ('sum by (a (rate({job="x"}[1m]))', 11, "expecting ')'"),
        ('sum(rate({job="x"}[1m])) by (a) by (b)', 33, "end of query"),
        ('topk(rate({job="x"}[1m]))', 6, "expecting a number"),
        ('topk(2 rate({job="x"}[1m]))', 8, "expecting ','"),
        ('{job="x"} + 1', 1, "log query cannot be used in a metric expression"),
        ("foo(1)", 1, "unknown or unsupported function 'foo'"),
        ("vector(a)", 8, "expecting a number"),
        ("1 and 2", 3, "not allowed between scalars"),
        ("1 +", 4, "unexpected end of input"),
        ("@", 1, "unexpected character '@'"),
        ("1ab", 1, "invalid number"),
        ('{job="x"} |= "a\\q"', 16, "invalid escape"),
        ('{job="x"}\n  | json |', 11, "unexpected end of input"),
    ],
)
def test_invalid_queries_fail_with_position(query: str, col: int, fragment: str) -> None:
    """Each error names line and column the way Loki does, and what was wrong."""
    with pytest.raises(ParseError) as caught:
        parse(query)
    message = str(caught.value)
    assert re.match(r"parse error at line \d+, col \d+: ", message), message
    assert caught.value.col == col, message
    assert fragment in message


def test_multi_line_positions() -> None:
    """Errors on a later line report that line and a column within it."""
    with pytest.raises(ParseError) as caught:
        parse('{job="x"}\n  | json\n  | a > "b"')
    assert caught.value.line == 3
    assert caught.value.col == 9


def test_overlong_queries_are_refused() -> None:
    """A query over the length cap is refused before any work."""
    with pytest.raises(ParseError):
        parse('{a="' + "x" * logql.MAX_QUERY_LENGTH + '"}')


def test_deep_nesting_is_refused() -> None:
    """Pathological nesting is a parse error, not a crash."""
    with pytest.raises(ParseError):
        parse("(" * 500 + "1" + ")" * 500)


@pytest.mark.parametrize(
    ("stages", "line", "kept"),
    [
        ('|= "cart"', "added to cart", True),
        ('|= "cart"', "searched", False),
        ('!= "cart"', "added to cart", False),
        ('|= "a" or "z"', "zebra", True),
        ('!= "a" or "z"', "zoo", False),
        ('|~ "c.r+t"', "cart", True),
        ('!~ "^x"', "xylophone", False),
        ("|= ``", "anything", True),
    ],
)
def test_line_filters_on_lines(stages: str, line: str, kept: bool) -> None:
    """Compiled line filters keep exactly the lines Loki would."""
    expr = parse('{a="b"} ' + stages)
    assert isinstance(expr, LogQuery)
    assert (Pipeline(expr.stages).run(0, line, {"a": "b"}) is not None) is kept


def test_json_flattening_and_collisions() -> None:
    """Nested keys join with `_`, arrays are skipped, odd keys sanitized, clashes suffixed."""
    expr = parse('{a="b"} | json')
    assert isinstance(expr, LogQuery)
    line = '{"a": "x", "cart": {"value": 12.5, "items": [1, 2]}, "ok": true, "my-key": null}'
    result = Pipeline(expr.stages).run(0, line, {"a": "b"})
    assert result is not None
    assert result[1] == {
        "a": "b",
        "a_extracted": "x",
        "cart_value": "12.5",
        "ok": "true",
        "my_key": "",
    }


def test_json_failure_keeps_the_line() -> None:
    """A line that is not JSON stays, marked with __error__=JSONParserErr."""
    expr = parse('{a="b"} | json')
    assert isinstance(expr, LogQuery)
    assert Pipeline(expr.stages).run(0, "plain", {"a": "b"}) == (
        "plain",
        {"a": "b", "__error__": "JSONParserErr"},
    )


def test_numeric_filter_on_unparsable_value_marks_error() -> None:
    """A numeric comparison on a non-number keeps the line with __error__=LabelFilterErr."""
    expr = parse('{a="b"} | logfmt | n > 3')
    assert isinstance(expr, LogQuery)
    pipeline = Pipeline(expr.stages)
    assert pipeline.run(0, "n=5", {"a": "b"}) is not None
    assert pipeline.run(0, "n=2", {"a": "b"}) is None
    kept = pipeline.run(0, "n=lots", {"a": "b"})
    assert kept is not None
    assert kept[1]["__error__"] == "LabelFilterErr"


def test_logfmt_parsing() -> None:
    """logfmt reads bare, quoted and valueless keys; an open quote is an error."""
    assert parse_logfmt('a=1 b="two words" c d=') == {"a": "1", "b": "two words", "c": "", "d": ""}
    assert parse_logfmt('a="open') is None


@pytest.mark.parametrize(
    ("key", "name"),
    [("ok", "ok"), ("my-key", "my_key"), ("1st", "_1st"), ("a.b", "a_b"), ("", "_")],
)
def test_key_sanitizing(key: str, name: str) -> None:
    """Parsed keys become valid label names."""
    assert sanitize_key(key) == name
