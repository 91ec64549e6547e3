"""The one way in: decode a body, validate each record, apply it, log and publish what happened.

Every transport (HTTP, WebSocket, SSE and poll sources, Loki push, the demo) hands parsed bodies
to `Ingestor.ingest`; nothing else writes to the store.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from exporter.eventlog import EventLog, Frame, Hub, Published
from exporter.events import ShoppingEvent
from exporter.model import (
    BodyError,
    Rejection,
    ShopperEventIn,
    ShopperUpdate,
    ValidBatch,
    decode,
    parse_json,
    validate_batch,
    validate_event,
    validate_update,
)
from exporter.privacy import Pseudonyms
from exporter.settings import Settings
from exporter.store import ShopperStore
from exporter.views import glimpse, view_of

TRANSPORTS = ("http", "ws", "sse", "poll", "loki", "demo")
MAX_LINE = 1000
"""Characters of a plain log line kept in the event log."""


@dataclass(slots=True)
class IngestReport:
    """What became of a body's records."""

    accepted: int = 0
    ignored: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "ignored": self.ignored,
            "rejected": [r.to_json() for r in self.rejected],
        }

    @property
    def all_rejected(self) -> bool:
        """True when the body had records and none was valid."""
        return bool(self.rejected) and self.accepted == 0 and self.ignored == 0


def _shopper_data(glimpsed: tuple[Any, ...]) -> str:
    return orjson.dumps(view_of(glimpsed)).decode()


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact_emails(text: str) -> str:
    """Mask anything shaped like an email address: emails are never kept, even in free text."""
    return _EMAIL.sub("[email]", text) if "@" in text else text


