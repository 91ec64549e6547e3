"""The demo's speed: set by --demo-speed, announced by a standalone demo, shown in /api/demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.cli import settings_from_args
from exporter.settings import Settings

from conftest import ClientFactory
from support import http_get, run_exporter, run_process, wait_until

Client = TestClient[Any, Any]


def test_demo_speed_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--demo-speed sets the speed, SHOPPER_DEMO_SPEED is its fallback, 1 is the default."""
    assert settings_from_args([]).demo_speed == 1
    assert settings_from_args(["--demo-speed", "12"]).demo_speed == 12
    monkeypatch.setenv("SHOPPER_DEMO_SPEED", "3.5")
    assert settings_from_args([]).demo_speed == 3.5


def test_demo_speed_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A speed of 0 (or past 1000) stops the service at start, naming the setting."""
    with pytest.raises(SystemExit):
        settings_from_args(["--demo-speed", "0"])
    assert "--demo-speed must be between 0.1 and 1000" in capsys.readouterr().err


async def test_demo_state_reports_the_speed(aiohttp_client: ClientFactory) -> None:
    """/api/demo says how fast the in-process demo runs."""
    client = await aiohttp_client(create_app(Settings(demo_speed=8)))
    state = await (await client.get("/api/demo")).json()
    assert state["speed"] == 8
    assert state["external"] is None


async def test_a_standalone_demo_announces_itself(client: Client) -> None:
    """POST /api/demo/announce makes /api/demo report the demo pushing from elsewhere."""
    resp = await client.post("/api/demo/announce", json={"speed": 10, "shoppers": 40})
    assert resp.status == 200
    state = await (await client.get("/api/demo")).json()
    assert state["external"] == {"speed": 10, "shoppers": 40}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"speed": 0}, "speed"), ({"speed": "fast"}, "speed"), ({"shoppers": -1}, "shoppers")],
)
async def test_a_bad_announcement_is_refused(
    client: Client, body: dict[str, Any], field: str
) -> None:
    """An announcement with a speed or size out of range is a 422 naming the field."""
    resp = await client.post("/api/demo/announce", json=body)
    assert resp.status == 422
    assert (await resp.json())["message"].startswith(field)


@pytest.mark.integration
def test_the_standalone_demo_tells_the_service_its_speed(tmp_path: Path) -> None:
    """`shopper-exporter demo --demo-speed 6` pushes traffic and the service learns its speed."""
    with run_exporter(tmp_path) as exporter:
        args = [sys.executable, "-m", "exporter", "demo", "--url", exporter.base_url]
        args += ["--shoppers", "5", "--demo-speed", "6", "--duration", "30"]
        with run_process(args, tmp_path / "demo.log") as demo:

            def announced() -> object:
                state = json.loads(http_get(exporter.base_url + "/api/demo")[1])
                return state["external"]

            assert wait_until(announced, timeout=15) == {"speed": 6, "shoppers": 5}
            assert "6× a real store's pace" in demo.log()
