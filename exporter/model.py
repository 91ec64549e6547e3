"""Wire models (the brief's camelCase structure) and decoding of every accepted body shape."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel

MAX_COUNT: Final = 1_000_000_000
MAX_MONEY: Final = 10_000_000.0
MAX_MINUTES: Final = 7 * 24 * 60.0
MAX_LIST: Final = 50
NAME_LEN: Final = 200
LABEL_LEN: Final = 64


def _timestamp(value: Any) -> datetime:
    """ISO 8601 only (naive means UTC); numbers and other types are refused with a reason."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        if len(value) > 64:
            raise ValueError("timestamp is too long")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an ISO 8601 timestamp") from None
    else:
        raise ValueError("must be an ISO 8601 string")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
Money = Annotated[float, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
Minutes = Annotated[float, Field(ge=0, le=MAX_MINUTES, allow_inf_nan=False)]
Label = Annotated[str, Field(max_length=LABEL_LEN)]
Text = Annotated[str, Field(max_length=NAME_LEN)]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="ignore",
        frozen=True,
        str_strip_whitespace=True,
        allow_inf_nan=False,
    )


class ShopperUpdate(_Wire):
    """One shopper's current state, as the platform reports it. `email` is accepted and dropped."""

    user_id: Identifier
    user_name: Annotated[str, Field(min_length=1, max_length=NAME_LEN)]
    timestamp: Timestamp
    is_active: Annotated[bool, Field(strict=True)]

    company: Text = ""
    """The shopper's location, e.g. "San Francisco, CA"."""
    session_duration: Minutes | None = None
    page_views: Count = 0
    click_count: Count = 0
    scroll_depth: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.0
    features_used: Annotated[tuple[Label, ...], Field(max_length=MAX_LIST)] = ()
    active_feature: Label = ""
    feature_time: Annotated[dict[Label, Minutes], Field(max_length=MAX_LIST)] = {}
    cart_value: Money = 0.0
    items_in_cart: Count = 0
    products_viewed: Count = 0
    searches_performed: Count = 0
    coupons_applied: Count = 0
    membership_type: Label = ""
    delivery_window: Label = ""
    events_triggered: Count = 0
    queries_run: Count = 0
    reports_created: Count = 0
    dashboards_viewed: Count = 0
    last_action: Text = ""
    last_action_time: Timestamp | None = None


class ShopperEventIn(_Wire):
    """An explicit shopping event: `{"type", "userId", "timestamp", ...properties}`."""

    type: Annotated[str, Field(min_length=1, max_length=LABEL_LEN, pattern=r"^[A-Za-z][\w.-]*$")]
    user_id: Identifier
    timestamp: Timestamp
    user_name: Text = ""
    order_id: Label | None = None
    order_value: Money | None = None
    items: Count | None = None
    cart_value: Money | None = None
    items_in_cart: Count | None = None
    delivery_window: Label | None = None
    query: Text | None = None
    product: Text | None = None
    category: Label | None = None
    coupon: Label | None = None
    activity: Label | None = None
    reason: Label | None = None
    summary: Text | None = None
    """A free sentence, for events such as alerts."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a record was refused, naming the field."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record of a body that was refused, with every reason."""

    index: int
    kind: str
    errors: tuple[FieldError, ...]
    reason: str = "invalid"
    """invalid (a field fails validation), future (stamped too far ahead), capacity or
    wrong_shard (another replica owns the shopper)."""
    shard: int | None = None
    """The owning shard of a wrong_shard record."""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "index": self.index,
            "kind": self.kind,
            "reason": self.reason,
            "errors": [e.to_json() for e in self.errors],
        }
        if self.shard is not None:
            body["shard"] = self.shard
        return body


