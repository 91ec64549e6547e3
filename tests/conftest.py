"""Shared fixtures: settings and an in-process client of the real app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
