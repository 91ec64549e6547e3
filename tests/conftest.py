"""Shared fixtures: settings, an in-process client of the real app, and headless Chromium."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.sync_api import Browser

from exporter.app import create_app
from exporter.settings import Settings

from browser_shop import chromium

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def settings() -> Settings:
    """Defaults, with no demo and no background noise."""
    return Settings(demo_control=True)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> TestClient[Any, Any]:
    """A test client of the full app built from `settings`."""
    return await aiohttp_client(create_app(settings))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, shared by the tests of a module."""
    with chromium() as browser:
        yield browser
