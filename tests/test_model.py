"""The wire model: the brief's structure, validation rules, and every accepted body shape."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.demo import DemoGenerator
from exporter.model import (
    BodyError,
    ShopperUpdate,
    decode,
    parse_json,
    validate_batch,
    validate_event,
    validate_update,
)

from support import brief_example

BAD_VALUES: list[tuple[str, Any, str]] = [
    ("pageViews", -1, "greater than or equal to 0"),
    ("itemsInCart", -3, "greater than or equal to 0"),
    ("scrollDepth", 150, "less than or equal to 100"),
    ("cartValue", -0.01, "greater than or equal to 0"),
    ("cartValue", math.nan, "finite"),
    ("cartValue", math.inf, "finite"),
    ("sessionDuration", math.inf, "finite"),
    ("pageViews", "lots", "integer"),
    ("pageViews", 2.5, "integer"),
    ("isActive", "yes", "boolean"),
    ("timestamp", "yesterday", "ISO 8601"),
    ("timestamp", 1700000000, "ISO 8601"),
    ("userName", "x" * 1_000_000, "at most 200"),
    ("userId", "", "at least 1"),
    ("featuresUsed", ["Cart"] * 51, "at most 50"),
    ("activeFeature", "y" * 65, "at most 64"),
]
"""(field, bad value, words of the reason): each must be refused, naming the field."""


class TestShopperUpdate:
    def test_brief_example_is_accepted(self) -> None:
        """The brief's example record validates with every field carried over."""
        update = validate_update(brief_example())
        assert isinstance(update, ShopperUpdate)
        assert update.user_id == "shopper_123"
        assert update.company == "San Francisco, CA"
        assert update.cart_value == 127.5
        assert update.items_in_cart == 12
        assert update.feature_time == {"Browsing": 8, "Cart": 5, "Checkout": 2}
        assert update.features_used == ("Browsing", "Cart", "Checkout")

    def test_email_is_dropped(self) -> None:
        """The email is accepted on the wire but never kept."""
        update = validate_update(brief_example())
        assert isinstance(update, ShopperUpdate)
        assert "sarah@email.com" not in repr(update.model_dump())

    def test_minimum_required_fields(self) -> None:
        """userId, userName, timestamp and isActive are enough."""
        update = validate_update(
            {"userId": "a", "userName": "A", "timestamp": "2026-01-01T10:00:00Z", "isActive": False}
        )
        assert isinstance(update, ShopperUpdate)
        assert update.items_in_cart == 0

    def test_naive_timestamp_means_utc(self) -> None:
        """A timestamp without an offset is read as UTC."""
        update = validate_update(
            {"userId": "a", "userName": "A", "timestamp": "2026-01-01T10:00:00", "isActive": True}
        )
        assert isinstance(update, ShopperUpdate)
        assert update.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC)

    @pytest.mark.parametrize("missing", ["userId", "userName", "timestamp", "isActive"])
    def test_each_required_field_is_named_when_missing(self, missing: str) -> None:
        """A missing required field is reported by its wire name."""
        record = brief_example()
        del record[missing]
        errors = validate_update(record)
        assert isinstance(errors, tuple)
        assert [e.field for e in errors] == [missing]
        assert "required" in errors[0].message.lower()

    @pytest.mark.parametrize(
        ("field", "value", "reason"),
        BAD_VALUES,
    )
    def test_bad_values_name_the_field_and_reason(
        self, field: str, value: Any, reason: str
    ) -> None:
        """Each rule refuses a bad value with the field's name and why."""
        record = brief_example()
        record[field] = value
        errors = validate_update(record)
        assert isinstance(errors, tuple), f"{field}={value!r} was accepted"
        assert errors[0].field == field
        assert reason.lower() in errors[0].message.lower()

    def test_unknown_fields_are_ignored(self) -> None:
        """Fields the model does not know are accepted and dropped (forward compatible)."""
        record = brief_example() | {"favouriteAisle": "snacks"}
        update = validate_update(record)
        assert isinstance(update, ShopperUpdate)
        assert "snacks" not in repr(update.model_dump())

    def test_nested_field_errors_are_located(self) -> None:
        """An error inside featureTime names the key."""
        errors = validate_update(brief_example() | {"featureTime": {"Cart": -1}})
        assert isinstance(errors, tuple)
        assert errors[0].field == "featureTime.Cart"

    def test_non_object_record(self) -> None:
        """A record that is not an object is refused as a whole."""
        errors = validate_update([1, 2])
        assert isinstance(errors, tuple)
        assert errors[0].message == "must be a JSON object"


