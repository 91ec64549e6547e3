"""Write the Grafana dashboards in grafana/dashboards/ (`--check` only compares them).

Usage: python grafana/build_dashboards.py [--check]

The dashboards are plain Grafana JSON. This module says what each dashboard shows; the panel
builders (panels.py), the variables and annotations around them (dashboard_frame.py) and the
Shoppers table (shopper_table.py) keep the options every panel type requires in one place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dashboard_frame import dashboard
from panels import (
    Json,
    barchart,
    bargauge,
    logs,
    loki,
    override,
    piechart,
    prom,
    row,
    sel,
    stat,
    thresholds,
    timeseries,
)
from shopper_table import shoppers_table

OUT_DIR = Path(__file__).resolve().parent / "dashboards"

# Expressions used by more than one panel's query (never a whole query twice).
ACTIVE_SHOPPERS = f"sum({sel('shopper_active_shoppers')})"
ACTIVE_CARTS = f"sum({sel('shopper_active_carts')})"
ORDERS_1H = f"sum(increase({sel('shopper_orders_total')}[1h]))"
ABANDONMENTS_1H = f"sum(increase({sel('shopper_cart_abandonments_total')}[1h]))"
ORDER_VALUE_1H = f"sum(increase({sel('shopper_order_value_dollars_total')}[1h]))"
ABANDONED_VALUE_1H = f"sum(increase({sel('shopper_abandoned_cart_value_dollars_total')}[1h]))"
# A share that turns orange and red where the cart-abandonment alert begins to look.
SHARE_STEPS = [(0.75, "orange"), (0.85, "red")]
SHARE = thresholds(*SHARE_STEPS)
# Rare counters (an order, a reconnect) are rated over at least a minute, so a single one does
# not read as a burst: fixed [5m] windows, or a panel minimum interval of 1m.
RARE = "1m"


def live_shopper_metrics() -> Json:
    """The product dashboard: KPIs and the brief's four views, plus funnel and revenue."""
    kpis = [
        row("Key metrics"),
        stat(
            "Active Shoppers",
            prom(ACTIVE_SHOPPERS, "online"),
            description="Shoppers online: active and seen within the active window.",
        ),
        stat(
            "Active Carts",
            prom(ACTIVE_CARTS, "carts"),
            description="Online shoppers with at least one item in their cart.",
        ),
        stat(
            "Cart Value",
            prom(f"sum({sel('shopper_cart_value_dollars')})", "value"),
            unit="currencyUSD",
            description="Total value of the active carts.",
        ),
        stat(
            "Orders/Hour",
            prom(ORDERS_1H, "orders"),
            decimals=0,
            description="Orders completed in the last hour.",
        ),
        stat(
            "Avg Session",
            prom(
                f"sum({sel('shopper_active_session_seconds')}) / clamp_min({ACTIVE_SHOPPERS}, 1)",
                "session",
            ),
            unit="s",
            description="Mean length of the sessions in progress.",
        ),
        stat(
            "Cart Abandonment",
            prom(f"{ABANDONMENTS_1H} / (({ABANDONMENTS_1H} + {ORDERS_1H}) > 0)", "abandoned"),
            unit="percentunit",
            steps=SHARE_STEPS,
            no_value="no carts closed",
            description="Abandoned carts / (abandoned carts + orders) over the last hour; "
            "ShopperCartAbandonmentHigh fires above 85%.",
        ),
        stat(
            "Product Views",
            prom(
                f"sum(increase({sel('shopper_product_views_total')}[$__range]))",
                "views",
                instant=True,
            ),
            graph=False,
            decimals=0,
            description="Products viewed in the selected time range.",
        ),
        stat(
            "Searches",
            prom(
                f"sum(increase({sel('shopper_searches_total')}[$__range]))",
                "searches",
                instant=True,
            ),
            graph=False,
            decimals=0,
            description="Product searches in the selected time range.",
        ),
    ]
    realtime = [
        row("Real-time Activity"),
        timeseries(
            "Active shoppers",
            prom(
                f"sum by (membership) ({sel('shopper_active_shoppers_by_membership')})",
                "{{membership}}",
            ),
            fill=35,
            stack=True,
            description="Shoppers online over time, stacked by membership: the top edge is "
            "every shopper online.",
        ),
        timeseries(
            "Events per second",
            prom(
                f"sum by (event) (rate({sel('shopper_events_total')}[$__rate_interval]))",
                "{{event}}",
            ),
            unit="ops",
            stack=True,
            description="Shopper events by type: views, searches, cart changes, orders... The "
            "traffic spike and drop alerts judge their sum against the same time of day "
            "yesterday, two days and a week ago.",
        ),
        timeseries(
            "Session duration",
            prom(
                f"sum(rate({sel('shopper_session_duration_seconds_sum')}[5m]))"
                f" / sum(rate({sel('shopper_session_duration_seconds_count')}[5m]))",
                "mean",
            ),
            prom(
                "histogram_quantile(0.9, sum by (le) "
                f"(rate({sel('shopper_session_duration_seconds_bucket')}[5m])))",
                "90th percentile",
            ),
            unit="s",
            fill=35,
            description="Length of the sessions that ended in the last 5 minutes: mean and "
            "90th percentile (the sessions in progress are the Avg Session KPI).",
        ),
        timeseries(
            "Cart actions",
            prom(
                f"sum(rate({sel('shopper_cart_items_added_total')}[$__rate_interval])) * 60",
                "items added",
            ),
            prom(
                f"sum(rate({sel('shopper_cart_items_removed_total')}[$__rate_interval])) * 60",
                "items removed",
            ),
            unit="short",
            fill=25,
            downward="B",
            description="Items added to carts per minute (up) and removed from them (drawn down).",
        ),
    ]
    details = [
        row("Shopper Details"),
        shoppers_table(),
        piechart(
            "Online by delivery window",
            prom(
                f"sum by (delivery_window) ({sel('shopper_active_shoppers_by_delivery_window')})",
                "{{delivery_window}}",
                instant=True,
            ),
            w=12,
            description="Online shoppers by the delivery window they chose.",
        ),
        bargauge(
            "Top 10 locations",
            prom(
                f"topk(10, sum by (location) ({sel('shopper_active_shoppers_by_location')}))",
                "{{location}}",
                instant=True,
            ),
            w=12,
            decimals=0,
            description="Where the online shoppers are, the ten largest locations.",
        ),
    ]
    behaviour = [
        row("Shopping Behaviour"),
        piechart(
            "Activity distribution",
            prom(
                f"sum by (activity) ({sel('shopper_active_shoppers_by_activity')})",
                "{{activity}}",
                instant=True,
            ),
            h=9,
            description="Online shoppers by current activity, largest first.",
        ),
        barchart(
            "Activity engagement",
            prom(
                f"sum by (activity) (increase({sel('shopper_activity_seconds_total')}[$__range]))"
                f" / on () group_left () (sum(increase({sel('shopper_sessions_started_total')}"
                "[$__range])) > 0)",
                "{{activity}}",
                instant=True,
                table=True,
            ),
            x_field="activity",
            unit="s",
            w=16,
            h=9,
            description="Time a session spends in each activity, on average over the selected "
            "time range: seconds per activity / sessions started.",
        ),
        # Percent change = last value against the first of the panel's one-hour range,
        # i.e. now against an hour ago.
        *(
            stat(
                title,
                prom(expr, legend),
                unit=unit,
                w=6,
                h=5,
                percent_change=True,
                timeFrom="1h",
                description=f"{text} The arrow compares with an hour ago.",
            )
            for title, expr, legend, unit, text in (
                (
                    "Average cart value",
                    f"sum({sel('shopper_cart_value_dollars')}) / clamp_min({ACTIVE_CARTS}, 1)",
                    "cart",
                    "currencyUSD",
                    "Mean value of the active carts.",
                ),
                (
                    "Order conversion",
                    f"sum(increase({sel('shopper_funnel_sessions_total', stage='order')}[1h]))"
                    f" / (sum(increase({sel('shopper_funnel_sessions_total', stage='browsing')}"
                    "[1h])) > 0)",
                    "conversion",
                    "percentunit",
                    "Sessions that ordered / sessions, last hour.",
                ),
                (
                    "Page views per minute",
                    f"sum(rate({sel('shopper_page_views_total')}[5m])) * 60",
                    "views",
                    "none",
                    "Page views per minute over the last 5 minutes.",
                ),
                (
                    "Coupons, last hour",
                    f"sum(increase({sel('shopper_coupons_applied_total')}[1h]))",
                    "coupons",
                    "none",
                    "Coupons applied in the last hour.",
                ),
            )
        ),
    ]
    conversion = [
        row("Conversion & Revenue"),
        bargauge(
            "Conversion funnel",
            prom(
                f"sum by (stage) (increase({sel('shopper_funnel_sessions_total')}[$__range]))",
                "{{stage}}",
                instant=True,
            ),
            decimals=0,
            description="Sessions reaching each stage (browsing → cart → checkout → order) "
            "in the selected time range.",
        ),
        stat(
            "Abandoned revenue, last hour",
            prom(ABANDONED_VALUE_1H, "abandoned"),
            prom(f"{ABANDONED_VALUE_1H} / (({ABANDONED_VALUE_1H} + {ORDER_VALUE_1H}) > 0)", "of"),
            unit="currencyUSD",
            w=4,
            h=8,
            base="text",
            text_mode="value_and_name",
            overrides=[override("byFrameRefID", "B", unit="percentunit", thresholds=SHARE)],
            description="Value of the carts abandoned in the last hour, and its share of all "
            "cart value closed (abandoned + ordered), coloured by that share.",
        ),
        stat(
            "Order revenue, last hour",
            prom(ORDER_VALUE_1H, "ordered"),
            unit="currencyUSD",
            w=4,
            h=8,
            description="Value of the orders of the last hour.",
        ),
        timeseries(
            "Orders and abandoned carts per hour",
            prom(f"sum(rate({sel('shopper_orders_total')}[5m])) * 3600", "orders"),
            prom(
                f"sum(rate({sel('shopper_cart_abandonments_total')}[5m])) * 3600",
                "abandoned carts",
            ),
            w=8,
            description="Orders and abandoned carts as hourly rates over the last 5 minutes "
            "(a single order does not jump the line).",
        ),
    ]
    events = [
        row("Event Stream"),
        logs(
            "Live shopping events",
            # `keep` leaves the stream labels as badges instead of every parsed JSON field.
            loki(
                '{job="shopper-events"} | json | line_format '
                '"{{.type}} · {{.userName}} ({{.location}}): {{.message}}"'
                " | keep type, activity, membership",
                max_lines=50,
            ),
            h=12,
            description="The latest 50 events: type, shopper and what happened.",
        ),
        timeseries(
            "Events by type (event log)",
            loki('sum by (type) (count_over_time({job="shopper-events"}[$__auto]))', "{{type}}"),
            stack=True,
            no_value="No events yet",
            description="Event-log lines per interval, by event type, from the Loki API.",
        ),
        logs(
            "Orders and abandoned carts",
            loki(
                '{job="shopper-events", type=~"order_completed|cart_abandoned"} | json'
                ' | line_format "{{.userName}} ({{.location}}): {{.message}}"'
                " | keep type, membership",
                max_lines=50,
            ),
            w=12,
            h=8,
            description="The latest orders and abandoned carts, with shopper and value.",
        ),
    ]
    return dashboard(
        "live-shopper-metrics",
        "Live Shopper Metrics",
        "Live shopper activity of the grocery platform: KPIs, real-time activity, shopper "
        "details, shopping behaviour and the event stream.",
        kpis + realtime + details + behaviour + conversion + events,
    )


