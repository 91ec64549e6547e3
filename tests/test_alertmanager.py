"""Alertmanager routes by severity, inhibits what a known cause explains, and feeds the exporter.

amtool checks the file and resolves each alert's receivers; a real Alertmanager, given the
repo's file with its placeholder URLs pointed at local receivers and the real exporter, shows
which alerts it inhibits and delivers the others.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_prometheus_rules import ALERTMANAGER_CONFIG, alert_rules

from support import RunningProcess, free_port, http_get, require_binary, run_exporter, run_process
from support import wait_until as wait

WRITE_TOKEN = "alertmanager-writes-with-this"
PAGE = "shopper-exporter,pager"
CHAT = "shopper-exporter,chat"


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    amtool = require_binary("amtool")
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, check=False)


def _receivers(**labels: str) -> str:
    result = _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_alertmanager_config_is_valid() -> None:
    """amtool check-config accepts alertmanager.yml with its four receivers and two inhibitions."""
    result = _amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " - 2 inhibit rules" in result.stdout
    assert " - 4 receivers" in result.stdout


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_reaches_the_receivers_of_its_severity(rule: dict[str, Any]) -> None:
    """amtool routes each alert by its severity: critical pages, warning goes to chat, both also
    to the exporter; the Watchdog goes to the dead man's switch only."""
    severity = rule["labels"]["severity"]
    expected = {"critical": PAGE, "warning": CHAT, "none": "deadmans-switch"}[severity]
    labels = {"alertname": rule["alert"], "severity": severity, "job": "shopper-exporter"}
    result = _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={expected}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_exporter_down_is_never_left_to_the_exporter_alone() -> None:
    """ShopperExporterDown pages a person besides posting to the (dead) exporter."""
    receivers = _receivers(alertname="ShopperExporterDown", severity="critical", instance="a")
    assert receivers.split(",") == ["shopper-exporter", "pager"]


def test_alerts_of_other_sources_go_to_chat_only() -> None:
    """An alert that is not a shopper alert and has no severity falls to the chat receiver."""
    assert _receivers(alertname="NodeDiskFull") == "chat"
    assert _receivers(alertname="NodeDown", severity="critical") == "pager"


# -- a real Alertmanager ---------------------------------------------------------------------