def _journeys() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Demo updates (the brief's example first) and the events of the same journeys."""
    demo = DemoGenerator(300, seed=3, pace=2.0)
    updates: list[dict[str, Any]] = [brief_example()]
    events: list[dict[str, Any]] = []
    for step in range(40):
        more_updates, more_events = demo.tick(1_700_000_000.0 + step)
        updates += more_updates
        events += more_events
    return updates, events


class TestValidBatch:
    """The bulk fast path: a body validated in one pass must agree with record by record."""

    def test_array_gives_the_same_updates_as_record_by_record(self) -> None:
        """Demo journeys and the brief's example come out equal on both paths."""
        updates, _ = _journeys()
        fast = validate_batch(json.dumps(updates).encode())
        assert fast is not None
        assert fast.updates == [validate_update(r) for r in updates]
        assert fast.events == []
        assert len(fast) == len(updates) > 300

    def test_envelope_gives_the_same_records_as_record_by_record(self) -> None:
        """`{"metrics", "events"}`: updates and events equal on both paths, extra keys ignored."""
        updates, events = _journeys()
        assert events, "the journeys should have produced events"
        body = json.dumps({"metrics": updates, "events": events, "source": "pos"})
        fast = validate_batch(body)
        assert fast is not None
        assert fast.updates == [validate_update(r) for r in updates]
        assert fast.events == [validate_event(e) for e in events]
        only_events = validate_batch(json.dumps({"events": events}))
        assert only_events is not None
        assert (only_events.updates, len(only_events.events)) == ([], len(events))

    @pytest.mark.parametrize(
        "body",
        [
            {"userId": "a", "userName": "A", "timestamp": "2026-01-01T00:00:00Z", "isActive": True},
            {"type": "subscribe"},
            {"type": "user_metric", "metric": {}},
            # The batch keys nested, not at the top: still one update.
            brief_example() | {"featureTime": {"events": 2.0}, "lastAction": "metrics"},
            42,
        ],
    )
    def test_other_shapes_take_the_record_path(self, body: Any) -> None:
        """One update, a WebSocket message or a scalar is not a batch: None, so the caller reads
        it as it always did."""
        assert validate_batch(json.dumps(body)) is None

    @pytest.mark.parametrize("raw", [b"\xff\xfe", b"", b" " * 100 + b"[]", "\ud800"])
    def test_unreadable_bodies_take_the_record_path(self, raw: bytes | str) -> None:
        """Bytes that are no UTF-8, nothing, or a body past 64 blanks: None, never an error, so
        the record path refuses or reads them."""
        assert validate_batch(raw) is None

    def test_the_shape_is_told_past_leading_whitespace(self) -> None:
        """Blank space before the body does not keep a batch off the fast path, as text or bytes."""
        updates, events = _journeys()
        array = validate_batch(" \n\t " + json.dumps(updates))
        envelope = validate_batch(b"\r\n " + json.dumps({"events": events}).encode())
        assert array is not None
        assert len(array.updates) == len(updates)
        assert envelope is not None
        assert len(envelope.events) == len(events)

    def test_bare_events_are_no_batch_of_updates(self) -> None:
        """Where bare records are events (POST /api/events), an array is left to the record path;
        an envelope says what it holds, so it is validated in one pass there too."""
        updates, events = _journeys()
        assert validate_batch(json.dumps(events), "event") is None
        envelope = validate_batch(json.dumps({"metrics": updates, "events": events}), "event")
        assert envelope is not None
        assert (len(envelope.updates), len(envelope.events)) == (len(updates), len(events))

    @pytest.mark.parametrize(("field", "value", "reason"), BAD_VALUES)
    def test_any_bad_record_sends_the_batch_to_the_record_path(
        self, field: str, value: Any, reason: str
    ) -> None:
        """Whatever the record path refuses, the fast path refuses too, as an array or in an
        envelope (so it falls back and the reply can name the field), never accepting it."""
        bad = brief_example()
        bad[field] = value
        assert isinstance(validate_update(bad), tuple)
        assert validate_batch(json.dumps([brief_example(), bad]).encode()) is None
        assert validate_batch(json.dumps({"metrics": [brief_example(), bad]})) is None

    def test_a_bad_event_sends_the_envelope_to_the_record_path(self) -> None:
        """An invalid explicit event (here a free-text type) refuses the fast path as well."""
        _, events = _journeys()
        bad = dict(events[0], type="<script>")
        assert isinstance(validate_event(bad), tuple)
        assert validate_batch(json.dumps({"metrics": [], "events": [*events, bad]})) is None
        assert validate_batch(json.dumps({"metrics": {"userId": "a"}})) is None


class TestEvents:
    def test_explicit_order_event(self) -> None:
        """An order_completed event with its properties validates."""
        event = validate_event(
            {
                "type": "order_completed",
                "userId": "s1",
                "timestamp": "2026-01-01T10:00:00Z",
                "orderValue": 42.5,
                "items": 3,
            }
        )
        assert not isinstance(event, tuple)
        assert event.order_value == 42.5

    def test_event_type_is_checked(self) -> None:
        """An event type must be a word, not free text."""
        errors = validate_event({"type": "<script>", "userId": "s1", "timestamp": "2026-01-01"})
        assert isinstance(errors, tuple)
        assert errors[0].field == "type"


class TestDecoding:
    def test_shapes(self) -> None:
        """Object, array, envelope and both WebSocket forms split into updates and events."""
        one = {"userId": "a"}
        assert len(decode(one).metrics) == 1
        assert len(decode([one, one]).metrics) == 2
        env = decode({"metrics": [one], "events": [one, one]})
        assert (len(env.metrics), len(env.events)) == (1, 2)
        assert len(decode({"type": "user_metric", "metric": one}).metrics) == 1
        assert len(decode({"type": "event", "event": one}).events) == 1
        assert len(decode([one], "event").events) == 1

    def test_wrong_top_level(self) -> None:
        """A scalar body, or an envelope whose parts are not arrays, is refused."""
        with pytest.raises(BodyError):
            decode(42)
        with pytest.raises(BodyError):
            decode({"metrics": {"userId": "a"}})

    def test_parse_json(self) -> None:
        """Not-JSON is a BodyError; NaN parses so that validation can name its field."""
        with pytest.raises(BodyError, match="not valid JSON"):
            parse_json(b"{nope")
        assert math.isnan(parse_json(b'{"cartValue": NaN}')["cartValue"])
