"""A dead shop cannot hide: a real Prometheus, a real exporter restarted without state.

Prometheus scrapes the exporter with the repo's scrape job and evaluates the repo's rules,
generated with short durations (a 5-second stall instead of 5 minutes). Producers push while
the exporter runs; then it restarts without state and they never come back. ShopperIngestStalled
must fire for it, and ShopperExporterDown must not (the exporter is up and answering).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_prometheus_rules import CONFIG

from exporter.events import KNOWN_TYPES

from support import (
    free_port,
    http_get,
    prometheus_module,
    require_binary,
    run_exporter,
    run_process,
    shopper,
    wait_until,
)

pytestmark = pytest.mark.integration

build_rules = prometheus_module("build_rules")
mixin_config = prometheus_module("mixin_config")

# The defaults, with durations a test can wait for; the expressions are the committed ones.
SHORT = replace(
    mixin_config.MixinConfig(),
    ingest_stall_seconds=5,
    ingest_stall_for="2s",
    exporter_down_for="30s",
)


class Producer:
    """Pushes one shopper update every 200 ms until stopped, as a shop's backend would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pushed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            body = json.dumps(shopper(f"shopper_{self.pushed % 5}")).encode()
            request = urllib.request.Request(
                f"{self.url}/api/metrics", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=2):
                    self.pushed += 1
            except OSError:
                pass
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _prometheus_config(exporter_port: int, tmp: Path) -> Path:
    """prometheus.yml with a 1s scrape and evaluation, no Alertmanager, the short rules."""
    rule_paths = []
    for name, text in build_rules.rule_files(SHORT).items():
        (tmp / name).write_text(text)
        rule_paths.append(str(tmp / name))
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config.pop("alerting")
    config["rule_files"] = rule_paths
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{exporter_port}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _query(base_url: str, expr: str) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "time": f"{time.time():.3f}"})
    status, body = http_get(f"{base_url}/api/v1/query?{params}", timeout=10)
    assert status == 200, body[:300]
    return list(json.loads(body)["data"]["result"])


def test_exporter_restarted_without_producers_fires_ingest_stalled(tmp_path: Path) -> None:
    """Silent while producers push; after a stateless restart with no producer, the freshly
    started exporter exports every event type at 0 and its start as the last update, and
    ShopperIngestStalled fires for it while ShopperExporterDown does not."""
    prometheus_bin = require_binary("prometheus")
    exporter_port, prometheus_port = free_port(), free_port()
    instance = f"127.0.0.1:{exporter_port}"
    prom_url = f"http://127.0.0.1:{prometheus_port}"
    args = [
        prometheus_bin,
        f"--config.file={_prometheus_config(exporter_port, tmp_path)}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        "--log.level=warn",
    ]
    stalled = f'ALERTS{{alertname="ShopperIngestStalled", instance="{instance}"}}'
    with run_process(args, tmp_path / "prometheus.log", prom_url, "/-/ready", timeout=60):
        with run_exporter(tmp_path, port=exporter_port) as exporter:
            producer = Producer(exporter.base_url)
            try:
                # Ten seconds of scrapes and rule evaluations while updates arrive: twice the
                # stall threshold plus its `for`, so a false alarm would have had its chance.
                scrapes = f'count_over_time(up{{instance="{instance}"}}[1m]) >= 10'
                wait_until(lambda: _query(prom_url, scrapes), timeout=60, interval=0.5)
                assert producer.pushed > 0
                assert _query(prom_url, f"max_over_time({stalled}[1m])") == []
            finally:
                producer.stop()
        with run_exporter(tmp_path, port=exporter_port) as restarted:
            started = time.time()
            status, body = http_get(f"{restarted.base_url}/metrics")
            assert status == 200
            text = body.decode()
            for kind in sorted(KNOWN_TYPES):
                assert f'shopper_events_total{{event="{kind}"}} 0.0' in text
            assert "shopper_exporter_last_update_timestamp_seconds " in text

            firing = f'{stalled[:-1]}, alertstate="firing"}}'
            result = wait_until(lambda: _query(prom_url, firing), timeout=90, interval=0.5)
            assert isinstance(result, list)
            assert result[0]["metric"]["severity"] == "critical"
            assert time.time() - started >= SHORT.ingest_stall_seconds
            down = 'ALERTS{alertname="ShopperExporterDown", alertstate="firing"}'
            assert _query(prom_url, down) == []
