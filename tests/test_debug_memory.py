"""The allocation census: off by default, behind the write token, and telling sites, collector
counts and the project's objects apart, in process and in a real exporter traced from start."""

from __future__ import annotations

import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from exporter.api import debug
from exporter.app import create_app
from exporter.cli import settings_from_args
from exporter.keys import STATUS
from exporter.settings import Settings

from support import http_request, run_exporter, shopper

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]
WRITE, READ = "w-secret", "r-secret"


async def census_client(aiohttp_client: ClientFactory, **settings: Any) -> Client:
    """A client of the full app run with --debug-memory (and whatever else is given)."""
    return await aiohttp_client(create_app(Settings(debug_memory=True, **settings)))


async def test_the_census_is_off_by_default(client: Client) -> None:
    """Without --debug-memory there is no /debug/memory (404) and nothing is traced."""
    assert (await client.get("/debug/memory")).status == 404
    assert not tracemalloc.is_tracing()


async def test_the_census_counts_sites_collections_and_the_projects_objects(
    aiohttp_client: ClientFactory,
) -> None:
    """A census lists at most `top` sites as file:line with bytes and blocks, the collector's
    generations, and every shopper pushed among the objects of the project's types."""
    client = await census_client(aiohttp_client)
    pushed = [shopper(f"census_{i}") for i in range(50)]
    resp = await client.post("/api/metrics", data=orjson.dumps(pushed))
    assert resp.status == 200
    resp = await client.get("/debug/memory?top=5")
    assert resp.status == 200
    body = await resp.json()
    assert body["tracing"] is True
    assert tracemalloc.is_tracing()
    assert 1 <= len(body["sites"]) <= 5
    for site in body["sites"]:
        path, _, line = site["site"].rpartition(":")
        assert path
        assert line.isdigit()
        assert site["bytes"] > 0
        assert site["blocks"] > 0
    assert [s["bytes"] for s in body["sites"]] == sorted(
        (s["bytes"] for s in body["sites"]), reverse=True
    )
    assert body["objects"]["exporter.shopper.Shopper"] >= 50
    assert len(body["gc"]["generations"]) == 3
    assert body["gc"]["garbage"] == 0
    assert body["traced"]["current"] > 0
    assert body["rss"] > 0


@pytest.mark.parametrize("top", ["-1", "abc", "100001"])
async def test_a_bad_top_is_refused_by_name(aiohttp_client: ClientFactory, top: str) -> None:
    """`top` out of range or not a number is a 422 naming it."""
    client = await census_client(aiohttp_client)
    resp = await client.get(f"/debug/memory?top={top}")
    assert resp.status == 422
    assert (await resp.json())["message"].startswith("top:")


async def test_the_census_needs_the_write_token(aiohttp_client: ClientFactory) -> None:
    """The census is an operator's endpoint: the read token is not enough, the write token is."""
    client = await census_client(aiohttp_client, write_token=WRITE, read_token=READ)
    assert (await client.get("/debug/memory")).status == 401
    headers = {"Authorization": f"Bearer {READ}"}
    assert (await client.get("/debug/memory", headers=headers)).status == 401
    headers = {"Authorization": f"Bearer {WRITE}"}
    assert (await client.get("/debug/memory?top=1", headers=headers)).status == 200


def test_the_flag_and_its_variable_turn_the_census_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """--debug-memory and SHOPPER_DEBUG_MEMORY=true each set it; it is off otherwise."""
    assert settings_from_args([]).debug_memory is False
    assert settings_from_args(["--debug-memory"]).debug_memory is True
    monkeypatch.setenv("SHOPPER_DEBUG_MEMORY", "true")
    assert settings_from_args([]).debug_memory is True


@pytest.mark.integration
def test_a_real_exporter_is_traced_from_start(tmp_path: Path) -> None:
    """`python -m exporter --debug-memory` traces the service's own allocations, naming each
    site from its import root (`exporter/...`, never an absolute path)."""
    with run_exporter(tmp_path, "--debug-memory") as exporter:
        status, _, body = http_request(exporter.base_url + "/debug/memory?top=0")
    assert status == 200, body
    sites = [s["site"] for s in body["sites"]]
    assert any(site.startswith("exporter/") for site in sites)
    assert not any(site.startswith(str(Path.cwd())) for site in sites if "exporter/" in site)
    assert body["objects"]["exporter.store.ShopperStore"] == 1


async def test_under_a_busy_writer_the_census_leaves_objects_uncounted(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a snapshot writer stays at work past the wait, the census still answers (sites,
    collector counts) but walks no object: that would copy the pages the writer shares."""
    monkeypatch.setattr(debug, "WRITER_WAIT", 0.3)
    client = await census_client(aiohttp_client)
    client.server.app[STATUS].gc.writer_at_work = lambda: True
    resp = await client.get("/debug/memory?top=3")
    assert resp.status == 200
    body = await resp.json()
    assert body["objects"] is None
    assert body["commonObjects"] is None
    assert len(body["sites"]) == 3
