"""The week of traffic each alert is proven on, as a promtool test file (`--out DIR` writes it).

Usage: python prometheus/traffic_scenarios.py --out DIR  &&  promtool test rules DIR/test.yml

Every scenario is one job over the same week and a day of grocery traffic (synthetic_week.py); what
it adds (a spike, a drop, an outage, a restart) and which alerts must fire when are listed
below. Everything else is checked to stay silent: no traffic, stall or exporter-down alert
fires outside the expected windows, from Prometheus' first minute to its last.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mixin_alerts import alert_groups
from mixin_config import MixinConfig
from mixin_rules import recording_groups
from rule_yaml import Group, render
from synthetic_week import (
    Change,
    Stretch,
    clock,
    compact,
    counter_samples,
    moment,
    timestamp_samples,
)
from synthetic_week import up_samples as scrape_samples

SPIKE, DROP = "ShopperTrafficSpike", "ShopperTrafficDrop"
STALLED, DOWN = "ShopperIngestStalled", "ShopperExporterDown"
CHECKED = (SPIKE, DROP, STALLED, DOWN)
# How soon each must fire after its cause begins (minutes); the promises for traffic.
WITHIN = {SPIKE: 10, DROP: 15, STALLED: 10, DOWN: 4}
RESOLVED_WITHIN = 15  # minutes after the cause ends
INSTANCES = "ab"
EVENTS = ("product_viewed", "search")
# Rules are generated for every scenario job at once; the committed files differ only here.
TEST_SELECTOR = 'job=~".+"'


@dataclass(frozen=True)
class Expected:
    """`alert` fires within WITHIN minutes of `start` and keeps firing until `end` (or the end)."""

    alert: str
    start: int
    end: int | None = None
    instance: str | None = None


@dataclass(frozen=True)
class Scenario:
    """A job's week and the alerts it must raise; all others must stay silent."""

    job: str
    what: str
    stretch: Stretch
    expected: tuple[Expected, ...] = ()
    # Alert events posted back by Alertmanager (event="alert"): (when, how many at once).
    alert_storm: tuple[int, int] | None = None


def _on(change: Change) -> Expected:
    return Expected(SPIKE if change.factor > 1 else DROP, change.start, change.end)


def _changes(job: str, what: str, *changes: Change) -> Scenario:
    return Scenario(job, what, Stretch(changes=changes), tuple(_on(c) for c in changes))


RESTART = clock(7, "10:00")
GONE = clock(7, "15:00")

SCENARIOS = (
    Scenario(
        "normal-week",
        "a week and a day of ordinary traffic from a fresh Prometheus, a replica restart that "
        "resets its counter, and a storm of 20,000 alert events: nothing fires",
        Stretch(resets=(clock(3, "14:10"),)),
        alert_storm=(clock(7, "12:00"), 20_000),
    ),
    _changes(
        "outage",
        "a 90-minute outage on Wednesday evening and on the next Monday at noon: the drop alert "
        "fires within 15 minutes and holds; traffic returning raises no spike, nor does the "
        "same time the day after",
        Change(2, "18:30", 90, 0.0),
        Change(7, "12:00", 90, 0.0),
    ),
    _changes(
        "drop",
        "traffic at 0.4x for an hour on Saturday night and on Sunday evening (against a "
        "quieter Friday and Saturday)",
        Change(5, "03:00", 60, 0.4),
        Change(6, "19:00", 60, 0.4),
    ),
    _changes("spike-night", "3x for an hour at 03:00", Change(7, "03:00", 60, 3.0)),
    _changes("spike-midday", "3x for an hour at 12:30 on a Sunday", Change(6, "12:30", 60, 3.0)),
    _changes(
        "spike-evening",
        "3x for an hour at 19:00 on a Friday, the quietest day, against Thursday",
        Change(4, "19:00", 60, 3.0),
    ),
    _changes(
        "spike-morning", "3x for 45 minutes during the morning ramp", Change(7, "08:00", 45, 3.0)
    ),
    Scenario(
        "restarted-without-state",
        "the exporter restarts without state and its producers never return: its counters sit "
        "at 0 and its update timestamp at the restart; the stall and the drop alerts fire",
        Stretch(replicas=1, abandoned=RESTART),
        (Expected(STALLED, RESTART, instance="a"), Expected(DROP, RESTART)),
    ),
    Scenario(
        "restarted-series-missing",
        "the same restart with an exporter that exports no series until its first event: the "
        "drop alert still fires, since no events read as a rate of 0",
        Stretch(replicas=1, abandoned=RESTART, vanish=True),
        (Expected(DROP, RESTART),),
    ),
    Scenario(
        "exporter-gone",
        "Prometheus can no longer scrape either replica: exporter-down fires per instance, and "
        "the drop alert too",
        Stretch(gone=GONE),
        (
            Expected(DOWN, GONE, instance="a"),
            Expected(DOWN, GONE, instance="b"),
            Expected(DROP, GONE),
        ),
    ),
)


def scenario_config(config: MixinConfig | None = None) -> MixinConfig:
    """`config` (the defaults) with the selector that takes in every scenario's job."""
    return replace(config or MixinConfig(), job_selector=TEST_SELECTOR)


