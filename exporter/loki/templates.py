"""Go text/template as line_format and label_format speak it: pipelines, if/else, functions.

A template is compiled once per query into a small tree; rendering walks it with the entry's
labels as the dot (`.label`), `__line__` and `__timestamp__` as functions, and the template
functions Loki documents (see `FUNCTIONS`). A failure while rendering raises `TemplateError`,
which the stage turns into Loki's `TemplateFormatErr` label, keeping the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from exporter.loki.template_functions import FUNCTIONS, TemplateError, go_string, truthy

__all__ = ["Program", "TemplateError", "compile_template", "render_program"]


class TemplateSyntaxError(ValueError):
    """A template that does not parse; the message reads like Go's."""


@dataclass(frozen=True, slots=True)
class Field:
    """`.name` (or `.` for the whole label map)."""

    name: str


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Call:
    """A function with its arguments; in a pipeline the previous result is appended."""

    name: str
    args: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class Pipe:
    commands: tuple[Operand, ...]


Operand: TypeAlias = Field | Literal | Call | Pipe


@dataclass(frozen=True, slots=True)
class If:
    branches: tuple[tuple[Pipe, tuple[Node, ...]], ...]
    otherwise: tuple[Node, ...]


Node: TypeAlias = str | Pipe | If


@dataclass(frozen=True, slots=True)
class Program:
    """A compiled template: text and actions in order."""

    nodes: tuple[Node, ...]
    simple: tuple[str, ...] | None
    """When every action is a bare `.label`: alternating text, label, text, … (the fast path)."""


_ACTION: Final = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN: Final = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<char>'(?:[^'\\]|\\.)')
    | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
    | (?P<field>\.[A-Za-z_][A-Za-z0-9_]*|\.)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<sym>[()|])
    )""",
    re.X,
)
_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a"}
_BUILTIN_KEYWORDS: Final = frozenset({"if", "else", "end", "range", "with", "define", "block"})


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokens(action: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(action):
        if action[i:].strip() == "":
            break
        match = _TOKEN.match(action, i)
        if match is None or match.end() == i:
            bad = action[i:].strip()[:1]
            raise TemplateSyntaxError(f"unexpected {bad!r} in command")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        i = match.end()
    return out


class _PipeParser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def pipe(self) -> Pipe:
        commands = [self.command()]
        while not self.done() and self.tokens[self.i] == ("sym", "|"):
            self.i += 1
            commands.append(self.command())
        return Pipe(tuple(commands))

    def command(self) -> Operand:
        args: list[Operand] = []
        while not self.done() and self.tokens[self.i][1] not in ("|", ")"):
            args.append(self.operand())
        if not args:
            raise TemplateSyntaxError("missing value for command")
        head = args[0]
        if isinstance(head, Call) and not head.args:
            return Call(head.name, tuple(args[1:]))
        if len(args) > 1:
            raise TemplateSyntaxError("can't give argument to non-function")
        return head

    def operand(self) -> Operand:
        kind, text = self.tokens[self.i]
        self.i += 1
        if kind == "str":
            return Literal(_unquote(text))
        if kind == "raw":
            return Literal(text[1:-1])
        if kind == "char":
            return Literal(ord(_unquote(text)))
        if kind == "num":
            if re.fullmatch(r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)", text):
                return Literal(int(text, 0) if "x" in text.lower() else int(text))
            return Literal(float(text))
        if kind == "field":
            return Field(text[1:])
        if kind == "word":
            if text in ("true", "false"):
                return Literal(text == "true")
            if text == "nil":
                return Literal(None)
            if text in _BUILTIN_KEYWORDS:
                raise TemplateSyntaxError(f"unexpected {text!r} in command")
            if text not in FUNCTIONS:
                raise TemplateSyntaxError(f'function "{text}" not defined')
            return Call(text, ())
        if text == "(":
            inner = self.pipe()
            if self.done() or self.tokens[self.i] != ("sym", ")"):
                raise TemplateSyntaxError("unclosed left paren")
            self.i += 1
            return inner
        raise TemplateSyntaxError(f"unexpected {text!r} in operand")


def _pipe(text: str) -> Pipe:
    parser = _PipeParser(_tokens(text))
    if parser.done():
        raise TemplateSyntaxError("missing value for command")
    pipe = parser.pipe()
    if not parser.done():
        raise TemplateSyntaxError(f"unexpected {parser.tokens[parser.i][1]!r} in command")
    return pipe


def compile_template(text: str) -> Program:
    """Parse a template; raises TemplateSyntaxError in Go's words."""
    pieces: list[tuple[str, str]] = []  # ("text", s) or ("action", s)
    i = 0
    for match in _ACTION.finditer(text):
        chunk = text[i : match.start()]
        if match.group(1):
            chunk = chunk.rstrip()
        pieces.append(("text", chunk))
        pieces.append(("action", match.group(2).strip()))
        i = match.end()
        if match.group(3):
            rest = text[i:]
            i += len(rest) - len(rest.lstrip())
    if "{{" in text[i:]:
        raise TemplateSyntaxError("unclosed action")
    pieces.append(("text", text[i:]))
    stack: list[tuple[list[Node], list[tuple[Pipe, tuple[Node, ...]]], Pipe | None]] = []
    body: list[Node] = []
    for kind, content in pieces:
        if kind == "text":
            if content:
                body.append(content)
            continue
        if content.startswith("/*") and content.endswith("*/"):
            continue
        word = content.split(None, 1)[0] if content else ""
        rest = content[len(word) :].strip()
        if word == "if":
            stack.append((body, [], _pipe(rest)))
            body = []
        elif word == "else":
            if not stack:
                raise TemplateSyntaxError("unexpected {{else}}")
            outer, branches, cond = stack.pop()
            if cond is None:
                raise TemplateSyntaxError("expected end; found {{else}}")
            branches.append((cond, tuple(body)))
            if rest.startswith("if "):
                stack.append((outer, branches, _pipe(rest[3:])))
            elif rest:
                raise TemplateSyntaxError(f"unexpected {rest!r} after else")
            else:
                stack.append((outer, branches, None))
            body = []
        elif word == "end":
            if not stack:
                raise TemplateSyntaxError("unexpected {{end}}")
            outer, branches, cond = stack.pop()
            if cond is not None:
                branches.append((cond, tuple(body)))
                node = If(tuple(branches), ())
            else:
                node = If(tuple(branches), tuple(body))
            body = outer
            body.append(node)
        elif word in ("range", "with", "define", "block", "template"):
            raise TemplateSyntaxError(f"{{{{{word}}}}} is not supported in LogQL templates")
        else:
            body.append(_pipe(content))
    if stack:
        raise TemplateSyntaxError("unexpected EOF")
    nodes = tuple(body)
    return Program(nodes, _simple(nodes))


