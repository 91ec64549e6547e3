"""Privacy: pseudonymised ids and names never leave as sent, and erasure works through them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter.settings import Settings

from support import brief_example, iso

Client = TestClient[Any, Any]


@pytest.fixture
def settings() -> Settings:
    return Settings(pseudonym_salt="pepper")


async def test_ids_and_names_are_pseudonymised(client: Client) -> None:
    """With a salt, the shopper's id and name appear nowhere; a stable pseudonym does."""
    await client.post("/api/metrics", data=orjson.dumps(brief_example()))
    order = {"type": "order_completed", "userId": "shopper_123", "timestamp": iso()}
    await client.post("/api/events", data=orjson.dumps(order))
    listing = await (await client.get("/api/shoppers")).json()
    [view] = listing["shoppers"]
    assert view["userId"].startswith("s_")
    assert view["userName"].startswith("Shopper ")
    for path in ("/api/shoppers", f"/api/shoppers/{view['userId']}/events", "/metrics"):
        body = await (await client.get(path)).text()
        assert "shopper_123" not in body, path
        assert "Sarah" not in body, path
        assert "sarah@email.com" not in body, path
    events = await (await client.get(f"/api/shoppers/{view['userId']}/events")).json()
    assert {e["type"] for e in events["events"]} >= {"order_completed", "session_started"}


async def test_lookup_and_erase_by_original_id(client: Client) -> None:
    """The producer's own id still finds and erases the shopper."""
    await client.post("/api/metrics", data=orjson.dumps(brief_example()))
    resp = await client.get("/api/shoppers/shopper_123")
    assert resp.status == 200
    assert (await resp.json())["userId"].startswith("s_")
    assert (await client.delete("/api/shoppers/shopper_123")).status == 204
    assert (await client.get("/api/shoppers/shopper_123")).status == 404
