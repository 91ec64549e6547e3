"""POST /loki/api/v1/push: Loki's JSON push as one more way in.

Lines holding a shopper update or an explicit event go through the Ingestor like any other
transport; any other line is kept in the event log as a plain log line of its stream's type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from exporter.api.replies import BodyTooLargeError, read_limited
from exporter.ingest import Ingestor
from exporter.keys import INGESTOR, SETTINGS
from exporter.model import BodyError, parse_json
from exporter.skew import FUTURE

UPDATE_FIELDS: Final = frozenset({"userId", "userName", "timestamp", "isActive"})
EVENT_FIELDS: Final = frozenset({"type", "userId", "timestamp"})
LOG_TYPE: Final = "log"
_TYPE_LABEL: Final = re.compile(r"[A-Za-z][\w.-]{0,63}")
TRANSPORT: Final = "loki"


Line = tuple[str, float, str]
"""A plain log line: (type, time in epoch seconds, text)."""


class PushError(ValueError):
    """A push body Loki would refuse with 400."""


@dataclass(slots=True)
class PushBatch:
    """A push body sorted by what each line holds."""

    updates: list[tuple[int, Any]] = field(default_factory=list)
    events: list[tuple[int, Any]] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    line_positions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.updates) + len(self.events) + len(self.lines)


def _timestamp(raw: Any, where: str) -> int:
    if not isinstance(raw, str):
        # Loki documents this: the timestamp must be a string of nanoseconds.
        raise PushError(f"{where}: the timestamp must be a string of Unix nanoseconds")
    try:
        return int(raw)
    except ValueError:
        raise PushError(f"{where}: invalid timestamp {raw!r}") from None


def _line_type(labels: dict[str, Any]) -> str:
    kind = labels.get("type")
    if isinstance(kind, str) and _TYPE_LABEL.fullmatch(kind):
        return kind
    return LOG_TYPE


def _record(line: str) -> tuple[str, Any] | None:
    """("metric" | "event", object) when the line is a shopper update or an explicit event."""
    if not line.lstrip().startswith("{"):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if obj.keys() >= UPDATE_FIELDS:
        return "metric", obj
    if obj.keys() >= EVENT_FIELDS:
        return "event", obj
    return None


def sort_push(body: Any, max_lines: int) -> PushBatch:
    """Check a push body's shape and sort its lines; raises PushError or BodyError."""
    if not isinstance(body, dict) or not isinstance(body.get("streams"), list):
        raise PushError('the body must be {"streams": [{"stream": {…}, "values": [[ts, line]]}]}')
    batch = PushBatch()
    total = 0
    for s, stream in enumerate(body["streams"]):
        if not isinstance(stream, dict):
            raise PushError(f"streams[{s}] must be an object")
        labels = stream.get("stream", {})
        values = stream.get("values", [])
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise PushError(f"streams[{s}].stream must map label names to strings")
        if not isinstance(values, list):
            raise PushError(f"streams[{s}].values must be an array")
        total += len(values)
        if total > max_lines:
            raise BodyError(f"more than {max_lines} lines in one push", reason="batch_too_large")
        kind = _line_type(labels)
        for v, entry in enumerate(values):
            where = f"streams[{s}].values[{v}]"
            if not isinstance(entry, list) or len(entry) not in (2, 3):
                raise PushError(f"{where} must be [timestamp, line] or [timestamp, line, metadata]")
            ts = _timestamp(entry[0], where)
            line = entry[1]
            if not isinstance(line, str):
                raise PushError(f"{where}: the line must be a string")
            if len(entry) == 3 and not isinstance(entry[2], dict):
                raise PushError(f"{where}: structured metadata must be an object")
            record = _record(line)
            if record is None:
                batch.line_positions.append(len(batch))
                batch.lines.append((kind, ts / 1e9, line))
            elif record[0] == "metric":
                batch.updates.append((len(batch), record[1]))
            else:
                batch.events.append((len(batch), record[1]))
    return batch


def apply_push(ingestor: Ingestor, batch: PushBatch) -> list[str]:
    """Ingest the records and keep the plain lines; the reasons of any refused records."""
    problems: list[str] = []
    if batch.updates or batch.events:
        body = {"metrics": [r for _, r in batch.updates], "events": [r for _, r in batch.events]}
        report = ingestor.ingest(body, TRANSPORT)
        positions = {"metric": batch.updates, "event": batch.events}
        for rejection in report.rejected:
            line_no = positions[rejection.kind][rejection.index][0]
            reasons = "; ".join(f"{e.field}: {e.message}" for e in rejection.errors)
            problems.append(f"line {line_no}: {reasons}")
    if batch.lines:
        ingestor.keep_lines(_not_ahead(ingestor, batch, problems), TRANSPORT)
    return problems


def _not_ahead(ingestor: Ingestor, batch: PushBatch, problems: list[str]) -> list[Line]:
    """The plain lines within the clock-skew limit; the others are refused and counted."""
    now = ingestor.clock()
    horizon = ingestor.skew.horizon(now)
    kept = [line for line in batch.lines if line[1] <= horizon]
    if len(kept) < len(batch.lines):
        for line_no, (_, at, _) in zip(batch.line_positions, batch.lines, strict=True):
            if at > horizon:
                refusal = ingestor.skew.refusal(at, now)
                problems.append(f"line {line_no}: {refusal.field}: {refusal.message}")
        ingestor.refuse(TRANSPORT, FUTURE, len(batch.lines) - len(kept))
    return kept


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message, content_type="text/plain", headers=headers)


async def handle_push(request: web.Request) -> web.Response:
    """Accept a JSON push (gzip allowed); 204 when every line was taken."""
    ingestor, settings = request.app[INGESTOR], request.app[SETTINGS]
    if request.content_type != "application/json":
        return _refuse(415, "only JSON pushes are accepted: send Content-Type: application/json")
    try:
        raw = await read_limited(request, settings.max_body_bytes)
    except BodyTooLargeError:
        ingestor.refuse(TRANSPORT, "too_large")
        return _refuse(
            413,
            f"push body is over the {settings.max_body_bytes}-byte limit",
            headers={"Connection": "close"},
        )
    try:
        body = parse_json(raw)
        batch = sort_push(body, settings.max_batch)
    except BodyError as err:
        ingestor.refuse(TRANSPORT, err.reason)
        return _refuse(413 if err.reason == "batch_too_large" else 400, str(err))
    except PushError as err:
        ingestor.refuse(TRANSPORT, "invalid")
        return _refuse(400, str(err))
    problems = apply_push(ingestor, batch)
    if problems:
        shown = "\n".join(problems[:20])
        return _refuse(400, f"{len(problems)} of {len(batch)} lines refused:\n{shown}")
    return web.Response(status=204)
