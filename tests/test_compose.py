"""docker-compose.yml and the Dockerfile: valid, wired to the repo's config, healthchecked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import ROOT, free_port, http_request, require_binary, run_exporter

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = {"exporter", "demo", "prometheus", "alertmanager", "grafana"}


@cache
def compose_config() -> dict[str, Any]:
    """The file as Debian's docker-compose (v1.29) resolves it with `docker-compose config`."""
    return compose_config_with()


def compose_config_with(**env: str) -> dict[str, Any]:
    """The resolved file with these variables set (as a shell or a `.env` file sets them)."""
    compose = require_binary("docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPPER_", "BIND_"))}
    result = subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **env},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(yaml.safe_load(result.stdout))


def _service(name: str) -> dict[str, Any]:
    return dict(compose_config()["services"][name])


def _mounts(name: str) -> dict[str, tuple[str, str]]:
    """Container path → (source, mode) of a service's volumes."""
    mounts = {}
    for volume in _service(name).get("volumes", []):
        source, target, mode = volume.split(":")
        mounts[target] = (source, mode)
    return mounts


def _ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, published, target) of each published port, in either of the forms
    `docker-compose config` prints (a mapping, or "ADDRESS:PUBLISHED:TARGET/tcp")."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip", "0.0.0.0"), port["published"], port["target"]))
        else:
            address, published, target = str(port).split("/")[0].rsplit(":", 2)
            found.append((address, int(published), int(target)))
    return found


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_compose_file_is_valid_with_the_expected_services() -> None:
    """docker-compose config accepts the file and finds the five services."""
    assert set(compose_config()["services"]) == SERVICES


def test_exporter_and_demo_share_the_built_image() -> None:
    """The exporter is built from the repo; the demo runs the same image's demo command."""
    exporter, demo = _service("exporter"), _service("demo")
    assert Path(exporter["build"]["context"]) == ROOT
    assert demo["image"] == exporter["image"]
    assert demo["command"] == [
        "shopper-exporter",
        "demo",
        "--url",
        "http://exporter:9462",
        "--shoppers",
        "40",
    ]
    assert demo["depends_on"]["exporter"]["condition"] == "service_healthy"
    assert demo["environment"]["SHOPPER_DEMO_SPEED"] == "10"  # fills the dashboards in minutes
    assert [(published, target) for _, published, target in _ports(exporter)] == [(9462, 9462)]


def test_third_party_images_are_pinned() -> None:
    """Prometheus, Alertmanager and Grafana images carry an explicit version tag."""
    for name, repo in (
        ("prometheus", "prom/prometheus"),
        ("alertmanager", "prom/alertmanager"),
        ("grafana", "grafana/grafana"),
    ):
        image, _, tag = _service(name)["image"].partition(":")
        assert image == repo
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), _service(name)["image"]


def test_every_service_has_a_healthcheck() -> None:
    """Each service defines a healthcheck command."""
    for name in SERVICES:
        check = _service(name)["healthcheck"]
        assert check["test"][0] == "CMD", name
        assert len(check["test"]) > 1, name


def test_prometheus_mounts_the_repo_config_and_rules_read_only() -> None:
    """Prometheus runs with prometheus.yml and rules/ from the repo, mounted read-only."""
    mounts = _mounts("prometheus")
    assert mounts["/etc/prometheus/prometheus.yml"] == (
        str(ROOT / "prometheus" / "prometheus.yml"),
        "ro",
    )
    assert mounts["/etc/prometheus/rules"] == (str(ROOT / "prometheus" / "rules"), "ro")
    assert "--config.file=/etc/prometheus/prometheus.yml" in _service("prometheus")["command"]
    # prometheus.yml loads rules/*.yml relative to itself, i.e. the mounted directory.
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"]


