"""A log pipeline compiled once per query: line filters, parsers, label filters and formatting."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from exporter.loki import json_probe, parsers, screens
from exporter.loki.lexer import parse_bytes, parse_duration
from exporter.loki.regex import LogRegex
from exporter.loki.stage_grammar import json_path
from exporter.loki.syntax import (
    Decolorize,
    DropLabels,
    KeepLabels,
    LabelAnd,
    LabelCompare,
    LabelFilter,
    LabelFormat,
    LabelPredicate,
    LineFilter,
    LineFormat,
    Parser,
    Stage,
    Template,
    Unwrap,
)
from exporter.loki.templates import TemplateError, render_program

Labels = dict[str, str]
"""Label name → value. Stream labels are shared between lines: stages copy before changing."""
StageFn = Callable[[int, str, Labels], tuple[str, Labels] | None]

ERROR_LABEL: Final = "__error__"
JSON_ERROR: Final = "JSONParserErr"
LOGFMT_ERROR: Final = "LogfmtParserErr"
LABEL_FILTER_ERROR: Final = "LabelFilterErr"
SAMPLE_ERROR: Final = "SampleExtractionErr"
TEMPLATE_ERROR: Final = "TemplateFormatErr"
_UNSAFE_KEY: Final = re.compile(r"[^A-Za-z0-9_]")
_FAIL, _PASS, _ERROR = 0, 1, 2
_SANITIZED: dict[str, str] = {}


def sanitize_key(key: str) -> str:
    """A label name from any key: other characters become `_`, and it never starts a digit."""
    name = _SANITIZED.get(key)
    if name is None:
        name = _UNSAFE_KEY.sub("_", key)
        if not name or name[0].isdigit():
            name = "_" + name
        # Lines repeat the same few keys; remember them, within bounds.
        if len(_SANITIZED) < 10_000:
            _SANITIZED[key] = name
    return name


def json_scalar(value: Any) -> str:
    """A JSON value as label text: strings as they are, numbers as written, objects as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return orjson.dumps(value).decode()


def _add_parsed(out: Labels, base: Labels, name: str, value: str) -> None:
    """Set a parsed label; one that collides with a stream label gets `_extracted`."""
    if name in base:
        name += "_extracted"
    out[name] = value


def _flatten(obj: dict[str, Any], prefix: str, out: Labels, base: Labels) -> None:
    # The hottest loop of `| json`: type checks are inlined for the common flat values.
    for key, value in obj.items():
        name = _SANITIZED.get(key) or sanitize_key(str(key))
        if prefix:
            name = prefix + name
        kind = type(value)
        if kind is str:
            text = value
        elif kind is dict:
            _flatten(value, name + "_", out, base)
            continue
        elif kind is list:
            continue  # arrays are skipped, as Loki does
        else:
            text = json_scalar(value)
        if name in base:
            name += "_extracted"
        out[name] = text


