"""Shared fixtures: settings and an in-process client of the real app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.settings import Settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def settings() -> Settings:
    """Defaults, with no demo and no background noise."""
    return Settings(demo_control=True)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> TestClient[Any, Any]:
    """A test client of the full app built from `settings`."""
    return await aiohttp_client(create_app(settings))


def iso(moment: float | None = None) -> str:
    """An ISO 8601 UTC timestamp (now, or `moment` seconds since the epoch)."""
    when = datetime.now(UTC) if moment is None else datetime.fromtimestamp(moment, UTC)
    return when.isoformat()


def shopper(user_id: str = "shopper_1", **fields: Any) -> dict[str, Any]:
    """A minimal valid update, with overrides."""
    body: dict[str, Any] = {
        "userId": user_id,
        "userName": "Test Shopper",
        "timestamp": iso(),
        "isActive": True,
    }
    body.update(fields)
    return body
