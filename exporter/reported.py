"""Actions a producer may report twice, as explicit events and in cumulative updates: counted once.

Product views, searches and coupons arrive as `product_viewed` / `search` / `coupon_applied`
events, as the per-session totals `productsViewed` / `searchesPerformed` / `couponsApplied` of
updates, or both. The rule:

- an event stamped after the shopper's stored update counts at once, and is *pending*: the next
  update's total includes it, so that update counts only its increase beyond the pending events;
- an event stamped at or before the stored update is one that update's total already holds, as
  long as the total has actions no event has matched yet; past that it counts.

So an action reported as an event, through the next cumulative update, or both, counts once.
Per shopper, the store keeps (matched, pending) for each kind, and only once events arrive.
"""

from __future__ import annotations

from typing import Final

from exporter import events as ev
from exporter.shopper import Shopper

KINDS: Final = {ev.PRODUCT_VIEWED: 0, ev.SEARCH: 1, ev.COUPON_APPLIED: 2}
"""Event type → position in a shopper's (views, searches, coupons) triples."""
FIELDS: Final = ("productsViewed", "searchesPerformed", "couponsApplied")

Triple = tuple[int, int, int]
Tally = tuple[int, int, int, int, int, int]
"""Events matched to the updates' totals (3), then events pending for the next update (3)."""
_NONE: Final[Tally] = (0, 0, 0, 0, 0, 0)


def by_updates(shopper: Shopper) -> Triple:
    """The per-session totals the shopper's last update reported."""
    return (shopper.products_viewed, shopper.searches, shopper.coupons)


def take_event(shopper: Shopper, kind: str, at: float) -> bool:
    """Note one explicit event of a reported kind, stamped `at`; False when the shopper's stored
    update already counted it."""
    position = KINDS[kind]
    tally = shopper.reported or _NONE
    if at <= shopper.timestamp and tally[position] < by_updates(shopper)[position]:
        shopper.reported = _plus_one(tally, position)
        return False
    shopper.reported = _plus_one(tally, 3 + position)
    return True


def beyond_events(tally: Tally, before: Triple, after: Triple) -> tuple[Triple, Tally]:
    """What an update's new totals count once the pending events are taken out, and the tally
    after it (the pending events are now matched to the update's total)."""
    counted: list[int] = []
    matched: list[int] = []
    for i in range(3):
        rise = after[i] - before[i]
        pending = tally[3 + i]
        counted.append(max(0, rise - pending))
        matched.append(tally[i] + min(pending, rise))
    return (counted[0], counted[1], counted[2]), (matched[0], matched[1], matched[2], 0, 0, 0)


def _plus_one(tally: Tally, position: int) -> Tally:
    items = list(tally)
    items[position] += 1
    return (items[0], items[1], items[2], items[3], items[4], items[5])


def tally_of(saved: object) -> Tally | None:
    """A tally read back from a snapshot (None if it does not fit)."""
    if not isinstance(saved, list | tuple) or len(saved) != len(_NONE):
        return None
    a, b, c, d, e, f = (int(n) for n in saved)
    return (a, b, c, d, e, f)
