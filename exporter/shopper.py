"""Shopper: one shopper's state as the store holds it (slots only)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

NO_TIME: Final[Mapping[str, float]] = {}
"""No minutes recorded: shared by every shopper without any, and never written to."""
NEVER: Final = -math.inf
"""No order yet: one float shared by every shopper rather than one each."""


class Shopper:
    """One shopper's state; slots only, and label-like strings shared through the label caps."""

    __slots__ = (
        "activity",
        "cart_open",
        "cart_value",
        "changed",
        "clicks",
        "coupons",
        "dashboards_viewed",
        "delivery_window",
        "events_triggered",
        "feature_time",
        "features_used",
        "fingerprint",
        "is_active",
        "items_in_cart",
        "last_action",
        "last_action_time",
        "last_order_at",
        "location",
        "membership",
        "online",
        "order_ids",
        "page_views",
        "products_viewed",
        "queries_run",
        "received",
        "reported",
        "reports_created",
        "scroll_depth",
        "searches",
        "session_seconds",
        "session_started",
        "stages",
        "timestamp",
        "user_id",
        "user_name",
    )

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.user_name = user_id
        self.location = self.membership = self.delivery_window = self.activity = ""
        self.features_used: tuple[str, ...] = ()
        self.feature_time: Mapping[str, float] = NO_TIME
        """Minutes per activity this session; never changed in place (replaced by each update),
        so live frames can hold it as a snapshot."""
        self.last_action = ""
        self.last_action_time: float | None = None
        self.timestamp = self.received = self.session_started = self.session_seconds = 0.0
        self.page_views = self.clicks = self.products_viewed = self.searches = self.coupons = 0
        self.events_triggered = self.queries_run = self.reports_created = self.dashboards_viewed = 0
        self.scroll_depth = 0.0
        self.cart_value = 0.0
        self.items_in_cart = 0
        self.is_active = self.online = self.cart_open = False
        self.stages = 0
        self.fingerprint = 0
        self.last_order_at = NEVER
        self.order_ids: tuple[str, ...] = ()
        """Ids of the last few counted orders (exporter.orders)."""
        self.reported: tuple[int, int, int, int, int, int] | None = None
        """How this session's explicit product_viewed / search / coupon_applied events stand
        against the updates' totals (exporter.reported); None until the first such event."""
        self.changed = 0
        """Event-log id as of the shopper's last change: a resuming reader gets the state of
        every shopper changed since the id it resumes from."""