@dataclass
class Inbox:
    """What the local stand-ins for the pager, chat and dead man's switch received."""

    bodies: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, body: str) -> None:
        with self.lock:
            self.bodies.setdefault(path, []).append(body)

    def text(self, path: str) -> str:
        with self.lock:
            return "\n".join(self.bodies.get(path, []))


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, str]]:
    """A local HTTP server standing in for PagerDuty, Slack and the switch; its base URL."""
    received = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.add(self.path, body.decode(errors="replace"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output clean."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _test_config(inbox_url: str, exporter_url: str, token_file: Path, path: Path) -> Path:
    """The repo's file with its URLs pointed at the local receivers, the write token read from
    `token_file`, and quick group timings."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    receivers["pager"]["pagerduty_configs"][0]["url"] = f"{inbox_url}/pager"
    receivers["chat"]["slack_configs"][0]["api_url"] = f"{inbox_url}/chat"
    receivers["deadmans-switch"]["webhook_configs"][0]["url"] = f"{inbox_url}/switch"
    (exporter,) = receivers["shopper-exporter"]["webhook_configs"]
    exporter["url"] = f"{exporter_url}/api/alerts"
    auth = exporter["http_config"]["authorization"]
    assert auth["credentials_file"] == "/tmp/shopper-write-token"
    auth["credentials_file"] = str(token_file)
    for route in [config["route"], *config["route"]["routes"]]:
        if "group_wait" in route:
            route.update(group_wait="1s", group_interval="1s")
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Pipeline:
    alertmanager: RunningProcess
    exporter: RunningProcess
    inbox: Inbox

    def post(self, alerts: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(
            f"{self.alertmanager.base_url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200

    def states(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(alertname, instance) → Alertmanager's status of each alert it holds."""
        status, body = http_get(f"{self.alertmanager.base_url}/api/v2/alerts")
        assert status == 200
        return {
            (a["labels"]["alertname"], a["labels"].get("instance", "")): a["status"]
            for a in json.loads(body)
        }

    def exporter_alert_lines(self) -> str:
        """The alert events the exporter logged, as its Loki API returns them."""
        now = time.time_ns()
        query = urllib.parse.urlencode(
            {"query": '{job="shopper-events", type="alert"}', "start": now - 10**11, "end": now}
        )
        status, body = http_get(f"{self.exporter.base_url}/loki/api/v1/query_range?{query}")
        assert status == 200
        return body.decode()


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "job": "shop", **labels},
        "annotations": {"summary": f"{name} {labels.get('instance', '')}".strip() + "."},
    }


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory, inbox: tuple[Inbox, str]
) -> Iterator[Pipeline]:
    """A real Alertmanager with the repo's routing; the real exporter, with a write token, as
    its webhook."""
    binary = require_binary("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("alertmanager")
    received, inbox_url = inbox
    port = free_port()
    token_file = tmp / "shopper-write-token"
    token_file.write_text(WRITE_TOKEN)
    with run_exporter(tmp, "--write-token", WRITE_TOKEN) as exporter:
        config = _test_config(inbox_url, exporter.base_url, token_file, tmp / "am.yml")
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        with run_process(
            args, tmp / "alertmanager.log", f"http://127.0.0.1:{port}", "/-/ready", timeout=60
        ) as alertmanager:
            running = Pipeline(alertmanager, exporter, received)
            running.post(
                [
                    _alert("ShopperExporterDown", "critical", instance="a"),
                    _alert("ShopperIngestStalled", "critical", instance="a"),
                    _alert("ShopperIngestStalled", "critical", instance="b"),
                    _alert("ShopperTrafficDrop", "warning"),
                    _alert("ShopperTrafficSpike", "warning"),
                    {"labels": {"alertname": "Watchdog", "severity": "none"}},
                ]
            )
            yield running


@pytest.mark.integration
def test_exporter_down_inhibits_the_other_alerts_of_its_instance(pipeline: Pipeline) -> None:
    """ShopperIngestStalled for the down instance is suppressed; for another instance it is not."""

    def settled() -> dict[tuple[str, str], dict[str, Any]] | None:
        states = pipeline.states()
        return states if len(states) == 6 else None

    states = wait(settled, timeout=30)
    assert isinstance(states, dict)
    stalled_a, stalled_b = (
        states[("ShopperIngestStalled", "a")],
        states[("ShopperIngestStalled", "b")],
    )
    assert stalled_a["state"] == "suppressed"
    assert len(stalled_a["inhibitedBy"]) == 1
    assert stalled_b["state"] == "active"
    assert states[("ShopperExporterDown", "a")]["state"] == "active"


@pytest.mark.integration
def test_ingest_stalled_inhibits_the_traffic_drop(pipeline: Pipeline) -> None:
    """ShopperTrafficDrop is suppressed while ShopperIngestStalled fires for its job; the spike
    is not."""
    wait(lambda: len(pipeline.states()) == 6, timeout=30)
    states = pipeline.states()
    assert states[("ShopperTrafficDrop", "")]["state"] == "suppressed"
    assert states[("ShopperTrafficSpike", "")]["state"] == "active"


@pytest.mark.integration
def test_receivers_get_what_their_routes_send(pipeline: Pipeline) -> None:
    """The pager gets the critical alerts, chat the warning, the switch the Watchdog, and the
    exporter's live stream (through its write token) every shopper alert; inhibited alerts
    reach no one."""
    inbox = pipeline.inbox

    expected = (
        ("/pager", "ShopperExporterDown"),
        ("/pager", "ShopperIngestStalled b shop"),
        ("/chat", "ShopperTrafficSpike"),
        ("/switch", "Watchdog"),
        ("exporter", "ShopperTrafficSpike"),
        ("exporter", "ShopperExporterDown a"),
        ("exporter", "ShopperIngestStalled b"),
    )

    def missing() -> list[tuple[str, str]]:
        lines = pipeline.exporter_alert_lines()
        return [
            (where, text)
            for where, text in expected
            if text not in (lines if where == "exporter" else inbox.text(where))
        ]

    try:
        wait(lambda: not missing(), timeout=60, interval=0.5)
    except AssertionError:
        raise AssertionError(f"not delivered: {missing()}; received: {inbox.bodies}") from None
    everything = inbox.text("/pager") + inbox.text("/chat") + inbox.text("/switch")
    assert "ShopperTrafficDrop" not in everything + pipeline.exporter_alert_lines()
    assert "ShopperIngestStalled a shop" not in inbox.text("/pager")
    assert "ShopperIngestStalled a" not in pipeline.exporter_alert_lines()
    assert "Shopper" not in inbox.text("/switch")
    assert "Watchdog" not in inbox.text("/pager") + inbox.text("/chat")
    assert "Watchdog" not in pipeline.exporter_alert_lines()
