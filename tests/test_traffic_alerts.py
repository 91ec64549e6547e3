"""Traffic and dead-shop alerts proven with promtool over a generated week of grocery traffic.

prometheus/traffic_scenarios.py lays each scenario (a spike at night, a drop, an outage, an
exporter restarted without state, ...) over the same week of synthetic traffic and writes one
promtool test: the expected alerts fire in time and hold while their cause lasts, and nothing
else fires from Prometheus' first minute to its last. promtool runs once; each scenario's test
reads its own checks from the outcome.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from support import ROOT, prometheus_module, require_binary

scenarios = prometheus_module("traffic_scenarios")
rules = prometheus_module("build_rules")
config = prometheus_module("mixin_config")


@dataclass
class Outcome:
    """promtool's verdict on the generated test file."""

    returncode: int
    output: str
    test: dict[str, Any]

    def failures(self, job: str) -> list[str]:
        """promtool's failure reports about the checks of one scenario's job."""
        blocks = self.output.split("\n\n")
        return [b.strip() for b in blocks if f'job=\\"{job}\\"' in b or f"# {job}:" in b]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The scenarios written as rule and test files, and promtool's run over them."""
    promtool = require_binary("promtool")
    test_file = scenarios.write(tmp_path_factory.mktemp("traffic"))
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=test_file.parent,
    )
    output = result.stdout + result.stderr
    return Outcome(result.returncode, output, json.loads(test_file.read_text()))


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.job)
def test_scenario(outcome: Outcome, scenario: Any) -> None:
    """Each scenario's expected alerts fire in time and hold, and no other checked alert fires."""
    checks = [
        c for c in outcome.test["tests"][0]["promql_expr_test"] if f"# {scenario.job}:" in c["expr"]
    ]
    assert checks, "the scenario has no checks"
    assert {c["exp_samples"] != [] for c in checks} == (
        {True, False} if scenario.expected else {False}
    )
    assert outcome.failures(scenario.job) == [], scenario.what


def test_promtool_accepts_the_whole_week(outcome: Outcome) -> None:
    """promtool loads the generated rules and series and every check passes."""
    assert outcome.returncode == 0, outcome.output[-5000:]
    assert "SUCCESS" in outcome.output


def test_scenarios_cover_the_promised_cases() -> None:
    """Spikes at night, midday, evening and on the ramp; a drop; an outage; a fresh start; a
    counter reset; a restart without state; a vanished exporter."""
    by_job = {s.job: s for s in scenarios.SCENARIOS}
    spikes = {job: [c for c in s.stretch.changes if c.factor == 3.0] for job, s in by_job.items()}
    hours = {int(c.at[:2]) for changes in spikes.values() for c in changes}
    assert {3, 8, 12, 19} <= hours
    assert any(c.factor == 0.4 for s in scenarios.SCENARIOS for c in s.stretch.changes)
    assert any(c.factor == 0.0 and c.minutes >= 60 for c in by_job["outage"].stretch.changes)
    assert by_job["normal-week"].stretch.resets
    assert by_job["normal-week"].expected == ()
    assert by_job["restarted-without-state"].stretch.abandoned is not None
    assert by_job["exporter-gone"].stretch.gone is not None
    # The first sample is a fresh Prometheus: every scenario starts without history.
    assert {s.stretch.begins for s in scenarios.SCENARIOS} == {scenarios.Stretch().begins}


def _rules_by_name(text: str) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(text)["groups"]
    return {r.get("record") or r["alert"]: r for g in groups for r in g["rules"]}


def test_rules_under_test_are_the_committed_ones_but_for_the_selector() -> None:
    """Each rule the scenarios run is a committed rule, only with a selector for their jobs."""
    committed: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        committed |= _rules_by_name(path.read_text())
    default = config.MixinConfig().job_selector
    tested = scenarios.rules_under_test(scenarios.scenario_config())
    names = set()
    for text in tested.values():
        for name, rule in _rules_by_name(text).items():
            rule["expr"] = rule["expr"].replace(scenarios.TEST_SELECTOR, default)
            assert rule == committed[name]
            names.add(name)
    assert {"ShopperTrafficSpike", "ShopperTrafficDrop", "ShopperIngestStalled"} <= names
    assert scenarios.TEST_SELECTOR in tested["recording.yml"]
