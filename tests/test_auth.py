"""Optional bearer tokens for writes and reads: 401 with WWW-Authenticate, constant-time checks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter.settings import Settings

from support import shopper

Client = TestClient[Any, Any]
WRITE, READ = "w-secret", "r-secret"


@pytest.fixture
def settings() -> Settings:
    return Settings(write_token=WRITE, read_token=READ)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_push_needs_the_write_token(client: Client) -> None:
    """A push without the write token is 401 with a WWW-Authenticate challenge."""
    body = orjson.dumps(shopper("a"))
    resp = await client.post("/api/metrics", data=body)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.post("/api/metrics", data=body, headers=bearer(READ))).status == 401
    assert (await client.post("/api/metrics", data=body, headers=bearer(WRITE))).status == 200


async def test_reads_need_a_token(client: Client) -> None:
    """Reads take the read token or the write token, and nothing else."""
    assert (await client.get("/api/summary")).status == 401
    assert (await client.get("/api/summary", headers=bearer("wrong"))).status == 401
    assert (await client.get("/api/summary", headers=bearer(READ))).status == 200
    assert (await client.get("/api/summary", headers=bearer(WRITE))).status == 200
    assert (await client.get(f"/api/summary?access_token={READ}")).status == 200


@pytest.mark.parametrize("path", ["/api/stream", "/loki/api/v1/labels", "/api/shoppers"])
async def test_streams_and_loki_are_reads(client: Client, path: str) -> None:
    """SSE and the Loki API are protected like any other read."""
    assert (await client.get(path)).status == 401


async def test_websocket_needs_the_write_token(client: Client) -> None:
    """The WebSocket (an ingest channel) needs the write token at the upgrade."""
    resp = await client.get("/ws")
    assert resp.status == 401
    ws = await client.ws_connect(f"/ws?access_token={WRITE}")
    await ws.close()


async def test_probes_page_and_metrics_stay_open(client: Client) -> None:
    """Probes, the page and /metrics (unless protected) need no token."""
    for path in ("/healthz", "/readyz", "/", "/metrics", "/api/openapi.json"):
        assert (await client.get(path)).status == 200, path


async def test_page_token_becomes_a_cookie(client: Client) -> None:
    """Opening /?token=… with a valid token lets the page's own requests through."""
    resp = await client.get(f"/?token={READ}")
    assert resp.status == 200
    assert (await client.get("/api/summary")).status == 200  # cookie sent by the client jar


async def test_protected_metrics(aiohttp_client: Any) -> None:
    """With --protect-metrics, /metrics needs the read token."""
    from exporter.app import create_app

    client = await aiohttp_client(create_app(Settings(read_token=READ, protect_metrics=True)))
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=bearer(READ))).status == 200


async def test_only_writes_protected(aiohttp_client: Any) -> None:
    """With only a write token, reads stay open."""
    from exporter.app import create_app

    client = await aiohttp_client(create_app(Settings(write_token=WRITE)))
    assert (await client.get("/api/summary")).status == 200
    assert (await client.delete("/api/shoppers/a")).status == 401


def test_tokens_never_shown_in_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token given by environment variable is not printed by --help."""
    from exporter.cli import _service_parser

    monkeypatch.setenv("SHOPPER_WRITE_TOKEN", "super-secret-value")
    assert "super-secret-value" not in _service_parser().format_help()


async def test_client_sends_its_token(aiohttp_server: Any) -> None:
    """MetricsClient (and so the demo's --token) pushes through a write-protected service."""
    from exporter.app import create_app
    from exporter.client import MetricsClient, PushError

    server = await aiohttp_server(create_app(Settings(write_token=WRITE)))
    base = f"http://127.0.0.1:{server.port}"
    async with MetricsClient(base, token=WRITE) as client:
        assert (await client.push_user_metric(shopper("tok")))["accepted"] == 1
        pusher = await client.connect_websocket()
        await pusher.close()
    async with MetricsClient(base) as anonymous:
        with pytest.raises(PushError):
            await anonymous.push_user_metric(shopper("anon"))


def test_empty_tokens_mean_open() -> None:
    """An empty token (an unset compose variable) leaves the service open."""
    assert Settings(write_token="", read_token="").write_token is None
