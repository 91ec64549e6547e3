"""Order identity: each order counts once, however often and by whichever way it is reported.

An order comes as an explicit `order_completed` event, or as an update whose `lastAction` holds an
order phrase, or both. Each shopper remembers their last counted order's time and the ids of
their last few orders; a report matching one of them is the same order again.
"""

from __future__ import annotations

import re
from typing import Final

from exporter.model import ShopperUpdate, epoch
from exporter.shopper import Shopper

KEPT_IDS: Final = 8
"""Order ids remembered per shopper: enough for any retry, bounded per shopper."""
PHRASE_ORDER: Final = ""
"""Stands for an order counted from a phrase, which carries no id (yet)."""


class OrderRules:
    """Tells new orders from ones already counted, and remembers those it counts."""

    def __init__(self, phrases: tuple[str, ...]) -> None:
        # One regex instead of a loop over phrases: it runs on every update's lastAction.
        self._phrase = re.compile("|".join(map(re.escape, phrases)) or "(?!)")

    def from_action(
        self,
        shopper: Shopper,
        update: ShopperUpdate,
        action: str,
        action_changed: bool,
        previous_at: float,
    ) -> bool:
        """Whether an update (with lowercased `action`) reports an order not counted yet.

        A phrase repeated in later updates is the same order: it counts again only when its
        `lastActionTime` is newer than the last counted order (or, without one, when the action
        changed); and not at all when an explicit order arrived since the previous update.
        """
        if not action or self._phrase.search(action) is None:
            return False
        if shopper.last_order_at > previous_at:
            return False  # an explicit order_completed arrived since the last update: same order
        if update.last_action_time is not None:
            return epoch(update.last_action_time) > shopper.last_order_at
        return action_changed

    @staticmethod
    def is_new(shopper: Shopper | None, at: float, order_id: str | None) -> bool:
        """Whether an explicit order (stamped `at`, with its id if any) is not counted yet.

        With an id: new unless the id was counted, or the last counted order came from a phrase
        (no id) and this one is not newer: then it is that order, now named. Without an id: new
        when newer than the last counted order.
        """
        if shopper is None:
            return True
        if order_id is None:
            return at > shopper.last_order_at
        ids = shopper.order_ids
        if order_id in ids:
            return False
        if ids and ids[-1] == PHRASE_ORDER and at <= shopper.last_order_at:
            shopper.order_ids = (*ids[:-1], order_id)
            return False
        return True

    @staticmethod
    def remember(shopper: Shopper, at: float, order_id: str | None) -> None:
        """Note a counted order: its time and its id (a phrase order's stands in until named)."""
        shopper.last_order_at = max(at, shopper.last_order_at)
        shopper.order_ids = (*shopper.order_ids[-(KEPT_IDS - 1) :], order_id or PHRASE_ORDER)
