"""Alerting rules: what they watch, when they fire, and where an on-call goes next."""

from __future__ import annotations

import json
from pathlib import Path

from mixin_config import MixinConfig
from rule_yaml import Group, Rule, expr

DASHBOARDS = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
LIVE = "live-shopper-metrics"
EXPORTER = "shopper-exporter"

# The dashboard panel each alert links to (and its runbook section names): (dashboard uid, title).
PANELS = {
    "ShopperTrafficSpike": (LIVE, "Events per second"),
    "ShopperTrafficDrop": (LIVE, "Events per second"),
    "ShopperCartAbandonmentHigh": (LIVE, "Cart Abandonment"),
    "ShopperOrdersStalled": (LIVE, "Orders and abandoned carts per hour"),
    "ShopperIngestStalled": (EXPORTER, "Last update age"),
    "ShopperIngestRejectsHigh": (EXPORTER, "Rejected by reason"),
    "ShopperExporterDown": (EXPORTER, "Targets up"),
    "ShopperStreamDropping": (EXPORTER, "Dropped frames"),
    "Watchdog": (EXPORTER, ""),
}


def panel_id(uid: str, title: str) -> int:
    """The id of the panel titled `title` in the committed dashboard `uid`."""
    dashboard = json.loads((DASHBOARDS / f"{uid}.json").read_text())
    for item in dashboard["panels"]:
        for candidate in (item, *item.get("panels", [])):
            if candidate["title"] == title:
                return int(candidate["id"])
    raise LookupError(f"no panel {title!r} in dashboard {uid}")


def _links(c: MixinConfig, name: str, per_instance: bool) -> dict[str, str]:
    uid, title = PANELS[name]
    query = []
    if title:
        query.append(f"viewPanel={panel_id(uid, title)}")
    if name != "Watchdog":
        query.append("var-job={{ $labels.job }}")
    if per_instance:
        query.append("var-instance={{ $labels.instance }}")
    return {
        "runbook_url": f"{c.runbook_url}#{name.lower()}",
        "dashboard_url": f"{c.grafana_url}/d/{uid}" + (f"?{'&'.join(query)}" if query else ""),
    }


def _alert(
    c: MixinConfig,
    name: str,
    text: str,
    why: str,
    *,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    keep_firing_for: str = "",
    per_instance: bool = False,
) -> Rule:
    return Rule(
        name,
        expr(text),
        why,
        alert=True,
        for_=for_,
        keep_firing_for=keep_firing_for,
        labels={"severity": severity},
        annotations={
            "summary": summary,
            "description": description,
            **_links(c, name, per_instance),
        },
    )


def _traffic(c: MixinConfig) -> Group:
    now, high, low = (
        "job:shopper_events:rate5m",
        "job:shopper_events:rate30m_usual_max",
        "job:shopper_events:rate30m_usual_min",
    )
    usual = "at this time of day 1 day, 2 days and 1 week ago"
    return Group(
        "shopper-traffic",
        [
            _alert(
                c,
                "ShopperTrafficSpike",
                f"""
                {now} / ({high} > 0) > {c.spike_factor:g}
                and on (job) {now} > {c.traffic_floor:g}
                """,
                f"The 5m event rate over {c.spike_factor:g}x the highest usual rate for this "
                f"time of day, and over {c.traffic_floor:g} event/s. The references are a day "
                "old or more, so a spike never raises its own baseline and keeps firing while it "
                f"lasts; for: {c.spike_for} rides out a single burst.",
                for_=c.spike_for,
                keep_firing_for=c.traffic_keep_firing_for,
                severity="warning",
                summary="Shopper traffic spike.",
                description=(
                    '{{ $labels.job }} receives {{ $value | printf "%.1f" }}x the shopper '
                    f"events per second it had {usual} (the highest of them)."
                ),
            ),
            _alert(
                c,
                "ShopperTrafficDrop",
                f"""
                ({now} or on (job) 0 * {low})
                  / {low} < {c.drop_factor:g}
                and on (job) {low} > {c.traffic_floor:g}
                """,
                f"The 5m event rate under {c.drop_factor:g}x the lowest usual rate for this "
                "time of day; no events at all (the exporter gone) reads as a rate of 0, so "
                "silence cannot hide a dead shop. Floor: the usual rate is over "
                f"{c.traffic_floor:g} event/s. for: {c.drop_for}, so a drop to 0.4x or an "
                "outage fires within 15 minutes.",
                for_=c.drop_for,
                keep_firing_for=c.traffic_keep_firing_for,
                severity="warning",
                summary="Shopper traffic dropped.",
                description=(
                    "{{ $labels.job }} receives {{ $value | humanizePercentage }} of the shopper "
                    f"events per second it had {usual} (the lowest of them)."
                ),
            ),
        ],
    )


