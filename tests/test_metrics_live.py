"""/metrics on a real exporter process with the demo: promtool-clean, negotiated, bounded labels."""

from __future__ import annotations

import gzip
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import RunningProcess, http_get, require_binary, run_exporter, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """One exporter with 60 demo shoppers, run until orders and abandonments have happened."""
    with run_exporter(tmp_path_factory.mktemp("live"), "--demo", "60", "--demo-seed", "5") as proc:

        def traffic_complete() -> bool:
            summary = orjson.loads(http_get(proc.base_url + "/api/summary")[1])
            return summary["ordersTotal"] > 0 and summary["abandonmentsLastHour"] > 0

        wait_until(traffic_complete, timeout=90, interval=0.5)
        yield proc


def scrape(
    base_url: str, accept: str = "text/plain", encoding: str = "identity"
) -> tuple[str, str, bytes]:
    request = urllib.request.Request(
        base_url + "/metrics", headers={"Accept": accept, "Accept-Encoding": encoding}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.headers["Content-Type"], resp.headers.get("Content-Encoding", ""), resp.read()


def test_promtool_check_metrics_is_clean(exporter: RunningProcess) -> None:
    """`promtool check metrics` finds no problem in a live scrape."""
    promtool = require_binary("promtool")
    _, _, body = scrape(exporter.base_url)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b""
    assert result.stderr.strip() == b""


def test_openmetrics_and_gzip_are_negotiated(exporter: RunningProcess) -> None:
    """Prometheus's Accept header gets OpenMetrics; Accept-Encoding gzip gets a gzip body."""
    accept = (
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
    )
    ctype, encoding, body = scrape(exporter.base_url, accept, "gzip")
    assert ctype.startswith("application/openmetrics-text")
    assert encoding == "gzip"
    text = gzip.decompress(body).decode()
    assert text.rstrip().endswith("# EOF")
    assert "shopper_orders_total" in text


def test_every_family_has_plausible_data(exporter: RunningProcess) -> None:
    """After a short demo run every family is present and its values make sense together."""
    _, _, body = scrape(exporter.base_url)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}

    def value(name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in families[name].samples
            if s.name in (name, name + "_total") and labels.items() <= s.labels.items()
        )

    active = value("shopper_active_shoppers")
    # Visits arrive at random around the target of 60 online (about √60 ≈ 8 either side), so
    # the bound is twice the target: over 7 standard deviations away, never a chance failure.
    assert 0 < active <= 2 * 60
    assert value("shopper_active_shoppers_by_activity") == active
    assert value("shopper_active_shoppers_by_membership") == active
    assert value("shopper_tracked_shoppers") >= active
    assert value("shopper_active_carts") <= active
    assert value("shopper_cart_items") >= value("shopper_active_carts")
    assert value("shopper_orders") > 0
    assert value("shopper_order_value_dollars") > value("shopper_orders")  # > $1 an order
    assert value("shopper_cart_abandonments") > 0
    assert value("shopper_funnel_sessions", stage="browsing") >= value(
        "shopper_funnel_sessions", stage="order"
    )
    assert value("shopper_updates_received", transport="demo") > 0
    assert value("shopper_sessions_ended") > 0
    histogram = families["shopper_session_duration_seconds"]
    count = next(s.value for s in histogram.samples if s.name.endswith("_count"))
    assert count == value("shopper_sessions_ended")


def test_no_shopper_identity_in_labels(exporter: RunningProcess) -> None:
    """No label value is a shopper id or name; label sets stay small."""
    shoppers = orjson.loads(http_get(exporter.base_url + "/api/shoppers?limit=1000")[1])
    identities = {s["userId"] for s in shoppers["shoppers"]} | {
        s["userName"] for s in shoppers["shoppers"]
    }
    _, _, body = scrape(exporter.base_url)
    for family in text_string_to_metric_families(body.decode()):
        values = {v for s in family.samples for k, v in s.labels.items() if k != "le"}
        assert not values & identities, family.name
        assert len(family.samples) <= 60, family.name


def test_startup_prints_the_urls(exporter: RunningProcess) -> None:
    """The service says where its page, metrics and APIs are."""
    log = exporter.log()
    port = exporter.base_url.rsplit(":", 1)[1]
    for path in ("/metrics", "/api/summary", "/api/stream", "/loki/api/v1/"):
        assert f"http://localhost:{port}{path}" in log


def test_help_lists_env_fallbacks() -> None:
    """Every option in --help names its SHOPPER_* variable."""
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for env in (
        "SHOPPER_PORT",
        "SHOPPER_DEMO",
        "SHOPPER_ACTIVE_WINDOW",
        "SHOPPER_RETENTION",
        "SHOPPER_LABEL_CAP",
        "SHOPPER_MAX_BODY_BYTES",
        "SHOPPER_ORDER_PHRASES",
    ):
        assert env in out, env


def test_env_fallback_sets_the_port(tmp_path: Path) -> None:
    """SHOPPER_PORT is used when --port is not given."""
    import sys

    from support import free_port, run_process

    port = free_port()
    args = [sys.executable, "-m", "exporter", "--host", "127.0.0.1"]
    with run_process(
        args,
        tmp_path / "env.log",
        f"http://127.0.0.1:{port}",
        "/readyz",
        env={"SHOPPER_PORT": str(port)},
    ) as proc:
        assert http_get(proc.base_url + "/healthz")[0] == 200


def test_bad_setting_is_a_clear_error() -> None:
    """An impossible setting stops the service with the setting's name."""
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--active-window", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--active-window must be above 0" in result.stderr
