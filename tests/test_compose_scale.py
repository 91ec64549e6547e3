"""docker-compose.scale.yml over docker-compose.yml: three sharded replicas, HAProxy, Loki,
Prometheus scraping each replica and Grafana reading events from Loki, as Compose resolves them."""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from support import ROOT, require_binary

FILES = ("docker-compose.yml", "docker-compose.scale.yml")
REPLICAS = ("exporter", "exporter-1", "exporter-2")


@cache
def scaled() -> dict[str, Any]:
    """`docker-compose -f docker-compose.yml -f docker-compose.scale.yml config`, parsed."""
    compose = require_binary("docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPPER_", "BIND_"))}
    args = [compose]
    for name in FILES:
        args += ["-f", str(ROOT / name)]
    result = subprocess.run(
        [*args, "config"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=clean
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(yaml.safe_load(result.stdout))


def service(name: str) -> dict[str, Any]:
    return dict(scaled()["services"][name])


def mounts(name: str) -> dict[str, str]:
    """Container path → host source of a service's volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service(name).get("volumes", [])}


def test_the_overlay_is_valid_with_replicas_proxy_and_loki() -> None:
    """The merged file holds the base services plus exporter-1, exporter-2, proxy and loki."""
    assert set(scaled()["services"]) == {
        "exporter", "exporter-1", "exporter-2", "proxy", "loki",
        "demo", "prometheus", "alertmanager", "grafana",
    }  # fmt: skip


def test_each_replica_owns_one_shard_keeps_its_state_and_pushes_events_to_loki() -> None:
    """Replica i runs --shard i/3 with its own state volume and --loki-push-url to loki."""
    volumes = set()
    for index, name in enumerate(REPLICAS):
        command = service(name)["command"]
        assert f"--shard={index}/3" in command
        assert "--loki-push-url=http://loki:3100/loki/api/v1/push" in command
        assert "--state-file=/data/state.json" in command
        assert service(name)["image"] == "live-shopper-metrics:local"
        (volume,) = service(name)["volumes"]
        volumes.add(volume.split(":")[0])
        assert service(name)["healthcheck"]["test"][0] == "CMD"
    assert len(volumes) == len(REPLICAS)


def test_the_proxy_runs_the_repo_haproxy_cfg_in_front_of_the_replicas_in_shard_order() -> None:
    """HAProxy (pinned) mounts deploy/haproxy.cfg; SHOPPER_SHARD_i names replica i's service."""
    proxy = service("proxy")
    assert re.fullmatch(r"haproxy:\d+\.\d+\.\d+-alpine", proxy["image"])
    assert mounts("proxy")["/usr/local/etc/haproxy/haproxy.cfg"] == str(
        ROOT / "deploy" / "haproxy.cfg"
    )
    env = proxy["environment"]
    assert [env[f"SHOPPER_SHARD_{i}"] for i in range(3)] == [f"{n}:9462" for n in REPLICAS]
    assert set(proxy["depends_on"]) == set(REPLICAS)
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    for index in range(3):
        assert f"use_backend shard_{index} if {{ var(txn.shard) -m str {index} }}" in config


def test_prometheus_scrapes_every_replica_with_the_scale_config() -> None:
    """Prometheus mounts prometheus.scale.yml, whose one job scrapes exactly the replicas."""
    source = mounts("prometheus")["/etc/prometheus/prometheus.yml"]
    assert source == str(ROOT / "prometheus" / "prometheus.scale.yml")
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.scale.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "shopper-exporter"  # the name every rule and dashboard selects
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == [f"{n}:9462" for n in REPLICAS]
    assert config["rule_files"] == ["rules/*.yml"]


def test_grafana_reads_shopper_events_from_loki() -> None:
    """The scaled datasources keep the uids; shopper-events is the loki service."""
    target = "/etc/grafana/provisioning/datasources/datasources.yml"
    source = mounts("grafana")[target]
    sources = yaml.safe_load(Path(source).read_text())["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    assert by_uid["shopper-events"]["type"] == "loki"
    assert by_uid["shopper-events"]["url"] == "http://loki:3100"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert re.fullmatch(r"grafana/loki:\d+\.\d+\.\d+", service("loki")["image"])
    assert service("loki")["healthcheck"]["test"][0] == "CMD"


def test_the_demo_pushes_through_the_proxy_naming_shards() -> None:
    """The demo's URL is the proxy and it splits records into 3 shards."""
    command = service("demo")["command"]
    assert command[command.index("--url") + 1] == "http://proxy:9462"
    assert command[command.index("--shards") + 1] == "3"
    assert "proxy" in service("demo")["depends_on"]
