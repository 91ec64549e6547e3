"""The one way in: decode a body, validate each record, apply it, log and publish what happened.

Every transport (HTTP, WebSocket, SSE and poll sources, Loki push, the demo) hands parsed bodies
to `Ingestor.ingest`; nothing else writes to the store.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from exporter.eventlog import EventLog, Frame, Hub, Published
from exporter.events import ShoppingEvent
from exporter.model import (
    BodyError,
    FieldError,
    Rejection,
    ShopperEventIn,
    ShopperUpdate,
    ValidBatch,
    decode,
    epoch,
    parse_json,
    validate_batch,
    validate_event,
    validate_update,
)
from exporter.outcomes import CAPACITY, Unapplied
from exporter.privacy import Pseudonyms
from exporter.settings import Settings
from exporter.sharding import WRONG_SHARD
from exporter.shopper import Shopper
from exporter.skew import FUTURE, ClockSkew
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
    ignored_records: list[tuple[int, str, Unapplied]] = field(default_factory=list)
    """(index, kind, why) of each ignored record."""

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "ignored": self.ignored,
            "ignoredRecords": [why.to_json(i, kind) for i, kind, why in self.ignored_records],
            "rejected": [r.to_json() for r in self.rejected],
        }

    def unapplied(self, index: int, kind: str, why: Unapplied) -> None:
        """Note a valid record the store did not apply: refused (no room) or ignored."""
        if why.refused:
            field_name = "userId"
            self.rejected.append(
                Rejection(index, kind, (FieldError(field_name, why.message),), why.reason)
            )
        else:
            self.ignored += 1
            self.ignored_records.append((index, kind, why))

    def refusals(self) -> dict[str, int]:
        """Refused records by reason."""
        counts: dict[str, int] = {}
        for rejection in self.rejected:
            counts[rejection.reason] = counts.get(rejection.reason, 0) + 1
        return counts

    @property
    def all_rejected(self) -> bool:
        """True when the body had records and none was applied or ignored."""
        return bool(self.rejected) and self.accepted == 0 and self.ignored == 0

    @property
    def out_of_room(self) -> bool:
        """True when every record was refused for want of room (worth retrying later)."""
        return self.all_rejected and all(r.reason == CAPACITY for r in self.rejected)


def _shopper_data(glimpsed: tuple[Any, ...]) -> str:
    return orjson.dumps(view_of(glimpsed)).decode()


# The lookbehind lets a match start only where a run of address characters starts, and the
# domain's parts cannot overlap its dots: each character is scanned a bounded number of times,
# so a long line without an address costs linear time, never quadratic.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact_emails(text: str) -> str:
    """Mask anything shaped like an email address: emails are never kept, even in free text."""
    return _EMAIL.sub("[email]", text) if "@" in text else text


def _mark_changed(shoppers: list[Shopper], changed: int) -> None:
    """Note the body's last event id on the shoppers it changed: one int shared by them all, not
    one per shopper (a resuming reader may get a state it had seen already; never misses one)."""
    for shopper in shoppers:
        shopper.changed = changed


def _index(position: int, positions: Sequence[int] | None) -> int:
    """A record's index in its body, from its position among the valid ones."""
    return position if positions is None else positions[position]


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
        self.skew = ClockSkew(settings.max_clock_skew)
        self.shard = settings.shard
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
        self._count(transport, len(batch), report.refusals())
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
        update_positions: list[int] = []
        for index, raw in batch.metrics:
            update = validate_update(raw)
            if isinstance(update, tuple):
                report.rejected.append(Rejection(index, "metric", update))
            else:
                updates.append(update)
                update_positions.append(index)
        events: list[ShopperEventIn] = []
        event_positions: list[int] = []
        for index, raw in batch.events:
            event = validate_event(raw)
            if isinstance(event, tuple):
                report.rejected.append(Rejection(index, "event", event))
            else:
                events.append(event)
                event_positions.append(index)
        self._apply_updates(updates, report, update_positions)
        self._apply_events(events, report, event_positions)
        self._count(transport, len(batch), report.refusals())
        return report

    def _check_size(self, records: int, transport: str) -> None:
        limit = self.settings.max_batch
        if records > limit:
            self.refuse(transport, "batch_too_large", records)
            raise BodyError(
                f"{records} records in one body; the limit is {limit}", reason="batch_too_large"
            )

    def _misrouted(self, report: IngestReport, index: int, kind: str, owner: int) -> None:
        assert self.shard is not None
        refusal = FieldError("userId", self.shard.misrouted(owner))
        report.rejected.append(Rejection(index, kind, (refusal,), WRONG_SHARD, owner))

    def _future(self, report: IngestReport, index: int, kind: str, at: float, now: float) -> None:
        refusal = self.skew.refusal(at, now)
        report.rejected.append(Rejection(index, kind, (refusal,), FUTURE))

    def _apply_updates(
        self,
        updates: list[ShopperUpdate],
        report: IngestReport,
        positions: Sequence[int] | None = None,
    ) -> None:
        """Apply valid updates in order; those stamped too far ahead are refused, stale and
        duplicate ones ignored. `positions` are the updates' indexes in the body (default:
        their order)."""
        now = self.clock()
        horizon = self.skew.horizon(now)
        pseudonyms, shard = self.pseudonyms, self.shard
        store, log = self.store, self.log
        # Asked once per body, not per record: nothing awaits in between. Logging and
        # publishing are inlined for the same reason: this loop runs for every update.
        frames: list[Published] | None = [] if self.hub.subscribers > 0 else None
        changed: list[Shopper] = []
        known = self._own_shoppers()
        for position, update in enumerate(updates):
            if shard is not None and update.user_id not in known:
                owner = shard.owner(update.user_id)
                if owner != shard.index:
                    self._misrouted(report, _index(position, positions), "metric", owner)
                    continue
            at = epoch(update.timestamp)
            if at > horizon:
                self._future(report, _index(position, positions), "metric", at, now)
                continue
            if pseudonyms is not None:
                update = update.model_copy(
                    update={
                        "user_id": pseudonyms.user_id(update.user_id),
                        "user_name": pseudonyms.user_name(update.user_name),
                    }
                )
            happened = store.apply(update, now, at)
            if isinstance(happened, Unapplied):
                report.unapplied(_index(position, positions), "metric", happened)
                continue
            if frames is None:
                for event in happened:
                    log.append(event)
            else:
                for event in happened:
                    frames.append(log.append(event))
            shopper = store.get(update.user_id)
            if shopper is not None:
                changed.append(shopper)
                if frames is not None:
                    # The state as it is now, rendered only if a reader takes the frame.
                    view, frame_id = glimpse(shopper), log.last_id
                    frames.append(("user_metric", frame_id, shopper.user_id, view, _shopper_data))
        report.accepted += len(changed)
        if changed:
            _mark_changed(changed, log.last_id)
        if frames:
            self.hub.publish_many(frames)

    def _apply_events(
        self,
        events: list[ShopperEventIn],
        report: IngestReport,
        positions: Sequence[int] | None = None,
    ) -> None:
        """Record valid explicit events in order (after the body's updates); then publish the
        new state of the shoppers they moved."""
        now = self.clock()
        horizon = self.skew.horizon(now)
        pseudonyms, shard = self.pseudonyms, self.shard
        happened: list[ShoppingEvent] = []
        moved: dict[str, Shopper] = {}
        known = self._own_shoppers()
        for position, event in enumerate(events):
            if shard is not None and event.user_id not in known:
                owner = shard.owner(event.user_id)
                if owner != shard.index:
                    self._misrouted(report, _index(position, positions), "event", owner)
                    continue
            at = epoch(event.timestamp)
            if at > horizon:
                self._future(report, _index(position, positions), "event", at, now)
                continue
            if pseudonyms is not None:
                named = {"user_name": pseudonyms.user_name(event.user_name)}
                event = event.model_copy(
                    update={"user_id": pseudonyms.user_id(event.user_id)}
                    | (named if event.user_name else {})
                )
            result = self.store.apply_event(event, now, at)
            if isinstance(result, Unapplied):
                report.unapplied(_index(position, positions), "event", result)
                continue
            report.accepted += 1
            happened += result
            shopper = self.store.get(event.user_id)
            if shopper is not None:
                moved[shopper.user_id] = shopper
        # Logged and published once for the body, like its updates (nothing reads in between).
        self.record(happened)
        if moved:
            self._publish_states(moved.values())

    def _publish_states(self, shoppers: Iterable[Shopper]) -> None:
        """Mark shoppers changed as of now and, when anyone listens, publish their state."""
        changed = self.log.last_id
        listening = self.hub.subscribers > 0
        frames: list[Published] = []
        for shopper in shoppers:
            shopper.changed = changed
            if listening:
                view = glimpse(shopper)
                frames.append(("user_metric", changed, shopper.user_id, view, _shopper_data))
        if frames:
            self.hub.publish_many(frames)

    def states_since(self, event_id: int) -> Iterator[Frame]:
        """A user_metric frame of every shopper changed at or after this event id, in order of
        change: the shoppers are found now, their frames made as they are read (with the state
        as it is then; a later change also comes live)."""
        # Found now (not when first read): the store changes while the frames go out.
        return self._state_frames(self.store.changed_since(event_id), self.log.last_id)

    def _state_frames(self, shoppers: list[Shopper], last_id: int) -> Iterator[Frame]:
        store = self.store
        for shopper in shoppers:
            if store.get(shopper.user_id) is shopper:  # not erased or forgotten since
                view = glimpse(shopper)
                changed = min(shopper.changed, last_id)  # ids stay in order if it changed again
                yield Frame("user_metric", changed, None, shopper.user_id, view, _shopper_data)

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

    def summary(self) -> dict[str, Any]:
        """The store's key metrics, and which shard of the shoppers they cover."""
        summary = self.store.summary(self.clock())
        shard = self.shard
        summary["shard"] = None if shard is None else {"index": shard.index, "count": shard.count}
        return summary

    def publish_summary(self) -> dict[str, Any]:
        """Publish the summary frame (once a second while anyone listens); returns it."""
        summary = self.summary()
        if self.hub.subscribers:
            self.hub.publish(Frame("summary", self.log.last_id, orjson.dumps(summary).decode()))
        return summary

    def _own_shoppers(self) -> Mapping[str, Shopper]:
        """Shoppers known to be this replica's own by their id as sent, so the shard check
        hashes only new ones: every shopper it tracks (a restore keeps only its own, see
        exporter.snapshot_codec), unless the store knows them by pseudonym."""
        return self.store.tables().shoppers if self.pseudonyms is None else {}

    def expire(self, limit: int | None = None) -> bool:
        """End idle sessions and forget expired shoppers (at most `limit` of each); log what
        that implies. True while more are due."""
        now = self.clock()
        self.record(self.store.expire(now, limit))
        return limit is not None and self.store.expiry_due(now)
