"""The public JSON view of a shopper: a cheap `glimpse` now, rendered by `view_of` when read."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from exporter.shopper import Shopper

SECONDS_CACHED: Final = 4096
"""Formatted seconds kept at most: more than an hour of distinct seconds (session starts reach
an hour back), about 550 KiB when full; then the cache starts over."""
_SECOND_TEXT: dict[int, str] = {}
"""ISO text of whole seconds already formatted: a shopper's view holds four times, mostly within
the same few seconds, and isoformat costs several times the lookup."""


def iso_time(moment: float | None) -> str | None:
    """UTC ISO 8601 with milliseconds, as datetime.isoformat(timespec="milliseconds") gives."""
    if moment is None or not math.isfinite(moment):
        return None
    # Split and round the way datetime.fromtimestamp does (fraction to microseconds, half even).
    fraction, whole_seconds = math.modf(moment)
    micro = round(fraction * 1e6)
    whole = int(whole_seconds)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    prefix = _SECOND_TEXT.get(whole)
    if prefix is None:
        try:
            prefix = datetime.fromtimestamp(whole, UTC).isoformat()[:19]
        except (OverflowError, OSError, ValueError):
            return None
        if len(_SECOND_TEXT) >= SECONDS_CACHED:
            _SECOND_TEXT.clear()
        _SECOND_TEXT[whole] = prefix
    return f"{prefix}.{micro // 1000:03d}+00:00"


def glimpse(shopper: Shopper) -> tuple[Any, ...]:
    """What a shopper's view shows, as a tuple. As good as a copy: every field holds a str,
    number, bool, None, tuple or a featureTime mapping that updates replace and never change in
    place, so a live frame can keep it and render the view at publish time later."""
    # Plain attribute reads, not operator.attrgetter: the interpreter specialises them for
    # slots, which takes half the time of attrgetter's generic lookups (taken per update).
    return (
        shopper.user_id,
        shopper.user_name,
        shopper.location,
        shopper.membership,
        shopper.delivery_window,
        shopper.activity,
        shopper.features_used,
        shopper.feature_time,
        shopper.online,
        shopper.is_active,
        shopper.session_seconds,
        shopper.session_started,
        shopper.cart_value,
        shopper.items_in_cart,
        shopper.page_views,
        shopper.clicks,
        shopper.scroll_depth,
        shopper.products_viewed,
        shopper.searches,
        shopper.coupons,
        shopper.events_triggered,
        shopper.last_action,
        shopper.last_action_time,
        shopper.timestamp,
        shopper.received,
    )


def view_of(glimpsed: tuple[Any, ...]) -> dict[str, Any]:
    """The public JSON form of a shopper from its `glimpse` (never an email: none is kept)."""
    (
        user_id,
        user_name,
        location,
        membership,
        delivery_window,
        activity,
        features_used,
        feature_time,
        online,
        is_active,
        session_seconds,
        session_started,
        cart_value,
        items_in_cart,
        page_views,
        clicks,
        scroll_depth,
        products_viewed,
        searches,
        coupons,
        events_triggered,
        last_action,
        last_action_time,
        timestamp,
        received,
    ) = glimpsed
    return {
        "userId": user_id,
        "userName": user_name,
        "location": location,
        "membershipType": membership,
        "deliveryWindow": delivery_window,
        "activeFeature": activity,
        "featuresUsed": list(features_used),
        "featureTime": dict(feature_time),
        "online": online,
        "isActive": is_active,
        "sessionSeconds": round(session_seconds, 1),
        "sessionStartedAt": iso_time(session_started or None),
        "cartValue": round(cart_value, 2),
        "itemsInCart": items_in_cart,
        "pageViews": page_views,
        "clickCount": clicks,
        "scrollDepth": scroll_depth,
        "productsViewed": products_viewed,
        "searchesPerformed": searches,
        "couponsApplied": coupons,
        "eventsTriggered": events_triggered,
        "lastAction": last_action,
        "lastActionTime": iso_time(last_action_time),
        "timestamp": iso_time(timestamp),
        "lastSeen": iso_time(received),
    }