def _follow(obj: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(obj, list) or part >= len(obj):
                return None
        elif not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _with_error(labels: Labels, error: str) -> Labels:
    out = dict(labels)
    out[ERROR_LABEL] = error
    return out


def _json_stage(params: tuple[tuple[str, str], ...]) -> StageFn:
    paths = [(sanitize_key(name), json_path(path)) for name, path in params]

    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return line, _with_error(labels, JSON_ERROR)
        if not isinstance(obj, dict):
            return line, _with_error(labels, JSON_ERROR)
        out = dict(labels)
        if paths:
            for name, path in paths:
                found = _follow(obj, path)
                if found is not None:
                    _add_parsed(out, labels, name, json_scalar(found))
        else:
            _flatten(obj, "", out, labels)
        return line, out

    return stage


def parse_logfmt(line: str) -> dict[str, str] | None:
    """`key=value key="quoted value" flag` pairs (a flag as ""); None when the line is malformed."""
    pairs, fault = parsers.scan_logfmt(line)
    if fault:
        return None
    return {key: value or "" for key, value in pairs}


def _regexp_stage(regex: LogRegex) -> StageFn:
    names = {group: sanitize_key(group) for group in regex.names}

    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        found = regex.named(line)
        if found is None:
            return line, labels
        out = dict(labels)
        for group, value in found.items():
            _add_parsed(out, labels, names[group], value)
        return line, out

    return stage


def line_predicate(stage: LineFilter) -> Callable[[str], bool] | None:
    """A test on the line alone; None when it keeps every line (`|= ""`)."""
    values, regexes = stage.values, stage.regexes
    if stage.ips:
        ips = stage.ips

        def found(line: str) -> bool:
            return any(ip.in_line(line) for ip in ips)

        return found if stage.op == "|=" else (lambda line: not found(line))
    if stage.patterns:
        patterns = stage.patterns
        if stage.op == "|>":
            return lambda line: any(p.test(line) for p in patterns)
        return lambda line: not any(p.test(line) for p in patterns)
    match stage.op:
        case "|=":
            if "" in values:
                return None
            if len(values) == 1:
                needle = values[0]
                return lambda line: needle in line
            return lambda line: any(v in line for v in values)
        case "!=":
            needles = [v for v in values if v]
            if len(needles) < len(values):
                return lambda line: False  # every line contains ""
            return lambda line: not any(v in line for v in needles)
        case "|~":
            if len(regexes) == 1:
                return regexes[0].matches
            return lambda line: any(r.matches(line) for r in regexes)
        case _:
            return lambda line: not any(r.matches(line) for r in regexes)


def label_number(value: str, kind: str) -> float | None:
    """A label value as a number, a duration in seconds, or a byte size; None if it is not."""
    if kind == "duration":
        ns = parse_duration(value)
        if ns is not None:
            return ns / 1e9
    elif kind == "bytes":
        return parse_bytes(value)
    try:
        return float(value)
    except ValueError:
        return None


def _compare(test: LabelCompare, labels: Labels) -> int:
    if test.kind == "ip":
        assert test.ip is not None
        raw = labels.get(test.name)
        if raw is None:
            return _FAIL  # Loki drops a line without the label, whichever the operator
        return _PASS if test.ip.covers(raw) == (test.op == "=") else _FAIL
    if test.kind == "string":
        value = labels.get(test.name, "")
        if test.op == "=":
            return _PASS if value == test.text else _FAIL
        if test.op == "!=":
            return _PASS if value != test.text else _FAIL
        assert test.regex is not None
        return _PASS if test.regex.matches(value) == (test.op == "=~") else _FAIL
    raw = labels.get(test.name)
    if raw is None:
        return _FAIL
    number = label_number(raw, test.kind)
    if number is None:
        return _ERROR
    limit = test.number
    match test.op:
        case "==":
            ok = number == limit
        case "!=":
            ok = number != limit
        case ">":
            ok = number > limit
        case ">=":
            ok = number >= limit
        case "<":
            ok = number < limit
        case _:
            ok = number <= limit
    return _PASS if ok else _FAIL


def check_labels(predicate: LabelPredicate, labels: Labels) -> int:
    """0 fail, 1 pass, 2 pass with a conversion error (the line is kept and marked)."""
    if isinstance(predicate, LabelCompare):
        return _compare(predicate, labels)
    left = check_labels(predicate.left, labels)
    right = check_labels(predicate.right, labels)
    if isinstance(predicate, LabelAnd):
        if _FAIL in (left, right):
            return _FAIL
        return _ERROR if _ERROR in (left, right) else _PASS
    if _PASS in (left, right):
        return _PASS
    return _ERROR if _ERROR in (left, right) else _FAIL


def _label_filter_stage(predicate: LabelPredicate) -> StageFn:
    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels] | None:
        outcome = check_labels(predicate, labels)
        if outcome == _FAIL:
            return None
        if outcome == _ERROR:
            return line, _with_error(labels, LABEL_FILTER_ERROR)
        return line, labels

    return stage


def render(template: Template, line: str, labels: Labels, ts: int) -> str:
    """Fill a template from the labels, the line and its time; raises TemplateError."""
    return render_program(template.program, line, labels, ts)


def _template_failed(labels: Labels, err: TemplateError) -> Labels:
    out = _with_error(labels, TEMPLATE_ERROR)
    out[parsers.ERROR_DETAILS] = str(err)
    return out


def _line_format_stage(template: Template) -> StageFn:
    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        try:
            return render(template, line, labels, ts), labels
        except TemplateError as err:
            return line, _template_failed(labels, err)

    return stage


def _label_format_stage(items: tuple[tuple[str, str | Template], ...]) -> StageFn:
    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        out = dict(labels)
        for name, source in items:
            if isinstance(source, Template):
                try:
                    out[name] = render(source, line, labels, ts)
                except TemplateError as err:
                    return line, _template_failed(labels, err)
            else:
                out[name] = labels.get(source, "")
                if source != name:
                    out.pop(source, None)
        return line, out

    return stage