def shopper_exporter() -> Json:
    """The operator dashboard: ingest, live streams, pull sources and the exporter itself."""
    rate = "[$__rate_interval]"
    ingest = [
        row("Ingest"),
        stat(
            "Updates/s",
            prom(f"sum(rate({sel('shopper_updates_received_total')}[5m]))", "updates"),
            unit="ops",
            w=6,
            description="Records received per second, valid or not, over 5 minutes.",
        ),
        stat(
            "Rejected share",
            prom(
                f"sum(rate({sel('shopper_updates_rejected_total')}[5m]))"
                f" / (sum(rate({sel('shopper_updates_received_total')}[5m])) > 0)",
                "rejected",
            ),
            unit="percentunit",
            w=6,
            steps=[(0.01, "orange"), (0.05, "red")],
            no_value="0%",
            description="Rejected records / received records over 5 minutes; "
            "ShopperIngestRejectsHigh fires above 5%.",
        ),
        stat(
            "Last update age",
            prom(
                "time() - max by (instance) "
                f"({sel('shopper_exporter_last_update_timestamp_seconds')})",
                "{{instance}}",
            ),
            unit="s",
            w=6,
            steps=[(60, "orange"), (300, "red")],
            text_mode="value_and_name",
            description="Per replica, time since its newest accepted update (since its start "
            "if none came); ShopperIngestStalled fires past 300 s.",
        ),
        stat(
            "Tracked shoppers",
            prom(f"sum({sel('shopper_tracked_shoppers')})", "tracked"),
            w=6,
            description="Shoppers held in memory, online or not, until retention.",
        ),
        timeseries(
            "Updates received by transport",
            prom(
                f"sum by (transport) (rate({sel('shopper_updates_received_total')}{rate}))",
                "{{transport}}",
            ),
            unit="ops",
            stack=True,
            description="Records received per second by the way they came in.",
        ),
        timeseries(
            "Rejected by reason",
            prom(
                f"sum by (transport, reason) (rate({sel('shopper_updates_rejected_total')}{rate}))",
                "{{transport}} {{reason}}",
            ),
            unit="ops",
            w=6,
            interval=RARE,
            description="Records refused per second, by transport and reason.",
        ),
        timeseries(
            "Ignored by reason",
            prom(
                f"sum by (reason) (rate({sel('shopper_updates_ignored_total')}{rate}))",
                "{{reason}}",
            ),
            unit="ops",
            w=6,
            interval=RARE,
            description="Valid updates that changed nothing: stale or exact duplicates.",
        ),
    ]
    streams = [
        row("Live streams"),
        timeseries(
            "Stream subscribers",
            prom(f"sum by (stream) ({sel('shopper_exporter_stream_subscribers')})", "{{stream}}"),
            no_value="No live subscribers",
            description="Connected SSE, WebSocket and Loki tail clients.",
        ),
        timeseries(
            "Dropped frames",
            prom(
                f"sum(rate({sel('shopper_exporter_stream_dropped_frames_total')}{rate}))", "dropped"
            ),
            unit="ops",
            interval=RARE,
            description="Frames dropped per second for subscribers that read too slowly; "
            "ShopperStreamDropping fires above 1/s.",
        ),
    ]
    no_sources = "No pull sources configured"
    sources = [
        row("Pull sources"),
        stat(
            "Source up",
            prom(f"min by (source) ({sel('shopper_exporter_source_up')})", "{{source}}"),
            w=8,
            h=8,
            graph=False,
            text_mode="value_and_name",
            steps=[(1, "green")],
            base="red",
            no_value=no_sources,
            description="1 when every replica's connection to the source is healthy.",
        ),
        timeseries(
            "Source reconnects",
            prom(
                "sum by (source) "
                f"(increase({sel('shopper_exporter_source_reconnects_total')}{rate}))",
                "{{source}}",
            ),
            w=8,
            h=8,
            interval=RARE,
            no_value=no_sources,
            description="Reconnections of each pull source per interval.",
        ),
        bargauge(
            "Since last success",
            prom(
                "time() - max by (source) "
                f"({sel('shopper_exporter_source_last_success_timestamp_seconds')})",
                "{{source}}",
                instant=True,
            ),
            unit="s",
            no_value=no_sources,
            description="Time since each source last delivered data.",
        ),
    ]
    exporter = [
        row("Exporter"),
        stat(
            "Targets up",
            prom(f"sum({sel('up')})", "up"),
            prom(f"sum({sel('up')} == bool 0)", "down"),
            w=4,
            graph=False,
            text_mode="value_and_name",
            base="blue",
            overrides=[override("byFrameRefID", "B", thresholds=thresholds((1, "red")))],
            description="Exporter replicas Prometheus scrapes (up) and cannot scrape (down, "
            "red from one); ShopperExporterDown fires for a replica down 2 minutes.",
        ),
        stat(
            "Version",
            prom(f"sum by (version) ({sel('shopper_exporter_build_info')})", "{{version}}"),
            w=4,
            graph=False,
            text_mode="name",
            description="Exporter versions running, one entry per version.",
        ),
        timeseries(
            "Scrape duration",
            prom(
                f"sum by (instance) ({sel('shopper_exporter_scrape_duration_seconds')})",
                "{{instance}}",
            ),
            unit="s",
            w=8,
            description="Time the last /metrics collection took, per replica.",
        ),
        timeseries(
            "Event log entries",
            prom(
                f"sum by (instance) ({sel('shopper_exporter_event_log_entries')})", "{{instance}}"
            ),
            w=8,
            description="Events held in the ring buffer behind the Loki API, per replica.",
        ),
        timeseries(
            "Label overflow",
            prom(
                f"sum by (label) (increase({sel('shopper_exporter_label_overflow_total')}{rate}))",
                "{{label}}",
            ),
            w=8,
            interval=RARE,
            description="Label values folded into `other` after the per-label cap.",
        ),
        timeseries(
            "Event log lines (Loki API)",
            loki('sum(count_over_time({job="shopper-events"}[$__auto]))', "events"),
            w=8,
            no_value="No events yet",
            description="What Grafana's Loki datasource reads from the exporter.",
        ),
        timeseries(
            "Forwarding to Loki",
            prom(
                f"sum(rate({sel('shopper_exporter_loki_forwarded_events_total')}{rate}))",
                "forwarded",
            ),
            prom(
                f"sum(rate({sel('shopper_exporter_loki_forward_dropped_events_total')}{rate}))",
                "dropped",
            ),
            unit="ops",
            w=8,
            no_value="Not forwarding (no --loki-push-url)",
            description="Events shipped to an external Loki (--loki-push-url), and drops.",
        ),
    ]
    return dashboard(
        "shopper-exporter",
        "Shopper Exporter",
        "Health of the Live Shopper Metrics exporter: ingest, live streams, pull sources.",
        ingest + streams + sources + exporter,
    )


DASHBOARDS = {
    "live-shopper-metrics.json": live_shopper_metrics,
    "shopper-exporter.json": shopper_exporter,
}


def render(build: Any) -> str:
    """The dashboard as the committed file holds it."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = OUT_DIR / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python grafana/build_dashboards.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