class Ingestor:
    """Applies records to the store and feeds the event log and the live hub."""

    def __init__(
        self,
        settings: Settings,
        store: ShopperStore,
        log: EventLog,
        hub: Hub,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.hub = hub
        self.clock = clock
        self.received: dict[str, int] = {}
        self.rejected: dict[tuple[str, str], int] = {}
        salt = settings.pseudonym_salt
        self.pseudonyms = Pseudonyms(salt) if salt else None

    def shopper_key(self, user_id: str) -> str:
        """The id the store knows a shopper by (their pseudonym when pseudonyms are on)."""
        if self.pseudonyms is None or user_id in self.store:
            return user_id
        return self.pseudonyms.user_id(user_id)

    def _count(self, transport: str, received: int, rejected: dict[str, int]) -> None:
        self.received[transport] = self.received.get(transport, 0) + received
        for reason, n in rejected.items():
            if n:
                key = (transport, reason)
                self.rejected[key] = self.rejected.get(key, 0) + n

    def refuse(self, transport: str, reason: str, records: int = 1) -> None:
        """Count a body refused as a whole (not JSON, too large, too many records)."""
        self._count(transport, records, {reason: records})

    def ingest_bytes(self, raw: bytes | str, transport: str, kind: str = "metric") -> IngestReport:
        """Parse then ingest; raises BodyError (already counted) when the body is unreadable."""
        valid = validate_batch(raw, kind)
        if valid is not None:
            return self.ingest_valid(valid, transport)
        try:
            body = parse_json(raw)
        except BodyError as err:
            self.refuse(transport, err.reason)
            raise
        return self.ingest(body, transport, kind)

    def ingest_valid(self, batch: ValidBatch, transport: str) -> IngestReport:
        """Apply a body whose every record was validated already (the fast path)."""
        self._check_size(len(batch), transport)
        report = IngestReport()
        self._apply_updates(batch.updates, report)
        self._apply_events(batch.events, report)
        self._count(transport, len(batch), {})
        return report

    def ingest(self, body: Any, transport: str, kind: str = "metric") -> IngestReport:
        """Apply every valid record of a parsed body; invalid ones change nothing.

        `kind` says what a bare object or array element is: "metric" (update) or "event".
        """
        try:
            batch = decode(body, kind)
        except BodyError as err:
            self.refuse(transport, err.reason)
            raise
        self._check_size(len(batch), transport)
        report = IngestReport()
        updates: list[ShopperUpdate] = []
        for index, raw in batch.metrics:
            update = validate_update(raw)
            if isinstance(update, tuple):
                report.rejected.append(Rejection(index, "metric", update))
            else:
                updates.append(update)
        events: list[ShopperEventIn] = []
        for index, raw in batch.events:
            event = validate_event(raw)
            if isinstance(event, tuple):
                report.rejected.append(Rejection(index, "event", event))
            else:
                events.append(event)
        self._apply_updates(updates, report)
        self._apply_events(events, report)
        self._count(transport, len(batch), {"invalid": len(report.rejected)})
        return report

    def _check_size(self, records: int, transport: str) -> None:
        limit = self.settings.max_batch
        if records > limit:
            self.refuse(transport, "batch_too_large", records)
            raise BodyError(
                f"{records} records in one body; the limit is {limit}", reason="batch_too_large"
            )

    def _apply_updates(self, updates: list[ShopperUpdate], report: IngestReport) -> None:
        """Apply valid updates in order; stale and duplicate ones are counted as ignored."""
        now = self.clock()
        pseudonyms = self.pseudonyms
        store, log = self.store, self.log
        # Asked once per body, not per record: nothing awaits in between. Logging and
        # publishing are inlined for the same reason: this loop runs for every update.
        frames: list[Published] | None = [] if self.hub.subscribers > 0 else None
        accepted = 0
        for update in updates:
            if pseudonyms is not None:
                update = update.model_copy(
                    update={
                        "user_id": pseudonyms.user_id(update.user_id),
                        "user_name": pseudonyms.user_name(update.user_name),
                    }
                )
            happened = store.apply(update, now)
            if happened is None:
                report.ignored += 1
                continue
            accepted += 1
            if frames is None:
                for event in happened:
                    log.append(event)
                continue
            for event in happened:
                frames.append(log.append(event))
            shopper = store.get(update.user_id)
            if shopper is not None:
                # The state as it is now, rendered only if a reader takes the frame.
                view = glimpse(shopper)
                frames.append(("user_metric", log.last_id, shopper.user_id, view, _shopper_data))
        report.accepted += accepted
        if frames:
            self.hub.publish_many(frames)

    def _apply_events(self, events: list[ShopperEventIn], report: IngestReport) -> None:
        """Record valid explicit events in order (after the body's updates)."""
        now = self.clock()
        pseudonyms = self.pseudonyms
        happened: list[ShoppingEvent] = []
        for event in events:
            if pseudonyms is not None:
                named = {"user_name": pseudonyms.user_name(event.user_name)}
                event = event.model_copy(
                    update={"user_id": pseudonyms.user_id(event.user_id)}
                    | (named if event.user_name else {})
                )
            report.accepted += 1
            happened += self.store.apply_event(event, now)
        # Logged and published once for the body, like its updates (nothing reads in between).
        self.record(happened)

    def keep_lines(self, lines: Iterable[tuple[str, float, str]], transport: str) -> int:
        """Keep plain log lines (no shopper record in them) as events of their own type.

        Each is (type, when in epoch seconds, text); the text is cut to MAX_LINE characters and
        belongs to no shopper. Returns how many were kept.
        """
        happened = [
            ShoppingEvent(kind, "", "", at, {"line": redact_emails(text[:MAX_LINE])})
            for kind, at, text in lines
        ]
        self.store.count_events(happened, self.clock())
        self.record(happened)
        self._count(transport, len(happened), {})
        return len(happened)

    def record(self, happened: Iterable[ShoppingEvent]) -> None:
        """Log events and, when anyone listens, publish them."""
        logged = list(map(self.log.append, happened))
        if logged and self.hub.subscribers > 0:
            self.hub.publish_many(logged)

    def publish_summary(self) -> dict[str, Any]:
        """Publish the summary frame (once a second while anyone listens); returns it."""
        summary = self.store.summary(self.clock())
        if self.hub.subscribers:
            self.hub.publish(Frame("summary", self.log.last_id, orjson.dumps(summary).decode()))
        return summary

    def expire(self) -> None:
        """End idle sessions and forget expired shoppers; log what that implies."""
        self.record(self.store.expire(self.clock()))
