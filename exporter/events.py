"""Shopping events: the types the store derives or accepts, and their one-line human message."""

from __future__ import annotations

from typing import Any, Final, NamedTuple

SESSION_STARTED: Final = "session_started"
SESSION_ENDED: Final = "session_ended"
PRODUCT_VIEWED: Final = "product_viewed"
SEARCH: Final = "search"
CART_ADD: Final = "cart_add"
CART_REMOVE: Final = "cart_remove"
CHECKOUT_STARTED: Final = "checkout_started"
ORDER_COMPLETED: Final = "order_completed"
DELIVERY_SCHEDULED: Final = "delivery_scheduled"
COUPON_APPLIED: Final = "coupon_applied"
CART_ABANDONED: Final = "cart_abandoned"
ALERT: Final = "alert"

#: Event types with a meaning of their own; anything else is kept in the log but counted as `other`.
KNOWN_TYPES: Final = frozenset(
    {
        SESSION_STARTED,
        SESSION_ENDED,
        PRODUCT_VIEWED,
        SEARCH,
        CART_ADD,
        CART_REMOVE,
        CHECKOUT_STARTED,
        ORDER_COMPLETED,
        DELIVERY_SCHEDULED,
        COUPON_APPLIED,
        CART_ABANDONED,
        ALERT,
    }
)


class ShoppingEvent(NamedTuple):
    """Something a shopper did, explicit or derived from two successive updates.

    A named tuple: about one is made per update, and a tuple is the cheapest immutable record.
    """

    type: str
    user_id: str
    user_name: str
    at: float
    """When it happened, seconds since the epoch (the producer's clock)."""
    props: dict[str, Any]
    """Bounded, privacy-safe details: location, activity, membership, cartValue, itemsInCart, …"""

    @property
    def message(self) -> str:
        """A short sentence for people reading the stream."""
        return describe(self.type, self.props)


def _money(value: Any) -> str:
    return f"${float(value):,.2f}"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe(kind: str, props: dict[str, Any]) -> str:
    """The sentence shown in the stream, e.g. "added 2 items to cart ($127.50)"."""
    items = props.get("items", 1)
    cart = f" ({_money(props['cartValue'])})" if "cartValue" in props else ""
    match kind:
        case "session_started":
            return "started shopping"
        case "session_ended":
            return f"left the store ({props.get('reason', 'ended')})"
        case "product_viewed":
            return f"viewed {_plural(props.get('count', 1), 'product')}"
        case "search":
            query = props.get("query")
            if query:
                return f'searched for "{query}"'
            return f"ran {_plural(props.get('count', 1), 'search')}"
        case "cart_add":
            return f"added {_plural(items, 'item')} to cart{cart}"
        case "cart_remove":
            return f"removed {_plural(items, 'item')} from cart{cart}"
        case "checkout_started":
            return f"started checkout{cart}"
        case "order_completed":
            value = props.get("orderValue", props.get("cartValue"))
            return "placed an order" + (f" ({_money(value)})" if value is not None else "")
        case "delivery_scheduled":
            window = props.get("deliveryWindow")
            return "scheduled delivery" + (f" for {window}" if window else "")
        case "coupon_applied":
            return f"applied {_plural(props.get('count', 1), 'coupon')}"
        case "cart_abandoned":
            return f"abandoned a cart of {_plural(items, 'item')}{cart}"
        case "alert":
            return str(props.get("summary", "alert"))
        case _:
            return kind.replace("_", " ")