def test_prometheus_targets_are_compose_services() -> None:
    """The scrape target and the Alertmanager address are the compose services' ports."""
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    targets += [
        target
        for manager in config["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == ["exporter:9462", "alertmanager:9093"]
    for target in targets:
        assert target.split(":")[0] in SERVICES


def test_alertmanager_mounts_its_config() -> None:
    """Alertmanager reads prometheus/alertmanager.yml, mounted read-only."""
    mounts = _mounts("alertmanager")
    assert mounts["/etc/alertmanager/alertmanager.yml"] == (
        str(ROOT / "prometheus" / "alertmanager.yml"),
        "ro",
    )


def test_alertmanager_gets_the_exporters_write_token() -> None:
    """Alertmanager receives SHOPPER_WRITE_TOKEN and writes it, before starting, to the file its
    config reads the exporter webhook's token from."""
    service = _service("alertmanager")
    assert service["environment"]["SHOPPER_WRITE_TOKEN"] == os.environ.get(
        "SHOPPER_WRITE_TOKEN", ""
    )
    shell, flag, script, *_ = service["entrypoint"]
    assert (shell, flag) == ("/bin/sh", "-c")
    config = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text())
    (exporter,) = next(r for r in config["receivers"] if r["name"] == "shopper-exporter")[
        "webhook_configs"
    ]
    token_file = exporter["http_config"]["authorization"]["credentials_file"]
    # docker-compose config prints `$$` for a literal `$`.
    assert f'printf %s "$$SHOPPER_WRITE_TOKEN" > {token_file}' in script
    assert script.endswith('exec /bin/alertmanager "$$@"')
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]


def test_grafana_provisioning_dashboards_and_anonymous_access() -> None:
    """Grafana mounts its config read-only and opens the product dashboard to anonymous viewers."""
    grafana = _service("grafana")
    mounts = _mounts("grafana")
    assert mounts["/etc/grafana/provisioning"] == (str(ROOT / "grafana" / "provisioning"), "ro")
    assert mounts["/etc/grafana/dashboards"] == (str(ROOT / "grafana" / "dashboards"), "ro")
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == Path("/etc/grafana/dashboards")
    assert json.loads((ROOT / "grafana" / "dashboards" / home.name).read_text())["uid"] == (
        "live-shopper-metrics"
    )
    providers = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )["providers"]
    assert [p["options"]["path"] for p in providers] == ["/etc/grafana/dashboards"]


def test_grafana_datasources_point_at_compose_services() -> None:
    """The provisioned datasource URLs name the prometheus and exporter services."""
    sources = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text()
    )["datasources"]
    for source in sources:
        host = re.fullmatch(r"http://([a-z]+):\d+", source["url"])
        assert host is not None
        assert host.group(1) in SERVICES


def test_dockerfile_builds_a_non_root_exporter_image() -> None:
    """python:3.11-slim, pip install . of what it copies (the browser client too), a non-root
    user, port 9462 and the exporter command."""
    instructions = _dockerfile_instructions()
    values = {kind: [v for k, v in instructions if k == kind] for kind, _ in instructions}
    assert values["FROM"] == ["python:3.11-slim"]
    assert any("pip install ." in run for run in values["RUN"])
    assert values["USER"][-1] not in {"root", "0"}
    assert values["EXPOSE"] == ["9462"]
    assert json.loads(values["CMD"][-1]) == ["shopper-exporter", "--host", "0.0.0.0"]
    copied = [part for copy in values["COPY"] for part in copy.split()[:-1]]
    assert {"setup.py", "clients/js", "exporter"} <= set(copied)  # the build puts the client in
    for path in copied:
        assert (ROOT / path).exists()
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".git", "tests"):
        assert path in ignored


def _healthcheck_command() -> list[str]:
    healthcheck = next(v for k, v in _dockerfile_instructions() if k == "HEALTHCHECK")
    return list(json.loads(healthcheck.split("CMD", 1)[1]))


