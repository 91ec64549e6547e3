"""Process errors are clear: a busy port, a demo that cannot deliver, and what --help says."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, run_exporter

pytestmark = pytest.mark.integration


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`shopper-exporter ARGS` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    """Listening on a busy port prints one line naming the address, exits 2, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr == f"cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert "Traceback" not in result.stdout + result.stderr


def test_the_demo_exits_non_zero_when_it_cannot_deliver() -> None:
    """A demo pointed at a closed port says it cannot connect (no word of TLS for http://) and
    exits 1."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run("demo", "--url", f"http://127.0.0.1:{port}", "--duration", "1")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"cannot connect to http://127.0.0.1:{port}: connection refused" in output
    assert "could not deliver" in result.stderr
    assert not re.search(r"ssl|tls", output, re.IGNORECASE)


def test_the_demo_exits_zero_when_it_delivered(tmp_path: Path) -> None:
    """A demo that delivered its traffic exits 0."""
    with run_exporter(tmp_path) as proc:
        result = run("demo", "--url", proc.base_url, "--shoppers", "5", "--duration", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done, sent" in result.stdout


def test_help_shows_defaults_as_the_flag_takes_them() -> None:
    """--help: phrases comma-separated (not a Python list), `demo` in the usage line, and the
    write token's help names everything it protects."""
    text = " ".join(run("--help").stdout.split())
    assert "placed order, placed an order, order placed" in text
    assert "['" not in text
    usage = text.split("Live Shopper Metrics")[0]
    assert "shopper-exporter demo" in usage
    write = text.split("--write-token WRITE_TOKEN")[1].split("[env SHOPPER_WRITE_TOKEN]")[0]
    for protected in ("/api/metrics", "/api/events", "/ws", "Loki push", "/api/alerts"):
        assert protected in write, protected
    for protected in ("DELETE", "demo control"):
        assert protected in write, protected
    for env in ("SHOPPER_MAX_SHOPPERS", "SHOPPER_MAX_CLOCK_SKEW", "SHOPPER_BODY_TIMEOUT"):
        assert env in text, env
    assert "(default: 1000000)" in text
    assert "(default: 300)" in text


def test_every_option_is_in_the_readme_table() -> None:
    """Each option of --help, with its SHOPPER_* variable, has a row in the README's
    configuration table."""
    text = run("--help").stdout
    readme = (ROOT / "README.md").read_text()
    for flag in re.findall(r"^\s+(--[a-z][a-z-]+)", text, re.MULTILINE):
        if flag in ("--help", "--version"):
            continue
        assert f"`{flag}" in readme, flag
    for env in set(re.findall(r"SHOPPER_[A-Z_]+", text)):
        assert env in readme, env


def test_a_bad_setting_names_the_flag_and_what_it_must_be() -> None:
    """An impossible setting stops the service with the flag and its range, exit 2."""
    result = run("--max-shoppers", "0")
    assert result.returncode == 2
    assert "--max-shoppers must be at least 1" in result.stderr
