"""Recording rules, named level:metric:operation; every one a sum over the exporter replicas."""

from __future__ import annotations

from mixin_config import MixinConfig
from rule_yaml import Group, Rule, expr

# The moments a traffic reference is taken at, as the offset of a 30m window centred on them.
REFERENCES = {"1d": "23h45m", "2d": "1d23h45m", "1w": "6d23h45m"}


def _kpis(c: MixinConfig) -> Group:
    orders_1h = f"sum by (job) (increase({c.sel('shopper_orders_total')}[1h]))"
    abandoned_1h = f"sum by (job) (increase({c.sel('shopper_cart_abandonments_total')}[1h]))"
    return Group(
        "shopper-kpis",
        [
            Rule(
                "job:shopper_active_shoppers:sum",
                f"sum by (job) ({c.sel('shopper_active_shoppers')})",
            ),
            Rule(
                "job:shopper_active_session_seconds:avg",
                expr(f"""
                    sum by (job) ({c.sel("shopper_active_session_seconds")})
                      / (sum by (job) ({c.sel("shopper_active_shoppers")}) > 0)
                """),
                "Mean length of the sessions in progress: the exporter exports the sum, not an "
                "average, so that replicas add up.",
            ),
            Rule("job:shopper_orders:increase1h", orders_1h),
            Rule(
                "job:shopper_orders:increase30m",
                f"sum by (job) (increase({c.sel('shopper_orders_total')}[30m]))",
                "Orders of the last half hour: ShopperOrdersStalled reads it.",
            ),
            Rule(
                "job:shopper_order_value_dollars:increase1h",
                f"sum by (job) (increase({c.sel('shopper_order_value_dollars_total')}[1h]))",
            ),
            Rule(
                "job:shopper_order_value_dollars:mean1h",
                expr(f"""
                    sum by (job) (increase({c.sel("shopper_order_value_dollars_total")}[1h]))
                      / ({orders_1h} > 0)
                """),
                "Average order value over the last hour.",
            ),
            Rule("job:shopper_cart_abandonments:increase1h", abandoned_1h),
            Rule(
                "job:shopper_abandoned_cart_value_dollars:increase1h",
                "sum by (job) "
                f"(increase({c.sel('shopper_abandoned_cart_value_dollars_total')}[1h]))",
            ),
            Rule(
                "job:shopper_cart_abandonment:ratio1h",
                expr(f"""
                    {abandoned_1h}
                      / (({abandoned_1h} + {orders_1h}) > 0)
                """),
                "Share of the carts closed in the last hour that were abandoned: abandonments / "
                "(abandonments + orders).",
            ),
        ],
    )


def _funnel(c: MixinConfig) -> Group:
    browsing = c.sel("shopper_funnel_sessions_total", 'stage="browsing"')
    return Group(
        "shopper-funnel",
        [
            Rule(
                "job_stage:shopper_funnel_sessions:increase1h",
                f"sum by (job, stage) (increase({c.sel('shopper_funnel_sessions_total')}[1h]))",
            ),
            Rule(
                "job_stage:shopper_funnel_conversion:ratio1h",
                expr(f"""
                    sum by (job, stage) (increase({c.sel("shopper_funnel_sessions_total")}[1h]))
                      / ignoring (stage) group_left ()
                    (sum by (job) (increase({browsing}[1h])) > 0)
                """),
                "Sessions that reached each stage per session that started browsing "
                "(browsing = 1).",
            ),
        ],
    )


def _activity(c: MixinConfig) -> Group:
    by_activity = c.sel("shopper_active_shoppers_by_activity")
    return Group(
        "shopper-activity",
        [
            Rule(
                "job_activity:shopper_active_shoppers:ratio",
                expr(f"""
                    sum by (job, activity) ({by_activity})
                      / ignoring (activity) group_left ()
                    (sum by (job) ({by_activity}) > 0)
                """),
                "Share of online shoppers in each activity (Browsing, Cart, Checkout, ...).",
            ),
            Rule(
                "job_activity:shopper_activity_seconds:rate5m",
                f"sum by (job, activity) (rate({c.sel('shopper_activity_seconds_total')}[5m]))",
                "Seconds spent per second in each activity: roughly how many shoppers are engaged "
                "in it.",
            ),
            Rule(
                "job_event:shopper_events:rate5m",
                f"sum by (job, event) (rate({c.sel('shopper_events_total')}[5m]))",
            ),
        ],
    )


def _traffic(c: MixinConfig) -> Group:
    events = c.sel("shopper_events_total", 'event!="alert"')
    references = "\nor ".join(
        f'label_replace(sum by (job) (job:shopper_events:rate30m offset {offset}), "ago", '
        f'"{ago}", "", "")'
        for ago, offset in REFERENCES.items()
    )
    enough = f"count by (job) (job_ago:shopper_events:rate30m) >= {c.min_references}"
    return Group(
        "shopper-traffic",
        [
            Rule(
                "job:shopper_events:rate5m",
                f"sum by (job) (rate({events}[5m]))",
                "Shopper events per second over 5m: the traffic the spike and drop alerts judge. "
                "Alerts posted back by Alertmanager are events too, but not shopper traffic.",
            ),
            Rule(
                "job:shopper_events:rate30m",
                f"sum by (job) (rate({events}[30m]))",
                "The same over 30m: the smoother rate that later serves as a reference.",
            ),
            Rule(
                "job_ago:shopper_events:rate30m",
                references,
                "The usual traffic for this moment: the 30m rate centred on the same time of day "
                "1 day, 2 days and 1 week ago (label ago), each only once Prometheus has that much "
                "history.",
            ),
            Rule(
                "job:shopper_events:rate30m_usual_max",
                f"max by (job) (job_ago:shopper_events:rate30m)\nand on (job) ({enough})",
                f"The highest reference, once at least {c.min_references} exist: a spike must "
                "beat it, so one quiet reference day (an outage) cannot make today look high.",
            ),
            Rule(
                "job:shopper_events:rate30m_usual_min",
                f"min by (job) (job_ago:shopper_events:rate30m)\nand on (job) ({enough})",
                "The lowest reference: a drop must fall below it, so one busy reference day (a "
                "promotion) cannot make today look low.",
            ),
        ],
    )


def _ingest(c: MixinConfig) -> Group:
    received = f"sum by (job) (rate({c.sel('shopper_updates_received_total')}[5m]))"
    rejected = f"sum by (job) (rate({c.sel('shopper_updates_rejected_total')}[5m]))"
    return Group(
        "shopper-ingest",
        [
            Rule(
                "job_transport:shopper_updates_received:rate5m",
                f"sum by (job, transport) (rate({c.sel('shopper_updates_received_total')}[5m]))",
            ),
            Rule(
                "job_transport:shopper_updates_rejected:rate5m",
                f"sum by (job, transport) (rate({c.sel('shopper_updates_rejected_total')}[5m]))",
            ),
            Rule("job:shopper_updates_received:rate5m", received),
            Rule(
                "job:shopper_updates_rejected:ratio_rate5m",
                f"{rejected}\n  / ({received} > 0)",
            ),
            Rule(
                "job:shopper_exporter_stream_dropped_frames:rate5m",
                f"sum by (job) (rate({c.sel('shopper_exporter_stream_dropped_frames_total')}[5m]))",
            ),
        ],
    )


def recording_groups(c: MixinConfig) -> list[Group]:
    """Every recording group, in file order."""
    return [_kpis(c), _funnel(c), _activity(c), _traffic(c), _ingest(c)]
