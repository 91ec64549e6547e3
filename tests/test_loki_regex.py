"""LogQL regexes are RE2 as in Loki: its syntax, its anchoring, its refusals, in Go's words."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.loki.logql import LabelFilter, LineFilter, LogQuery, ParseError, Parser, parse
from exporter.loki.pipeline import Pipeline
from exporter.loki.regex import RegexError, compile_logql

Client = TestClient[Any, Any]


def keeps(query: str, line: str, labels: dict[str, str] | None = None) -> bool:
    """Whether a log query's pipeline keeps `line` (with these stream labels)."""
    expr = parse(query)
    assert isinstance(expr, LogQuery)
    return Pipeline(expr.stages).run(0, line, labels or {"job": "x"}) is not None


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("added (?i)to cart", "added TO CART", True),  # a flag in the middle applies from there
        ("ADDED (?i)to cart", "added to cart", False),  # …and not before it
        (r"\pL+ \p{Greek}+", "alpha αβγ", True),  # Unicode classes
        ("[[:digit:]]{3}", "order 123", True),  # POSIX classes
        (r"\Q(a+)+\E", "x(a+)+y", True),  # quoted literal text
        (r"done\z", "all done", True),  # \z: end of text
        ("(?U)a+b", "aaab", True),  # ungreedy flag
        ("(?<name>cart)", "cart_add", True),  # Go's named group spelling
        ("(?s)a.b", "a\nb", True),  # dot-all flag
    ],
)
def test_re2_only_syntax_is_accepted(pattern: str, text: str, matches: bool) -> None:
    """Syntax Python's re lacks or reads differently works as Go's regexp (RE2) has it."""
    query = f'{{job="x"}} |~ `{pattern}`'
    assert keeps(query, text) is matches


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(a)\1", "invalid escape sequence: `\\1`"),  # backreference
        ("(?=a)b", "invalid or unsupported Perl syntax: `(?=`"),  # lookahead
        ("(?!a)b", "invalid or unsupported Perl syntax: `(?!`"),  # negative lookahead
        ("(?<=a)b", "invalid or unsupported Perl syntax: `(?<=`"),  # lookbehind
        ("(?<!a)b", "invalid or unsupported Perl syntax: `(?<!`"),  # negative lookbehind
        ("(?>a+)b", "invalid or unsupported Perl syntax: `(?>`"),  # atomic group
        ("a++", "invalid nested repetition operator: `++`"),  # possessive repeat
        (r"end\Z", "invalid escape sequence: `\\Z`"),  # Python's end of text
        (r"a\C", "invalid escape sequence: `\\C`"),  # RE2's single byte, which Go lacks
        ("a{1001}", "invalid repeat count: `{1001}`"),
        ("[z-a]", "invalid character class range: `z-a`"),
        ("*", "missing argument to repetition operator: `*`"),
        ("a)", "unexpected ): `a)`"),
        ("a\\", "trailing backslash at end of expression: ``"),
    ],
)
def test_re_only_syntax_is_refused_in_gos_words_at_its_string(pattern: str, message: str) -> None:
    """Backreferences, lookaround and friends are parse errors positioned at the regex string."""
    for query in (
        f'{{job="x"}} |~ `{pattern}`',
        f'{{job="x"}} != "z" !~ `{pattern}`',
        f"{{job=~`{pattern}`}}",
        f'{{job="x"}} | json | type=~`{pattern}`',
        f'{{job="x"}} | json | drop type=~`{pattern}`',
    ):
        col = query.index("`") + 1
        with pytest.raises(ParseError) as caught:
            parse(query)
        assert caught.value.col == col, (query, str(caught.value))
        assert str(caught.value) == (
            f"parse error at line 1, col {col}: error parsing regexp: {message}"
        )
    # The regexp parser says the same, about its own whole pattern.
    with pytest.raises(ParseError) as caught:
        parse(f'{{job="x"}} | regexp `{pattern}(?P<a>x)`')
    assert str(caught.value).startswith("parse error at line 1, col 20: error parsing regexp: ")


