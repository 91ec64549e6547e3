"""CORS for pages on other origins: preflights, headers on allowed replies only, foreign writes
and /ws refused, `*` refused with tokens, and the browser client served at /client/."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.cli import settings_from_args
from exporter.settings import Settings

from browser_shop import CLIENT
from conftest import ClientFactory
from support import shopper

Client = TestClient[Any, Any]
SHOP = "https://shop.example"
STRANGER = "https://elsewhere.example"
TOKEN = "secret-write-token"


@pytest.fixture
def settings() -> Settings:
    return Settings(cors_origins=(SHOP,))


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


@pytest.mark.parametrize("path", ["/api/metrics", "/api/events", "/api/stream", "/client/x"])
async def test_preflight_from_a_listed_origin_allows_json_and_the_token(
    client: Client, path: str
) -> None:
    """A listed origin's preflight gets 204 allowing POST, Content-Type and Authorization."""
    reply = await client.options(path, headers=preflight(SHOP))
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in reply.headers["Access-Control-Allow-Methods"]
    allowed = reply.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert int(reply.headers["Access-Control-Max-Age"]) >= 60
    assert reply.headers["Vary"] == "Origin"


async def test_preflight_from_another_origin_gets_no_cors_headers(client: Client) -> None:
    """An origin not listed gets 403 and no Access-Control-* header."""
    reply = await client.options("/api/metrics", headers=preflight(STRANGER))
    assert reply.status == 403
    assert (await reply.json())["error"] == "origin_not_allowed"
    assert not [name for name in reply.headers if name.lower().startswith("access-control")]


async def test_listed_origin_reads_and_pushes_with_cors_headers(client: Client) -> None:
    """Replies to a listed origin carry Access-Control-Allow-Origin; others' do not."""
    pushed = await client.post("/api/metrics", json=shopper(), headers={"Origin": SHOP})
    assert pushed.status == 200
    assert pushed.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Retry-After" in pushed.headers["Access-Control-Expose-Headers"]
    read = await client.get("/api/summary", headers={"Origin": STRANGER})
    assert read.status == 200
    assert "Access-Control-Allow-Origin" not in read.headers
    assert read.headers["Vary"] == "Origin"
    plain = await client.get("/api/summary")
    assert "Access-Control-Allow-Origin" not in plain.headers


async def test_a_write_from_an_origin_not_listed_is_refused_and_not_applied(
    client: Client,
) -> None:
    """A POST bearing a foreign Origin (a plain-text one needs no preflight) is 403; nothing
    is applied. Same-origin pages and clients without Origin still push."""
    body = '{"userId": "x", "userName": "X", "timestamp": "2026-01-01T00:00:00Z", "isActive": true}'
    refused = await client.post(
        "/api/metrics", data=body, headers={"Origin": STRANGER, "Content-Type": "text/plain"}
    )
    assert refused.status == 403
    assert (await (await client.get("/api/shoppers")).json())["total"] == 0

    own = f"http://{client.host}:{client.port}"
    assert (await client.post("/api/metrics", json=shopper("a"), headers={"Origin": own})).ok
    assert (await client.post("/api/metrics", json=shopper("b"))).ok
    assert (await (await client.get("/api/shoppers")).json())["total"] == 2


async def test_the_live_stream_carries_cors_headers(client: Client) -> None:
    """The SSE stream, whose headers go out before it ends, has them for a listed origin."""
    async with client.get("/api/stream", headers={"Origin": SHOP}) as stream:
        assert stream.status == 200
        assert stream.headers["Access-Control-Allow-Origin"] == SHOP


async def test_the_client_files_are_served_with_cors(client: Client) -> None:
    """/client/metrics-service.js and .d.ts are clients/js's files, for listed origins too."""
    for name, kind in (("metrics-service.js", "javascript"), ("metrics-service.d.ts", "text")):
        reply = await client.get(f"/client/{name}", headers={"Origin": SHOP})
        assert reply.status == 200
        assert kind in reply.headers["Content-Type"]
        assert reply.headers["Access-Control-Allow-Origin"] == SHOP
        assert await reply.read() == (CLIENT / name).read_bytes()
    assert (await client.get("/client/other.js")).status == 404


async def test_websocket_checks_the_origin(client: Client) -> None:
    """/ws accepts a listed origin, its own origin and clients without Origin; others get 403."""
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": STRANGER})
    assert refused.value.status == 403
    own = f"http://{client.host}:{client.port}"
    for headers in ({"Origin": SHOP}, {"Origin": own}, {}):
        ws = await client.ws_connect("/ws", headers=headers)
        await ws.send_json(shopper())
        assert (await ws.receive_json())["type"] == "ack"
        await ws.close()


async def test_any_origin_with_star(aiohttp_client: ClientFactory) -> None:
    """`*` allows every origin (answered `*`), on pushes and on /ws."""
    client = await aiohttp_client(create_app(Settings(cors_origins=("*",))))
    reply = await client.options("/api/metrics", headers=preflight(STRANGER))
    assert (reply.status, reply.headers["Access-Control-Allow-Origin"]) == (204, "*")
    pushed = await client.post("/api/metrics", json=shopper(), headers={"Origin": STRANGER})
    assert (pushed.status, pushed.headers["Access-Control-Allow-Origin"]) == (200, "*")
    ws = await client.ws_connect("/ws", headers={"Origin": STRANGER})
    await ws.close()


async def test_token_refusals_keep_cors_headers_and_client_stays_open(
    aiohttp_client: ClientFactory,
) -> None:
    """With tokens, the preflight needs none, a 401 is readable by the listed page, and the
    client files need no token."""
    client = await aiohttp_client(
        create_app(Settings(cors_origins=(SHOP,), write_token=TOKEN, read_token="r"))
    )
    assert (await client.options("/api/metrics", headers=preflight(SHOP))).status == 204
    refused = await client.post("/api/metrics", json=shopper(), headers={"Origin": SHOP})
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == SHOP
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]
    assert (await client.get("/client/metrics-service.js")).status == 200


def test_star_with_tokens_is_refused_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    """`--cors-origins '*'` with a token stops start-up with the reason."""
    with pytest.raises(SystemExit) as stopped:
        settings_from_args(["--cors-origins", "*", "--write-token", TOKEN])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--cors-origins '*' cannot be combined with --write-token or --read-token" in error


def test_origins_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHOPPER_CORS_ORIGINS is comma-separated; flags repeat; values are normalised origins."""
    monkeypatch.setenv("SHOPPER_CORS_ORIGINS", "https://A.example/, http://localhost:8080")
    assert settings_from_args([]).cors_origins == ("https://a.example", "http://localhost:8080")
    monkeypatch.delenv("SHOPPER_CORS_ORIGINS")
    both = settings_from_args(["--cors-origins", SHOP, "--cors-origins", "http://b:1,http://c:2"])
    assert both.cors_origins == (SHOP, "http://b:1", "http://c:2")
    assert settings_from_args([]).cors_origins == ()


@pytest.mark.parametrize(
    "value", ["shop.example", "https://shop.example/path", "ftp://shop.example", "null"]
)
def test_a_value_that_is_no_origin_is_refused(value: str) -> None:
    """Each --cors-origins value must be scheme://host[:port]; the error names it."""
    with pytest.raises(ValueError, match="is not an origin") as refused:
        Settings(cors_origins=(value,))
    assert repr(value) in str(refused.value)