class BodyError(ValueError):
    """A body that cannot be read at all (not JSON, wrong top-level shape, too many records)."""

    def __init__(self, message: str, reason: str = "not_json") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Batch:
    """The records of one body, still unvalidated, each with its position in the body."""

    metrics: list[tuple[int, Any]] = field(default_factory=list)
    events: list[tuple[int, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.metrics) + len(self.events)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_json(raw: bytes | str) -> Any:
    """Parse a body. NaN and Infinity parse (so validation can name the field) but never pass."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as fast_err:
        try:
            # orjson refuses NaN/Infinity; the stdlib reads them, so the reply can name the field.
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise BodyError(f"body is not valid JSON: {fast_err}") from None


def decode(body: Any, default_kind: str = "metric") -> Batch:
    """Split any accepted shape into update and event records.

    Shapes: one object; an array; `{"metrics": [...], "events": [...]}`; and the WebSocket forms
    `{"type": "user_metric", "metric": {...}}` / `{"type": "event", "event": {...}}`.
    `default_kind` says what a bare object or array element is ("metric" or "event").
    """
    batch = Batch()
    target = batch.events if default_kind == "event" else batch.metrics
    if isinstance(body, list):
        target.extend(enumerate(body))
    elif isinstance(body, dict):
        if is_envelope(body):
            for key, dest in (("metrics", batch.metrics), ("events", batch.events)):
                part = body.get(key, [])
                if not isinstance(part, list):
                    raise BodyError(f"{key!r} must be an array", reason="invalid")
                dest.extend(enumerate(part))
        elif body.get("type") == "user_metric" and "metric" in body:
            batch.metrics.append((0, body["metric"]))
        elif body.get("type") == "event" and "event" in body:
            batch.events.append((0, body["event"]))
        else:
            target.append((0, body))
    else:
        raise BodyError("body must be a JSON object or array", reason="invalid")
    return batch


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts) or "(record)"


def field_errors(err: ValidationError) -> tuple[FieldError, ...]:
    """Flatten pydantic's errors to (field, reason) pairs, without echoing the input."""
    out: list[FieldError] = []
    for item in err.errors(include_url=False, include_input=False):
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        out.append(FieldError(_field_name(tuple(item["loc"])), message))
    return tuple(out)


def validate_update(raw: Any) -> ShopperUpdate | tuple[FieldError, ...]:
    """A valid update, or every reason it is not."""
    if not isinstance(raw, dict):
        return (FieldError("(record)", "must be a JSON object"),)
    try:
        return ShopperUpdate.model_validate(raw)
    except ValidationError as err:
        return field_errors(err)


def validate_event(raw: Any) -> ShopperEventIn | tuple[FieldError, ...]:
    """A valid explicit event, or every reason it is not."""
    if not isinstance(raw, dict):
        return (FieldError("(record)", "must be a JSON object"),)
    try:
        return ShopperEventIn.model_validate(raw)
    except ValidationError as err:
        return field_errors(err)


class _Envelope(BaseModel):
    """The `{"metrics": [...], "events": [...]}` shape, as the fast path reads it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    metrics: list[ShopperUpdate] = []
    events: list[ShopperEventIn] = []


_UPDATES: Final = TypeAdapter(list[ShopperUpdate])


@dataclass(frozen=True, slots=True)
class ValidBatch:
    """The records of a body in which every record is valid (updates, then events)."""

    updates: list[ShopperUpdate]
    events: list[ShopperEventIn]

    def __len__(self) -> int:
        return len(self.updates) + len(self.events)


def is_envelope(body: Any) -> bool:
    """Whether a parsed body has the `{"metrics", "events"}` shape (either key makes it one)."""
    return isinstance(body, dict) and ("metrics" in body or "events" in body)


def _opening(raw: bytes | str) -> str:
    """The first character of a body after whitespace ("" when the first 64 are all blank)."""
    first = raw[:64].lstrip()[:1]
    if isinstance(first, bytes):
        return chr(first[0]) if first else ""  # not decoded: the bytes may be no UTF-8 at all
    return first


def _names_a_batch_key(raw: bytes | str) -> bool:
    """Whether `"metrics"` or `"events"` occurs at all: an object without either is no envelope.
    (A key spelt with escapes is missed, and then read on the record path all the same.)"""
    if isinstance(raw, str):
        return '"metrics"' in raw or '"events"' in raw
    return b'"metrics"' in raw or b'"events"' in raw


def validate_batch(raw: bytes | str, kind: str = "metric") -> ValidBatch | None:
    """An array of updates (when bare records are updates) or a `{"metrics", "events"}` body,
    validated straight from the bytes; None if any record is invalid or the body is no batch.

    The fast path for bulk bodies: pydantic parses and validates in one pass, without building
    a dict per record first. The shape is told from the first character, so each body is
    validated against the one type it can be (a union would read an envelope twice), and one
    update or a WebSocket control message is not put through this at all. On None the caller
    takes the record-by-record path, which applies the valid records and names each bad field
    (or reads the other shapes).
    """
    opening = _opening(raw)
    try:
        if opening == "[" and kind == "metric":
            return ValidBatch(_UPDATES.validate_json(raw), [])
        if opening == "{" and _names_a_batch_key(raw):
            envelope = _Envelope.model_validate_json(raw)
            if envelope.model_fields_set:  # else the keys were nested: not an envelope
                return ValidBatch(envelope.metrics, envelope.events)
    except ValidationError:
        return None
    return None


def epoch(moment: datetime) -> float:
    """Seconds since the epoch; out-of-range dates clamp rather than raise."""
    try:
        value = moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0
