"""Every HTTP error of a real exporter is JSON, with the right status and headers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from support import RunningProcess, http_request, run_exporter, shopper

pytestmark = pytest.mark.integration

TOKEN = "s3cret-write"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """One exporter with every limit small enough to reach from a test."""
    args = (
        "--write-token",
        TOKEN,
        "--body-timeout",
        "0.5",
        "--max-body-bytes",
        "2048",
        "--max-shoppers",
        "1",
        "--max-streams",
        "1",
    )
    with run_exporter(tmp_path_factory.mktemp("errors"), *args) as proc:
        yield proc


def assert_json_error(status: int, headers: dict[str, str], body: Any, expected: int) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith("application/json"), headers
    assert isinstance(body, dict), body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["message"], str)
    assert body["message"]


def test_404_for_a_path_that_does_not_exist(exporter: RunningProcess) -> None:
    """An unknown path answers 404 JSON, not aiohttp's plain text."""
    status, headers, body = http_request(exporter.base_url + "/no/such/path")
    assert_json_error(status, headers, body, 404)
    assert body["error"] == "not_found"


def test_404_for_an_unknown_shopper(exporter: RunningProcess) -> None:
    """An unknown shopper answers 404 JSON."""
    status, headers, body = http_request(exporter.base_url + "/api/shoppers/nobody")
    assert_json_error(status, headers, body, 404)


def test_405_names_the_allowed_methods(exporter: RunningProcess) -> None:
    """A wrong method answers 405 JSON with the Allow header."""
    url = exporter.base_url + "/api/summary"
    status, headers, body = http_request(url, b"{}", "POST", headers=AUTH)
    assert_json_error(status, headers, body, 405)
    assert body["error"] == "method_not_allowed"
    assert "GET" in headers["Allow"]
    assert "GET" in body["message"]


def test_401_asks_for_a_bearer_token(exporter: RunningProcess) -> None:
    """A push without the write token answers 401 JSON with WWW-Authenticate."""
    status, headers, body = http_request(exporter.base_url + "/api/metrics", shopper("a"))
    assert_json_error(status, headers, body, 401)
    assert headers["WWW-Authenticate"].startswith("Bearer")


def test_408_for_a_body_that_does_not_arrive(exporter: RunningProcess) -> None:
    """A body slower than --body-timeout answers 408 JSON."""
    host, port = exporter.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /api/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n[{"
        )
        started = time.monotonic()
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert time.monotonic() - started < 5
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"application/json" in head.lower()
    assert orjson.loads(payload)["error"] == "timeout"


def test_413_for_a_body_over_the_limit(exporter: RunningProcess) -> None:
    """A body over --max-body-bytes answers 413 JSON."""
    big = [shopper(f"u{i}", lastAction="x" * 150) for i in range(20)]
    status, headers, body = http_request(exporter.base_url + "/api/metrics", big, headers=AUTH)
    assert_json_error(status, headers, body, 413)


def test_415_for_a_form_body(exporter: RunningProcess) -> None:
    """A form-encoded body answers 415 JSON saying to send JSON."""
    status, headers, body = http_request(
        exporter.base_url + "/api/metrics",
        b"userId=a",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_json_error(status, headers, body, 415)
    assert "application/json" in body["message"]


def test_429_when_no_shopper_can_make_room(exporter: RunningProcess) -> None:
    """With the one tracked shopper online, a new shopper's body answers 429 with Retry-After."""
    url = exporter.base_url + "/api/metrics"
    http_request(url, shopper("first"), headers=AUTH)
    status, headers, body = http_request(url, shopper("second"), headers=AUTH)
    assert status == 429
    assert headers["Content-Type"].startswith("application/json")
    assert int(headers["Retry-After"]) > 0
    assert body["rejected"][0]["reason"] == "capacity"


def test_503_when_the_live_connections_are_full(exporter: RunningProcess) -> None:
    """Past --max-streams, a stream answers 503 JSON with Retry-After."""
    host, port = exporter.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as held:
        held.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.recv(4096).startswith(b"HTTP/1.1 200")
        status, headers, body = http_request(exporter.base_url + "/api/stream")
    assert_json_error(status, headers, body, 503)
    assert int(headers["Retry-After"]) > 0


def test_aiohttp_errors_are_json_without_tokens_too(tmp_path: Path) -> None:
    """Without tokens too, aiohttp's own errors (a WebSocket path fetched plainly, a bad
    method on a static file) answer JSON."""
    with run_exporter(tmp_path) as proc:
        status, headers, body = http_request(proc.base_url + "/ws")
        assert status >= 400
        assert_json_error(status, headers, body, status)
        status, headers, body = http_request(proc.base_url + "/static/app.js", b"x", "POST")
        assert_json_error(status, headers, body, 405)
