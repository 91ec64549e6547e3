"""`| json | filter` run as one stage keeps exactly the lines, labels and errors of the two."""

from __future__ import annotations

import pytest

from exporter.loki.logql import LogQuery, parse
from exporter.loki.pipeline import Labels, Pipeline
from exporter.loki.streams import STREAM_LABEL_NAMES, StreamLabeller

STREAM: Labels = {"job": "shopper-events", "type": "cart_add", "membership": "Free"}
LINES = [
    '{"cartValue": 120, "type": "cart_add", "nested": {"cartValue": 5}}',
    '{"cartValue": 99.5, "userId": "u1"}',
    '{"cartValue": "150", "membership": "Premium"}',
    '{"cartValue": "lots"}',
    '{"cartValue": null}',
    '{"cartValue": true}',
    '{"cartValue": [1, 2]}',
    '{"cartValue": {"amount": 300}}',
    '{"\\u0063artValue": 500}',
    '{"items": 3}',
    '{"membership": "Premium", "items": 7}',
    "[1, 2, 3]",
    "not json at all cartValue",
    '{"cartValue": 101, "type": "search"',
    '"cartValue"',
]
# As the service writes them (orjson: no spaces), fields are read straight from the text.
LINES += [line.replace(": ", ":").replace(", ", ",") for line in LINES]
LINES += [
    '{"message":"a{b","cartValue":150}',
    '{"cartValue":150,"cartValue":5}',
    '{"a":{"cartValue":500},"cartValue":5}',
    '{"a":[{"cartValue":500}],"cartValue":5}',
    '{"cartValue":1e3}',
    '{"cartValue":20.0,"items":2.50}',
    '{"cartValue":-0,"items":-7}',
    '{"cartValue":"1\\u00e9\\"x"}',
    '{"cartValue":"\\u0031\\u0035\\u0030"}',
    '{"cartValue":150',
    '{"cartValue":150}garbage',
    '{"cartValue":150,}',
    '{"cartValue":tru}',
    '{"membership":"Premium","cartValue":300,"type":"search"}',
]
FILTERS = [
    "cartValue > 100",
    "cartValue > 100 or items >= 3",
    'cartValue >= 100 and membership="Premium"',
    'membership="Free"',
    'type!="cart_add"',
    'cartValue=~"1.*"',
    'cartValue!~"1.*"',
    'cartValue=""',
    "cartValue = 120",
    "items < 5",
    'cartValue > 100, userId!="u1"',
]


def one_by_one(query: LogQuery, line: str) -> tuple[str, Labels] | None:
    """The pipeline's stages run each on its own, never fused."""
    labels = STREAM
    for stage in query.stages:
        result = Pipeline((stage,)).run(0, line, labels)
        if result is None:
            return None
        line, labels = result
    return line, labels


@pytest.mark.parametrize("condition", FILTERS)
def test_fused_json_filter_matches_the_stages_run_apart(condition: str) -> None:
    """For every kind of line (nested, escaped keys, not JSON, colliding labels) the fused
    stage gives what json then the filter give."""
    query = parse('{job="shopper-events"} | json | ' + condition + ' | line_format "x"')
    assert isinstance(query, LogQuery)
    fused = Pipeline(query.stages)
    assert len(fused.stages) == 2  # json+filter as one stage, then line_format
    for line in LINES:
        assert fused.run(0, line, STREAM) == one_by_one(query, line), line


def test_filters_on_nested_names_are_not_fused() -> None:
    """A name with `_` may come from a nested field, so the two stages run as written."""
    query = parse('{job="shopper-events"} | json | nested_cartValue > 1')
    assert isinstance(query, LogQuery)
    assert len(Pipeline(query.stages).stages) == 2
    line = LINES[0]
    assert Pipeline(query.stages).run(0, line, STREAM) == one_by_one(query, line)


@pytest.mark.parametrize("condition", FILTERS)
def test_raw_line_prefilter_drops_only_lines_the_stages_drop(condition: str) -> None:
    """The scan's test on raw lines never drops a line that json then the filter would keep."""
    query = parse('{job="shopper-events"} | json | ' + condition)
    assert isinstance(query, LogQuery)
    pipeline = Pipeline(query.stages)
    test = pipeline.scan_test(STREAM_LABEL_NAMES)
    if any(name in condition for name in STREAM_LABEL_NAMES):
        assert test is None  # a stream label may decide: every line goes through the stages
        return
    for line in LINES:
        if test is not None and not test(line):
            assert one_by_one(query, line) is None, line


def test_prefilter_drops_most_lines_of_a_selective_filter() -> None:
    """On lines as the service writes them, a selective numeric filter is decided unparsed."""
    query = parse('{job="shopper-events"} | json | cartValue > 100')
    assert isinstance(query, LogQuery)
    test = Pipeline(query.stages).scan_test(STREAM_LABEL_NAMES)
    assert test is not None
    lines = [f'{{"type":"cart_add","cartValue":{v},"message":"x"}}' for v in (5, 99.9, 100, 250)]
    assert [test(line) for line in lines] == [False, False, False, True]


def test_stream_label_names_cover_every_stream_label() -> None:
    """Every label the labeller gives a stream is named in STREAM_LABEL_NAMES."""
    labeller = StreamLabeller(10)
    names = set(labeller.for_key(("cart_add", "Cart", "Free"))) | set(
        labeller.for_state(True, "Free")
    )
    assert names <= STREAM_LABEL_NAMES