def _simple(nodes: tuple[Node, ...]) -> tuple[str, ...] | None:
    parts: list[str] = [""]
    for node in nodes:
        if isinstance(node, str):
            parts[-1] += node
            continue
        if not isinstance(node, Pipe) or len(node.commands) != 1:
            return None
        command = node.commands[0]
        if not isinstance(command, Field) or not command.name:
            return None
        parts.extend((command.name, ""))
    return tuple(parts)


@dataclass(slots=True)
class Scope:
    """What a template sees: the labels as the dot, the line and its time."""

    labels: dict[str, str]
    line: str
    ts_ns: int


def _value(op: Operand, scope: Scope, piped: tuple[Any, ...]) -> Any:
    if isinstance(op, Literal):
        if piped:
            raise TemplateError("can't give argument to non-function")
        return op.value
    if isinstance(op, Field):
        if piped:
            raise TemplateError(f"can't give argument to non-function .{op.name}")
        return scope.labels.get(op.name, "") if op.name else scope.labels
    if isinstance(op, Pipe):
        if piped:
            raise TemplateError("can't give argument to non-function")
        return _run(op, scope)
    args = [_value(a, scope, ()) for a in op.args] + list(piped)
    if op.name == "__line__":
        return scope.line
    if op.name == "__timestamp__":
        return datetime.fromtimestamp(scope.ts_ns / 1e9, UTC)
    fn: Callable[..., Any] = FUNCTIONS[op.name]
    try:
        return fn(*args)
    except TemplateError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, OverflowError, ZeroDivisionError) as err:
        raise TemplateError(f"error calling {op.name}: {err}") from None


def _run(pipe: Pipe, scope: Scope) -> Any:
    result: Any = None
    for n, command in enumerate(pipe.commands):
        result = _value(command, scope, (result,) if n else ())
    return result


def _walk(nodes: tuple[Node, ...], scope: Scope, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Pipe):
            out.append(go_string(_run(node, scope)))
        else:
            for cond, body in node.branches:
                if truthy(_run(cond, scope)):
                    _walk(body, scope, out)
                    break
            else:
                _walk(node.otherwise, scope, out)


def render_program(program: Program, line: str, labels: dict[str, str], ts_ns: int) -> str:
    """The rendered text; raises TemplateError when a function fails."""
    simple = program.simple
    if simple is not None:
        if len(simple) == 1:
            return simple[0]
        out = [simple[0]]
        for k in range(1, len(simple), 2):
            out.append(labels.get(simple[k], ""))
            out.append(simple[k + 1])
        return "".join(out)
    parts: list[str] = []
    _walk(program.nodes, Scope(labels, line, ts_ns), parts)
    return "".join(parts)
