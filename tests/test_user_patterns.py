"""User input outside LogQL is never a pattern: filters and lookups compare it literally."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from exporter.api.live import FrameFilter
from exporter.eventlog import Frame

from support import shopper

Client = TestClient[Any, Any]
BACKTRACKING = "(a|aa)*c"


def frame_of(user_id: str) -> Frame:
    return Frame("user_metric", 1, data="{}", user_id=user_id)


def test_stream_user_filter_is_an_exact_match() -> None:
    """`/api/stream?user=` picks the one shopper with exactly that id, metacharacters and all."""
    wanted = FrameFilter.parse(None, BACKTRACKING)
    assert wanted.matches(frame_of(BACKTRACKING))
    assert not wanted.matches(frame_of("aac"))
    assert not wanted.matches(frame_of("c"))
    assert not wanted.matches(frame_of("x" + BACKTRACKING))


async def test_shopper_lookup_is_an_exact_match(client: Client) -> None:
    """`/api/shoppers/{userId}` finds an id with regex metacharacters as written, only that one."""
    resp = await client.post("/api/metrics", json=[shopper("aac"), shopper(BACKTRACKING)])
    assert resp.status == 200
    found = await client.get("/api/shoppers/" + "(a%7Caa)*c")
    assert found.status == 200
    assert (await found.json())["userId"] == BACKTRACKING
    missing = await client.get("/api/shoppers/" + "(a%7Cb)*c")
    assert missing.status == 404
