"""Go templates, patterns and ip() as LogQL uses them, tested on their own."""

from __future__ import annotations

import pytest

from exporter.loki.netmatch import IpPatternError, parse_ip
from exporter.loki.patterns import PatternError, parse_pattern
from exporter.loki.template_functions import MAX_WIDTH, go_float, go_printf
from exporter.loki.templates import (
    TemplateError,
    TemplateSyntaxError,
    compile_template,
    render_program,
)

TS = 1_700_000_000 * 1_000_000_000


def render(text: str, line: str = "the line", **labels: str) -> str:
    """A template rendered for one entry."""
    return render_program(compile_template(text), line, labels, TS)


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (1.5, "1.5"),
        (100.0, "100"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1e21, "1e+21"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.25, "-2.25"),
        (float("inf"), "+Inf"),
    ],
)
def test_floats_print_as_go_prints_them(value: float, printed: str) -> None:
    """Template output of a float follows Go's %v: shortest digits, exponent past 1e+06."""
    assert go_float(value) == printed


@pytest.mark.parametrize(
    ("fmt", "args", "printed"),
    [
        ("%s-%d", ("a", 7), "a-7"),
        ("%5.2f|%-4s|", (3.14159, "ab"), " 3.14|ab  |"),
        ("%03d %x %q %t", (7, 255, "q", True), '007 ff "q" true'),
        ("%d", ("text",), "%!d(str=text)"),
        ("%s %s", ("one",), "one %!s(MISSING)"),
        ("%s", ("a", "b"), "a%!(EXTRA str=b)"),
        ("100%%", (), "100%"),
        (f"%{MAX_WIDTH + 1}d", (1,), "%!d(BADWIDTH)"),
    ],
)
def test_printf_follows_go(fmt: str, args: tuple[object, ...], printed: str) -> None:
    """printf speaks Go's verbs and reports bad arguments in Go's words instead of failing."""
    assert go_printf(fmt, *args) == printed


def test_pipelines_conditionals_and_whitespace_trimming() -> None:
    """A pipeline passes its value as the last argument; if/else if/else picks one branch."""
    assert render('{{ .a | replace "-" " " | title }}', a="big-red-box") == "Big Red Box"
    branches = '{{ if eq .n "1" }}one{{ else if eq .n "2" }}two{{ else }}many{{ end }}'
    assert [render(branches, n=n) for n in ("1", "2", "3")] == ["one", "two", "many"]
    assert render("a  {{- .x -}}  b", x="X") == "aXb"
    assert render("{{ __line__ | upper }}") == "THE LINE"
    assert render('{{ .missing }}|{{ default "d" .missing }}') == "|d"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{{ .a", "unclosed action"),
        ("{{ nope }}", 'function "nope" not defined'),
        ("{{ if .a }}", "unexpected EOF"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ .a .b }}", "can't give argument to non-function"),
        ("{{ range .a }}{{ end }}", "not supported"),
    ],
)
def test_bad_templates_are_refused_with_go_words(text: str, words: str) -> None:
    """A template Go would not parse is a TemplateSyntaxError naming the problem."""
    with pytest.raises(TemplateSyntaxError, match=words.replace("{", r"\{").replace("}", r"\}")):
        compile_template(text)


def test_a_failing_function_is_a_template_error() -> None:
    """A function that fails on its values raises TemplateError (the line keeps, marked)."""
    with pytest.raises(TemplateError):
        render("{{ div 1 0 }}")
    with pytest.raises(TemplateError):
        render('{{ regexReplaceAll "(" .a "x" }}', a="y")


def test_padding_and_repetition_are_bounded() -> None:
    """No template makes a line longer than the width bound, however large its numbers."""
    assert len(render("{{ repeat 999999999 .a }}", a="ab")) <= MAX_WIDTH
    assert len(render("{{ alignLeft 999999999 .a }}", a="ab")) == MAX_WIDTH
    assert len(render("{{ indent 999999999 .a }}", a="ab")) <= MAX_WIDTH + 2


def test_patterns_capture_and_test_lines_as_loki_does() -> None:
    """Captures take the text between literals; `|>` needs the whole line to fit."""
    access = parse_pattern('<ip> - <_> "<method> <uri> <_>" <status>', need_capture=True)
    line = '10.0.0.1 - [30/Nov] "GET /cart HTTP/1.1" 200'
    assert access.extract(line) == {
        "ip": "10.0.0.1",
        "method": "GET",
        "uri": "/cart",
        "status": "200",
    }
    assert parse_pattern("<_> bar", need_capture=False).test("foo bar baz") is False
    assert parse_pattern("<_> baz", need_capture=False).test("foo bar baz") is True
    assert parse_pattern("foo <_>", need_capture=False).test("foo bar baz") is True


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("", "at least one capture is required"),
        ("<a><b>", "found consecutive capture"),
        ("<a> <a>", "duplicate capture name"),
    ],
)
def test_patterns_loki_refuses_are_refused(pattern: str, words: str) -> None:
    """Patterns without captures, with adjacent or repeated captures, are errors."""
    with pytest.raises(PatternError, match=words):
        parse_pattern(pattern, need_capture=True)


def test_ip_ranges_match_addresses_in_lines_and_labels() -> None:
    """An address, a CIDR and a first-last range each cover exactly their addresses."""
    cidr = parse_ip("192.168.0.0/16")
    assert cidr.covers("192.168.4.5")
    assert not cidr.covers("192.169.0.1")
    span = parse_ip("10.0.0.5-10.0.0.9")
    assert span.covers("10.0.0.9")
    assert not span.covers("10.0.0.10")
    assert parse_ip("2001:db8::/32").in_line("from 2001:db8::1 at noon")
    assert not parse_ip("10.0.0.1").in_line("version 10.0.0.12 released")
    with pytest.raises(IpPatternError):
        parse_ip("10.0.0.9-10.0.0.1")