def _drop_stage(stage_def: DropLabels) -> StageFn:
    names, matchers = stage_def.names, stage_def.matchers

    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        if not any(n in labels for n in names) and not matchers:
            return line, labels
        out = {k: v for k, v in labels.items() if k not in names}
        for m in matchers:
            if m.name in out and m.matches(out[m.name]):
                del out[m.name]
        return line, out

    return stage


def _keep_stage(stage_def: KeepLabels) -> StageFn:
    names, matchers = set(stage_def.names), stage_def.matchers

    def stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels]:
        out = {k: v for k, v in labels.items() if k in names}
        for m in matchers:
            value = labels.get(m.name)
            if value is not None and m.matches(value):
                out[m.name] = value
        return line, out

    return stage


def _compile(stage: Stage) -> StageFn | None:
    if isinstance(stage, LineFilter):
        test = line_predicate(stage)
        if test is None:
            return None

        def line_stage(ts: int, line: str, labels: Labels) -> tuple[str, Labels] | None:
            return (line, labels) if test(line) else None

        return line_stage
    if isinstance(stage, Parser):
        if stage.kind == "json":
            return _json_stage(stage.params)
        if stage.kind == "logfmt":
            wanted = [(sanitize_key(name), path) for name, path in stage.params]
            return parsers.logfmt_stage(
                wanted, _add_parsed, sanitize_key, strict=stage.strict, keep_empty=stage.keep_empty
            )
        if stage.kind == "pattern":
            assert stage.pattern is not None
            return parsers.pattern_stage(stage.pattern, _add_parsed, sanitize_key)
        if stage.kind == "unpack":
            return parsers.unpack_stage(_add_parsed, sanitize_key)
        assert stage.regex is not None
        return _regexp_stage(stage.regex)
    if isinstance(stage, LabelFilter):
        return _label_filter_stage(stage.predicate)
    if isinstance(stage, LineFormat):
        return _line_format_stage(stage.template)
    if isinstance(stage, LabelFormat):
        return _label_format_stage(stage.items)
    if isinstance(stage, DropLabels):
        return _drop_stage(stage)
    if isinstance(stage, KeepLabels):
        return _keep_stage(stage)
    if isinstance(stage, Decolorize):
        return parsers.decolorize_stage
    raise AssertionError(f"unexpected stage {stage!r}")  # unwrap is split off before compiling


def _fuses(stage: Stage, follower: Stage | None) -> bool:
    """`| json | <filter on plain field names>`: run as one stage (see json_probe)."""
    return (
        isinstance(stage, Parser)
        and stage.kind == "json"
        and not stage.params
        and isinstance(follower, LabelFilter)
        and json_probe.fusable(follower.predicate)
    )


def _flatten_all(obj: dict[str, Any], labels: Labels) -> Labels:
    out = dict(labels)
    _flatten(obj, "", out, labels)
    return out


def _json_filter_stage(predicate: LabelPredicate) -> StageFn:
    return json_probe.fused_stage(
        predicate,
        check_labels,
        json_scalar,
        _flatten_all,
        _json_stage(()),
        _label_filter_stage(predicate),
    )


def _keeps_line(stage: Stage) -> bool:
    """Whether the stage neither drops a line nor changes it (it may change labels)."""
    if isinstance(stage, Parser):
        return stage.kind != "unpack"  # unpack makes the packed `_entry` the line
    return isinstance(stage, DropLabels | KeepLabels | LabelFormat)


