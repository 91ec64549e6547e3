"""Limits under abuse: live connections are capped; past the cap comes 503 with Retry-After."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from exporter.settings import Settings

from support import async_wait_until

Client = TestClient[Any, Any]


@pytest.fixture
def settings() -> Settings:
    return Settings(max_streams=2)


async def test_streams_past_the_cap_get_503(client: Client) -> None:
    """With two live connections held, a third SSE, WebSocket or tail gets 503 + Retry-After."""
    first = await client.ws_connect("/ws")
    second = await client.get("/api/stream")
    assert second.status == 200
    for path in ("/api/stream", "/ws", '/loki/api/v1/tail?query={job="shopper-events"}'):
        resp = await client.get(path)
        assert resp.status == 503, path
        assert resp.headers["Retry-After"] == "5"
        assert (await resp.json())["error"] == "too_many_streams"
    await first.close()
    second.close()

    async def room_again() -> bool:
        resp = await client.get("/api/stream")
        ok = resp.status == 200
        resp.close()
        return ok

    await async_wait_until(room_again, timeout=5)
