"""The two Loki streams: shopping events and current shopper state, with bounded labels only."""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from exporter.eventlog import LoggedEvent
from exporter.events import KNOWN_TYPES
from exporter.labels import OTHER, UNKNOWN, LabelCap
from exporter.store import Shopper, ShopperStore

EVENTS_JOB: Final = "shopper-events"
STATE_JOB: Final = "shopper-state"
EVENT_LABEL_NAMES: Final = (
    "activity",
    "detected_level",
    "job",
    "membership",
    "service_name",
    "type",
)
STATE_LABEL_NAMES: Final = ("detected_level", "job", "membership", "service_name", "status")
STREAM_LABEL_NAMES: Final = frozenset(EVENT_LABEL_NAMES + STATE_LABEL_NAMES)
"""Every name a stream label may have (a query's scan relies on it: keep it complete)."""
LEVELS: Final = {"alert": "warn", "cart_abandoned": "warn"}
"""Levels of the event types that are not plain `info` (Grafana colours volume by level):
an alert and an abandoned cart want attention."""


def event_level(kind: str) -> str:
    """The `detected_level` of an event type."""
    return LEVELS.get(kind, "info")


EventKey = tuple[str, Any, Any]
"""What an event's stream labels depend on: its type, activity and membership."""


def event_key(logged: LoggedEvent) -> EventKey:
    """The inputs of an event's labels; cheap, so queries cache labels by it."""
    event = logged.event
    props = event.props
    return (event.type, props.get("activity"), props.get("membership"))


class StreamLabeller:
    """Stream labels for events and shoppers: job, type, activity, membership, status.

    Activity and membership come from the store and are capped there already, but an explicit
    event may name an activity of its own, so values pass through caps of the same size here
    too. Never a shopper id or name: labels index streams, and streams must stay few.
    """

    def __init__(self, cap: int) -> None:
        self._activity = LabelCap("activity", cap)
        self._membership = LabelCap("membership", cap)
        self._events: dict[EventKey, dict[str, str]] = {}
        self._states: dict[tuple[bool, str], dict[str, str]] = {}

    def _value(self, cap: LabelCap, raw: Any) -> str:
        if not isinstance(raw, str) or not raw:
            return UNKNOWN
        return cap(raw)

    def for_key(self, key: EventKey) -> dict[str, str]:
        """The labels of events with this key (shared: never mutate the result)."""
        labels = self._events.get(key)
        if labels is None:
            kind, activity, membership = key
            labels = {
                "job": EVENTS_JOB,
                "service_name": EVENTS_JOB,
                "detected_level": event_level(kind),
                "type": kind if kind in KNOWN_TYPES else OTHER,
                "activity": self._value(self._activity, activity),
                "membership": self._value(self._membership, membership),
            }
            # The inputs are bounded only through the caps; keep the cache bounded too.
            if len(self._events) < 100_000:
                self._events[key] = labels
        return labels

    def for_event(self, logged: LoggedEvent) -> dict[str, str]:
        """The stream labels of one logged event."""
        return self.for_key(event_key(logged))

    def for_state(self, online: bool, membership: str) -> dict[str, str]:
        """The stream labels of a shopper's state line."""
        key = (online, membership)
        labels = self._states.get(key)
        if labels is None:
            labels = {
                "job": STATE_JOB,
                "service_name": STATE_JOB,
                "detected_level": "info",
                "status": "online" if online else "offline",
                "membership": self._value(self._membership, membership),
            }
            if len(self._states) < 10_000:
                self._states[key] = labels
        return labels

    def for_shopper(self, shopper: Shopper) -> dict[str, str]:
        return self.for_state(shopper.online, shopper.membership)


def state_line(store: ShopperStore, shopper: Shopper) -> str:
    """A shopper's state line: their public view as JSON (never an email)."""
    return orjson.dumps(store.view(shopper)).decode()


LABELLER = web.AppKey("loki_labeller", StreamLabeller)