def rules_under_test(config: MixinConfig) -> dict[str, str]:
    """File name → text of the groups the scenarios exercise: the traffic recording rules, the
    traffic and the exporter alerts (the others would only slow promtool down)."""
    header = ["Rules under test: generated for the scenarios' jobs."]
    recording = [g for g in recording_groups(config) if g.name == "shopper-traffic"]
    alerts = [
        Group(g.name, [r for r in g.rules if r.name in CHECKED])
        for g in alert_groups(config)
        if any(r.name in CHECKED for r in g.rules)
    ]
    return {"recording.yml": render(recording, header), "alerts.yml": render(alerts, header)}


def _series(scenario: Scenario, seed: int) -> list[dict[str, str]]:
    stretch, job = replace(scenario.stretch, seed=seed), scenario.job
    series = []
    for replica, tokens in enumerate(counter_samples(stretch)):
        instance = INSTANCES[replica]
        labels = f'job="{job}", instance="{instance}"'
        series += [
            {
                "series": f'shopper_events_total{{{labels}, event="{EVENTS[replica]}"}}',
                "values": compact(tokens),
            },
            {
                "series": f"shopper_exporter_last_update_timestamp_seconds{{{labels}}}",
                "values": compact(timestamp_samples(stretch)),
            },
            {"series": f"up{{{labels}}}", "values": compact(scrape_samples(stretch))},
        ]
    if scenario.alert_storm is not None:
        at, count = scenario.alert_storm
        tokens = [str(count if t >= at else 0) for t in stretch.times()]
        series.append(
            {
                "series": f'shopper_events_total{{job="{job}", instance="a", event="alert"}}',
                "values": compact(tokens),
            }
        )
    return series


def _minutes(seconds: int) -> str:
    return f"{seconds // 60}m"


def _alerts(alert: str, job: str, instance: str | None = None) -> str:
    matchers = [f'alertname="{alert}"', 'alertstate="firing"', f'job="{job}"']
    if instance is not None:
        matchers.append(f'instance="{instance}"')
    return f"ALERTS{{{', '.join(matchers)}}}"


def _checks(scenario: Scenario, severities: dict[str, str]) -> list[dict[str, Any]]:
    """Expected alerts fire in time and hold; every checked alert is silent everywhere else."""
    stretch, job = scenario.stretch, scenario.job
    last = stretch.ends - stretch.begins
    checks: list[dict[str, Any]] = []
    for exp in scenario.expected:
        first = exp.start - stretch.begins + WITHIN[exp.alert] * 60
        until = last if exp.end is None else exp.end - stretch.begins - 60
        labels = {
            "alertname": exp.alert,
            "alertstate": "firing",
            **({"instance": exp.instance} if exp.instance else {}),
            "job": job,
            "severity": severities[exp.alert],
        }
        # The window reaches 30s past `first`, so it holds exactly the evaluations from
        # `first` to `until` whether or not a range includes its left edge.
        note = (
            f"{job}: {exp.alert} within {WITHIN[exp.alert]}m of {moment(exp.start)}, "
            f"held until {moment(until + stretch.begins)}"
        )
        checks.append(
            {
                "expr": f"count_over_time({_alerts(exp.alert, job, exp.instance)}"
                f"[{until - first + 30}s])  # {note}",
                "eval_time": _minutes(until),
                "exp_samples": [
                    {
                        "labels": "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
                        "value": (until - first) // 60 + 1,
                    }
                ],
            }
        )
    for alert in CHECKED:
        quiet_from = 0
        windows = sorted((e for e in scenario.expected if e.alert == alert), key=lambda e: e.start)
        for exp in [*windows, None]:
            quiet_until = last if exp is None else exp.start - stretch.begins
            if quiet_until > quiet_from:
                note = (
                    f"{job}: no {alert} from {moment(quiet_from + stretch.begins)} "
                    f"to {moment(quiet_until + stretch.begins)}"
                )
                checks.append(
                    {
                        "expr": f"count_over_time({_alerts(alert, job)}"
                        f"[{quiet_until - quiet_from}s])  # {note}",
                        "eval_time": _minutes(quiet_until),
                        "exp_samples": [],
                    }
                )
            if exp is not None:
                if exp.end is None:
                    break
                quiet_from = exp.end - stretch.begins + RESOLVED_WITHIN * 60
    return checks


def promtool_test(rule_files: list[str], config: MixinConfig, seed: int = 1) -> dict[str, Any]:
    """The promtool test file: every scenario's series in one test group, with its checks.

    Each scenario draws its own noise (seed + its index), so no two weeks are alike."""
    severities = {
        rule.name: rule.labels["severity"] for group in alert_groups(config) for rule in group.rules
    }
    return {
        "rule_files": rule_files,
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "a week of grocery traffic",
                "interval": "1m",
                "input_series": [
                    s for i, sc in enumerate(SCENARIOS) for s in _series(sc, seed + i)
                ],
                "promql_expr_test": [c for sc in SCENARIOS for c in _checks(sc, severities)],
            }
        ],
    }


def write(out: Path, config: MixinConfig | None = None, seed: int = 1) -> Path:
    """Write the rule files and test.yml into `out`; the path of the test file."""
    config = scenario_config(config)
    out.mkdir(parents=True, exist_ok=True)
    rules = rules_under_test(config)
    for name, text in rules.items():
        (out / name).write_text(text)
    test = out / "test.yml"
    # JSON is YAML, and far quicker to write for a few megabytes of samples.
    test.write_text(json.dumps(promtool_test(sorted(rules), config, seed), indent=1))
    return test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the test files")
    parser.add_argument("--seed", type=int, default=1, help="noise seed of the first scenario")
    args = parser.parse_args(argv)
    print(write(args.out, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
