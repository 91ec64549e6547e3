"""The settings the rules are generated from: the job selector, links and every alert threshold."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DURATION = re.compile(r"(?:\d+[smhdw])+")


@dataclass(frozen=True)
class MixinConfig:
    """One place for what a deployment tunes; `build_rules.py` writes the rule files from it.

    The defaults are those of the committed files. Each traffic threshold is proven by the
    promtool tests over a generated week (`synthetic_week.py`): change one, run the tests.
    """

    # Which scrape job is the shop: every selector of every rule carries it.
    job_selector: str = 'job="shopper-exporter"'
    # Where alerts link to: Grafana (dashboard_url) and the runbooks (runbook_url + #anchor).
    grafana_url: str = "http://localhost:3000"
    runbook_url: str = "docs/runbooks.md"

    # -- traffic against the same time of day (ShopperTrafficSpike, ShopperTrafficDrop) --------
    # The 5m event rate against the 30m rate around the same moment 1 day, 2 days and 1 week
    # ago. A spike must exceed every one of those references by `spike_factor`, a drop fall
    # below every one of them times `drop_factor`: one odd day (an outage, a promotion) in the
    # references cannot fake an alert or hide one.
    spike_factor: float = 2.0
    spike_for: str = "5m"
    drop_factor: float = 0.6
    drop_for: str = "8m"
    # A brief return across the threshold (noise) does not end an alert that is still true.
    traffic_keep_firing_for: str = "5m"
    # Fewer references than this (a Prometheus younger than two days) means no traffic alert:
    # too little history reads as a false baseline.
    min_references: int = 2
    # Events/s below which a spike is not worth a page, and under which a usual rate is too
    # small to call a drop from.
    traffic_floor: float = 1.0

    # -- business ------------------------------------------------------------------------------
    abandonment_ratio: float = 0.85
    abandonment_min_carts: int = 20
    abandonment_for: str = "15m"
    orders_stalled_min_shoppers: int = 20
    orders_stalled_for: str = "10m"

    # -- the exporter and its ingest -----------------------------------------------------------
    ingest_stall_seconds: int = 300
    ingest_stall_for: str = "2m"
    rejects_ratio: float = 0.05
    rejects_min_rate: float = 0.5
    rejects_for: str = "10m"
    exporter_down_for: str = "2m"
    stream_drop_rate: float = 1.0
    stream_drop_for: str = "10m"

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name.endswith("_for") and not _DURATION.fullmatch(value):
                raise ValueError(f"{name}: {value!r} is not a Prometheus duration")
        if not 0 < self.drop_factor < 1 < self.spike_factor:
            raise ValueError("drop_factor must lie in (0, 1) and spike_factor above 1")
        if not 1 <= self.min_references <= 3:
            raise ValueError("min_references: there are 3 references (1d, 2d, 1w ago)")

    def sel(self, metric: str, *matchers: str) -> str:
        """`metric{<job selector>, matchers...}`."""
        return f"{metric}{{{', '.join((self.job_selector, *matchers))}}}"