class Pipeline:
    """The stages of a log query after its selector, ready to run on (time, line, labels).

    Line filters that come first only look at the line, so they run before any label work;
    that keeps a selector plus `|= "text"` query close to the cost of a substring search.
    """

    def __init__(self, stages: tuple[Stage, ...]) -> None:
        self.keeps_lines = all(_keeps_line(stage) for stage in stages)
        """True when every line comes out of the stages as it went in (parsers and label
        changes only): a reader wanting lines, not labels, need not run them."""
        lead: list[Callable[[str], bool]] = []
        self.screens: list[screens.Screen] = []
        """Screens of the leading line filters (see screens)."""
        rest = list(stages)
        while rest and isinstance(rest[0], LineFilter):
            line_filter: LineFilter = rest.pop(0)  # type: ignore[assignment]
            test = line_predicate(line_filter)
            if test is not None:
                lead.append(test)
            found = screens.of_line_filter(line_filter)
            if found is not None:
                self.screens.append(found)
        self.line_tests = tuple(lead)
        self.json_filter: LabelPredicate | None = None
        """The filter of a leading `| json | filter`, which a scan may try on raw lines."""
        compiled: list[StageFn] = []
        while rest:
            stage = rest.pop(0)
            follower = rest[0] if rest else None
            if _fuses(stage, follower):
                assert isinstance(follower, LabelFilter)
                rest.pop(0)
                if not compiled:
                    self.json_filter = follower.predicate
                compiled.append(_json_filter_stage(follower.predicate))
                continue
            fn = _compile(stage)
            if fn is not None:
                compiled.append(fn)
        self.stages = tuple(compiled)

    @property
    def only_line_tests(self) -> bool:
        """True when nothing after the line filters can change the line or the labels."""
        return not self.stages

    @property
    def line_test(self) -> Callable[[str], bool] | None:
        """One test for all leading line filters (None when there are none): the hot path."""
        tests = self.line_tests
        if not tests:
            return None
        if len(tests) == 1:
            return tests[0]
        return lambda line: all(test(line) for test in tests)

    def scan_test(self, stream_names: frozenset[str]) -> Callable[[str], bool] | None:
        """`line_test`, and for a leading `| json | filter` a test of the filter on the raw
        line (json_probe.prefilter) when no stream label (`stream_names`) can change its
        verdict: lines it drops never reach the Python loop of a query."""
        test = self.line_test
        if self.json_filter is None:
            return test
        probe = json_probe.prefilter(self.json_filter, stream_names, check_labels, json_scalar)
        if probe is None or test is None:
            return probe or test
        first = test
        return lambda line: first(line) and probe(line)

    def scan_screens(self, stream_names: frozenset[str]) -> list[screens.Screen]:
        """Screens every line `scan_test` keeps passes (see screens)."""
        found = list(self.screens)
        if self.json_filter is not None:
            probe = json_probe.screen(self.json_filter, stream_names, check_labels)
            if probe is not None:
                found.append(probe)
        return found

    def number_screen(self, stream_names: frozenset[str]) -> screens.NumberScreen | None:
        """A leading `| json | name > 100` read off the packed details (see screens)."""
        return screens.of_json_filter(self.json_filter, stream_names)

    def run(self, ts: int, line: str, labels: Labels) -> tuple[str, Labels] | None:
        """The line and labels after every stage, or None when a stage drops it."""
        for test in self.line_tests:
            if not test(line):
                return None
        for stage in self.stages:
            result = stage(ts, line, labels)
            if result is None:
                return None
            line, labels = result
        return line, labels


class SampleExtractor:
    """A pipeline whose entries become numbers: 1 per line, its bytes, or an unwrapped label."""

    def __init__(self, stages: tuple[Stage, ...], mode: str) -> None:
        cut = next((i for i, s in enumerate(stages) if isinstance(s, Unwrap)), None)
        self.unwrap: Unwrap | None = None
        if cut is None:
            self.before, self.after = Pipeline(stages), Pipeline(())
        else:
            unwrap = stages[cut]
            assert isinstance(unwrap, Unwrap)
            self.unwrap = unwrap
            self.before, self.after = Pipeline(stages[:cut]), Pipeline(stages[cut + 1 :])
        self.mode = mode
        self.passes_all = self.unwrap is None and not self.before.stages and not self.after.stages
        """True when, past the leading line filters (`before.line_test`, which the caller runs
        while scanning), every entry is kept unchanged; its value then depends only on `mode`."""

    def extract(self, ts: int, line: str, labels: Labels) -> tuple[float, Labels] | None:
        """(value, series labels) for one entry, or None when the pipeline drops it."""
        result = self.before.run(ts, line, labels)
        if result is None:
            return None
        line, labels = result
        if self.unwrap is None:
            value = float(len(line.encode())) if self.mode == "bytes" else 1.0
            return value, labels
        name, conversion = self.unwrap.label, self.unwrap.conversion
        raw = labels.get(name, "")
        number: float | None
        if conversion == "bytes":
            number = parse_bytes(raw)
        elif conversion in ("duration", "duration_seconds"):
            number = label_number(raw, "duration")
        else:
            number = label_number(raw, "number")
        labels = {k: v for k, v in labels.items() if k != name}
        if number is None or math.isnan(number):
            number = 0.0
            labels[ERROR_LABEL] = SAMPLE_ERROR
        after = self.after.run(ts, line, labels)
        if after is None:
            return None
        return number, after[1]