def _business(c: MixinConfig) -> Group:
    return Group(
        "shopper-business",
        [
            _alert(
                c,
                "ShopperCartAbandonmentHigh",
                f"""
                job:shopper_cart_abandonment:ratio1h > {c.abandonment_ratio:g}
                and on (job)
                (job:shopper_cart_abandonments:increase1h + job:shopper_orders:increase1h)
                  >= {c.abandonment_min_carts}
                """,
                f"Over {c.abandonment_ratio:.0%} of the carts closed in the last hour were "
                "abandoned. Online grocery averages around 70%, so this points at a broken "
                "checkout, payment or delivery-slot problem. Floor: "
                f"{c.abandonment_min_carts} carts closed in the hour, so three abandoned carts "
                f"at night are not a 100% alert. for: {c.abandonment_for}, since the 1h window "
                "moves slowly.",
                for_=c.abandonment_for,
                severity="warning",
                summary="Cart abandonment is high.",
                description=(
                    "{{ $value | humanizePercentage }} of the carts closed in the last hour on "
                    "{{ $labels.job }} were abandoned instead of ordered "
                    f"(alert above {c.abandonment_ratio:.0%})."
                ),
            ),
            _alert(
                c,
                "ShopperOrdersStalled",
                f"""
                job:shopper_orders:increase30m == 0
                and on (job) job:shopper_active_shoppers:sum >= {c.orders_stalled_min_shoppers}
                """,
                "No order completed for 30 minutes while at least "
                f"{c.orders_stalled_min_shoppers} shoppers are online: with that many shoppers "
                "a half-hour without a single order points at a broken checkout, not chance.",
                for_=c.orders_stalled_for,
                severity="critical",
                summary="No orders while shoppers are active.",
                description=(
                    "{{ $labels.job }} recorded no completed order in the last 30 minutes "
                    "although shoppers are online; check checkout, payment and order-event "
                    "ingestion."
                ),
            ),
        ],
    )


def _exporter(c: MixinConfig) -> Group:
    stamp = c.sel("shopper_exporter_last_update_timestamp_seconds")
    up = c.sel("up")
    return Group(
        "shopper-exporter",
        [
            _alert(
                c,
                "ShopperIngestStalled",
                f"time() - max by (job, instance) ({stamp}) > {c.ingest_stall_seconds}",
                "A replica accepted no shopper update for "
                f"{c.ingest_stall_seconds} s. Per instance: with replicas sharded by userId, "
                "one stalled replica hides its shoppers while the others look fine. The "
                "timestamp reads the exporter's start until a first update, so a replica "
                "restarted without state whose producers stay away fires too.",
                for_=c.ingest_stall_for,
                severity="critical",
                summary="Shopper updates stopped arriving.",
                description=(
                    "{{ $labels.job }} at {{ $labels.instance }} has not accepted a shopper "
                    "update for {{ $value | humanizeDuration }}; check the producers and pull "
                    "sources."
                ),
                per_instance=True,
            ),
            _alert(
                c,
                "ShopperIngestRejectsHigh",
                f"""
                job:shopper_updates_rejected:ratio_rate5m > {c.rejects_ratio:g}
                and on (job) job:shopper_updates_received:rate5m > {c.rejects_min_rate:g}
                """,
                f"More than {c.rejects_ratio:.0%} of the received records rejected (invalid, "
                "not JSON, too large) over 5m: a producer sends a broken payload. Floor: "
                f"{c.rejects_min_rate:g} records/s received, so one bad record among a handful "
                "is not an alert.",
                for_=c.rejects_for,
                severity="warning",
                summary="Many shopper updates are rejected.",
                description=(
                    "{{ $value | humanizePercentage }} of the records {{ $labels.job }} received "
                    "in the last 5 minutes were rejected; see shopper_updates_rejected_total by "
                    "reason."
                ),
            ),
            _alert(
                c,
                "ShopperExporterDown",
                f"sum by (job, instance) ({up}) == 0\nor absent({up})",
                "Prometheus cannot scrape a replica (up == 0), or has no exporter target at "
                "all. Per instance: one missing replica hides its shoppers. for: "
                f"{c.exporter_down_for} rides out a restart.",
                for_=c.exporter_down_for,
                severity="critical",
                summary="Shopper exporter is down.",
                description=(
                    "Prometheus cannot scrape {{ $labels.job }}{{ with $labels.instance }} at "
                    "{{ . }}{{ end }}; shopper metrics and alerts are blind until it is back."
                ),
                per_instance=True,
            ),
            _alert(
                c,
                "ShopperStreamDropping",
                f"job:shopper_exporter_stream_dropped_frames:rate5m > {c.stream_drop_rate:g}",
                "Live subscribers (SSE, WebSocket, Loki tail) lose frames: a client reads "
                "slower than events arrive and sees gaps. A few drops during a burst are "
                "expected with a bounded backlog, hence the floor and for: "
                f"{c.stream_drop_for}.",
                for_=c.stream_drop_for,
                severity="warning",
                summary="Live stream subscribers are dropping frames.",
                description=(
                    "{{ $labels.job }} drops {{ $value | humanize }} frames/s to slow "
                    "live-stream subscribers; their event feeds have gaps."
                ),
            ),
        ],
    )


def _watchdog(c: MixinConfig) -> Group:
    return Group(
        "shopper-watchdog",
        [
            _alert(
                c,
                "Watchdog",
                "vector(1)",
                "Always firing: a dead man's switch. Alertmanager sends it to a receiver that "
                "raises the alarm when it stops arriving, i.e. when Prometheus, Alertmanager or "
                "the path between them is down.",
                for_="0s",
                severity="none",
                summary="The alerting pipeline is alive.",
                description=(
                    "Always firing while Prometheus evaluates rules and reaches Alertmanager; "
                    "its absence at the dead man's switch is the alarm."
                ),
            ),
        ],
    )


def alert_groups(c: MixinConfig) -> list[Group]:
    """Every alert group, in file order."""
    return [_traffic(c), _business(c), _exporter(c), _watchdog(c)]