@pytest.mark.integration
def test_dockerfile_healthcheck_probes_healthz(tmp_path: Path) -> None:
    """The image's HEALTHCHECK command succeeds against a running exporter and fails without one."""
    command = _healthcheck_command()
    assert command[0] == "python"
    assert "/healthz" in command[-1]
    argv = [sys.executable, *command[1:]]
    port = free_port()
    env = {**os.environ, "SHOPPER_PORT": str(port)}
    with run_exporter(tmp_path, port=port):
        healthy = subprocess.run(argv, env=env, capture_output=True, timeout=10)
        assert healthy.returncode == 0, healthy.stderr
    down = subprocess.run(argv, env=env, capture_output=True, timeout=10)
    assert down.returncode != 0


def test_exporter_keeps_its_state_on_a_named_volume() -> None:
    """The exporter runs with --state-file on the `exporter-data` volume, which the image
    creates owned by its non-root user."""
    config = compose_config()
    exporter = config["services"]["exporter"]
    command = exporter["command"]
    state_file = Path(command[command.index("--state-file") + 1])
    assert _mounts("exporter")[str(state_file.parent)] == ("exporter-data", "rw")
    assert "exporter-data" in config["volumes"]
    assert command[:3] == ["shopper-exporter", "--host", "0.0.0.0"]
    runs = " ".join(v for k, v in _dockerfile_instructions() if k == "RUN")
    assert f"mkdir {state_file.parent}" in runs
    assert f"chown shopper {state_file.parent}" in runs


def test_demo_control_is_off_unless_asked_for() -> None:
    """The page's Start/Stop Demo is refused by default and allowed with
    SHOPPER_DEMO_CONTROL=true."""
    assert _service("exporter")["environment"]["SHOPPER_DEMO_CONTROL"] == "false"
    asked = compose_config_with(SHOPPER_DEMO_CONTROL="true")
    assert asked["services"]["exporter"]["environment"]["SHOPPER_DEMO_CONTROL"] == "true"


@pytest.mark.integration
def test_the_compose_environment_refuses_demo_control(tmp_path: Path) -> None:
    """The exporter started with the compose file's environment answers 403 to Start Demo."""
    env = {k: str(v) for k, v in _service("exporter")["environment"].items()}
    with run_exporter(tmp_path, env=env) as proc:
        status, _, body = http_request(proc.base_url + "/api/demo/start", {})
    assert status == 403
    assert body["error"]


def test_ports_are_published_on_loopback_unless_asked() -> None:
    """Every published port binds 127.0.0.1 by default, and BIND_ADDRESS opens them."""
    for address, config in (
        ("127.0.0.1", compose_config()),
        ("0.0.0.0", compose_config_with(BIND_ADDRESS="0.0.0.0")),
    ):
        published = [port for service in config["services"].values() for port in _ports(service)]
        assert len(published) == 4
        assert {host for host, _, _ in published} == {address}


def test_tokens_reach_the_exporter_the_demo_and_grafana() -> None:
    """SHOPPER_WRITE_TOKEN and SHOPPER_READ_TOKEN set the exporter's tokens, the demo's push
    token and Grafana's read token."""
    services = compose_config_with(SHOPPER_WRITE_TOKEN="w-1", SHOPPER_READ_TOKEN="r-1")["services"]
    assert services["exporter"]["environment"]["SHOPPER_WRITE_TOKEN"] == "w-1"
    assert services["exporter"]["environment"]["SHOPPER_READ_TOKEN"] == "r-1"
    assert services["demo"]["environment"]["SHOPPER_TOKEN"] == "w-1"
    assert services["grafana"]["environment"]["SHOPPER_READ_TOKEN"] == "r-1"


def test_readme_says_how_to_run_it_safely_with_either_compose() -> None:
    """The README gives both `docker compose` and `docker-compose`, and how to set the tokens
    and the bind address for a host others can reach."""
    readme = (ROOT / "README.md").read_text()
    assert "docker compose up --build" in readme
    assert "docker-compose up --build" in readme
    for variable in ("SHOPPER_WRITE_TOKEN", "SHOPPER_READ_TOKEN", "BIND_ADDRESS", ".env"):
        assert variable in readme, variable