def test_matchers_are_fully_anchored_and_line_filters_are_not() -> None:
    """`=~` tests the whole label value (selector and label filter); `|~` searches the line."""
    assert keeps('{job="x"} |~ "cart"', "added to cart")
    assert not keeps('{job="x"} |~ "^cart"', "added to cart")
    assert keeps('{job="x"} | json | type=~"cart.*"', '{"type": "cart_add"}')
    assert not keeps('{job="x"} | json | type=~"cart"', '{"type": "cart_add"}')
    assert keeps('{job="x"} | json | type!~"cart"', '{"type": "cart_add"}')
    expr = parse('{type=~"cart|order"}')
    assert isinstance(expr, LogQuery)
    [matcher] = expr.selector.matchers
    assert matcher.matches("order")
    assert not matcher.matches("order_completed")
    assert not matcher.matches("my cart")


def test_alternation_is_anchored_as_a_whole() -> None:
    """Anchoring wraps the whole pattern: `a|ab` matches all of "ab", not just its start."""
    assert compile_logql("a|ab", anchored=True).matches("ab")
    assert not compile_logql("a|b", anchored=True).matches("ab")


def test_dot_matches_newline_in_matchers_only() -> None:
    """Label matchers let `.` cross a newline (Prometheus' matcher); line filters do not."""
    assert keeps('{job="x"} | json | note=~"a.b"', '{"note": "a\\nb"}')
    assert not keeps('{job="x"} |~ "a.b"', "a\nb")


def test_regexp_parser_extracts_named_groups_leftmost_first() -> None:
    """`| regexp` takes the first match, Perl-style (leftmost-first), as Go does."""
    expr = parse(
        '{job="x"} | regexp `(?P<first>a|ab)(?P<rest>b?)` | line_format "{{.first}}-{{.rest}}"'
    )
    assert isinstance(expr, LogQuery)
    assert isinstance(expr.stages[0], Parser)
    result = Pipeline(expr.stages).run(0, "xab", {"job": "x"})
    assert result is not None
    assert result[0] == "a-b"


def test_regexp_parser_refuses_a_duplicate_name() -> None:
    """Two groups of one name would fight over one label; Loki refuses that, so does this."""
    with pytest.raises(ParseError, match="duplicate extracted label name 'a'"):
        parse('{job="x"} | regexp `(?P<a>x)(?P<a>y)`')


@pytest.mark.parametrize(
    "pattern",
    [r"(a)\1", "(?=a)", "(?<!a)b", "a++", r"\Z", "(?>a)", "(", r"\C"],
)
def test_compile_refuses_what_go_refuses(pattern: str) -> None:
    """The one compile function raises RegexError for each pattern Go's regexp refuses."""
    with pytest.raises(RegexError) as caught:
        compile_logql(pattern, anchored=False)
    assert str(caught.value).startswith("error parsing regexp: ")


def test_line_filter_keeps_its_pattern_text() -> None:
    """A parsed filter remembers each pattern as written, for error messages and equality."""
    expr = parse('{job="x"} |~ "d+" or `e|f`')
    assert isinstance(expr, LogQuery)
    [stage] = expr.stages
    assert isinstance(stage, LineFilter)
    assert [r.pattern for r in stage.regexes] == ["d+", "e|f"]


def test_label_filter_regex_is_compiled_once_at_parse() -> None:
    """The label filter holds its compiled, anchored regex; evaluation never compiles."""
    expr = parse('{job="x"} | json | user=~"u[0-9]+"')
    assert isinstance(expr, LogQuery)
    stage = expr.stages[1]
    assert isinstance(stage, LabelFilter)
    assert stage.predicate.regex is not None  # type: ignore[union-attr]
    assert stage.predicate.regex.anchored  # type: ignore[union-attr]


async def test_refused_regex_is_a_400_with_the_position(client: Client) -> None:
    """Over HTTP, a lookahead in a line filter is Loki's 400 text, with line and column."""
    query = '{job="shopper-events"} |~ "(?=a)b"'
    resp = await client.get("/loki/api/v1/query_range?" + urlencode({"query": query}))
    assert resp.status == 400
    assert await resp.text() == (
        "parse error at line 1, col 27: "
        "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"
    )


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.text(alphabet="ab |", max_size=8),
    text=st.text(alphabet="ab \n", max_size=10),
    anchored=st.booleans(),
)
def test_literal_shortcuts_agree_with_re2(pattern: str, text: str, anchored: bool) -> None:
    """Literal text and alternations of it skip the regex engine, with RE2's own answer."""
    regex = compile_logql(pattern, anchored=anchored)
    assert regex.matches(text) == (regex.groups(text) is not None)
