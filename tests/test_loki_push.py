"""POST /loki/api/v1/push as one more way in: records are ingested, other lines kept."""

from __future__ import annotations

import gzip
import time
from typing import Any

import orjson

from exporter.app import create_app
from exporter.keys import INGESTOR, STORE
from exporter.settings import Settings

from conftest import ClientFactory
from support import iso, shopper

PUSH = "/loki/api/v1/push"


def push_body(labels: dict[str, str], *lines: str | dict[str, Any]) -> dict[str, Any]:
    """A Loki JSON push of these lines (objects become JSON lines) into one stream."""
    values = []
    for line in lines:
        text = line if isinstance(line, str) else orjson.dumps(line).decode()
        values.append([str(time.time_ns()), text])
    return {"streams": [{"stream": labels, "values": values}]}


async def query_lines(client: Any, query: str) -> list[dict[str, Any]]:
    """Parsed lines of a log query over the last hour."""
    resp = await client.get("/loki/api/v1/query_range", params={"query": query, "limit": "1000"})
    assert resp.status == 200
    body = await resp.json()
    return [orjson.loads(v[1]) for s in body["data"]["result"] for v in s["values"]]


async def test_updates_and_events_are_applied_like_any_transport(
    aiohttp_client: ClientFactory,
) -> None:
    """A pushed shopper update lands in the store; a pushed explicit event is logged and moves
    the state (the order empties the cart)."""
    app = create_app(Settings())
    client = await aiohttp_client(app)
    update = shopper("pat", email="pat@example.com", itemsInCart=3, cartValue=21.0)
    order = {"type": "order_completed", "userId": "pat", "timestamp": iso(), "orderValue": 21.0}
    resp = await client.post(PUSH, json=push_body({"job": "shop"}, update, order))
    assert resp.status == 204
    shopper_view = await (await client.get("/api/shoppers/pat")).json()
    assert (shopper_view["userName"], shopper_view["itemsInCart"]) == ("Test Shopper", 0)
    assert "email" not in shopper_view
    assert app[STORE].counters.orders == 1
    assert app[INGESTOR].received["loki"] == 2
    types = {line["type"] for line in await query_lines(client, '{job="shopper-events"}')}
    assert {"session_started", "cart_add", "order_completed"} <= types


async def test_other_lines_are_kept_as_log_events(aiohttp_client: ClientFactory) -> None:
    """Plain lines stay in the log, typed by the stream's `type` label (or "log")."""
    client = await aiohttp_client(create_app(Settings()))
    body = push_body({"job": "ops", "type": "deploy"}, "deployed v2.1", '{"not": "a shopper"}')
    assert (await client.post(PUSH, json=body)).status == 204
    assert (await client.post(PUSH, json=push_body({"job": "ops"}, "plain text"))).status == 204
    found = await query_lines(client, '{job="shopper-events", type="other"}')
    kept = sorted((line["type"], line["line"], line["userId"]) for line in found)
    assert kept == [
        ("deploy", "deployed v2.1", ""),
        ("deploy", '{"not": "a shopper"}', ""),
        ("log", "plain text", ""),
    ]


async def test_gzip_push_is_accepted(aiohttp_client: ClientFactory) -> None:
    """Content-Encoding: gzip bodies are read like plain ones."""
    client = await aiohttp_client(create_app(Settings()))
    raw = gzip.compress(orjson.dumps(push_body({"job": "ops"}, "zipped line")))
    resp = await client.post(
        PUSH,
        data=raw,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status == 204
    assert [line["line"] for line in await query_lines(client, '{type="other"}')] == ["zipped line"]


async def test_numeric_timestamps_are_refused(aiohttp_client: ClientFactory) -> None:
    """As Loki documents, a number where the ns string belongs is a 400."""
    client = await aiohttp_client(create_app(Settings()))
    body = {"streams": [{"stream": {"job": "x"}, "values": [[1570818238000000000, "fizz"]]}]}
    resp = await client.post(PUSH, json=body)
    assert resp.status == 400
    assert "timestamp must be a string" in await resp.text()
    assert await query_lines(client, '{type="other"}') == []


async def test_malformed_bodies_are_400(aiohttp_client: ClientFactory) -> None:
    """Wrong shapes and non-JSON are refused with a reason, and counted."""
    app = create_app(Settings())
    client = await aiohttp_client(app)
    for bad in (b"not json", b'{"streams": {}}', b'{"streams": [{"values": [["1"]]}]}'):
        resp = await client.post(PUSH, data=bad, headers={"Content-Type": "application/json"})
        assert resp.status == 400, bad
    rejected = app[INGESTOR].rejected
    assert rejected[("loki", "not_json")] == 1
    assert rejected[("loki", "invalid")] == 2


async def test_protobuf_pushes_are_415(aiohttp_client: ClientFactory) -> None:
    """Only the JSON form is spoken; snappy protobuf gets 415."""
    client = await aiohttp_client(create_app(Settings()))
    resp = await client.post(
        PUSH, data=b"\x00\x01", headers={"Content-Type": "application/x-protobuf"}
    )
    assert resp.status == 415


async def test_limits_on_size_and_lines(aiohttp_client: ClientFactory) -> None:
    """Bodies over max_body_bytes and pushes over max_batch lines are 413."""
    app = create_app(Settings(max_body_bytes=2048, max_batch=3))
    client = await aiohttp_client(app)
    big = push_body({"job": "x"}, "y" * 4000)
    assert (await client.post(PUSH, json=big)).status == 413
    many = push_body({"job": "x"}, "a", "b", "c", "d")
    assert (await client.post(PUSH, json=many)).status == 413
    assert app[INGESTOR].rejected[("loki", "too_large")] == 1
    assert app[INGESTOR].rejected[("loki", "batch_too_large")] == 1
    ok = push_body({"job": "x"}, "a", "b", "c")
    assert (await client.post(PUSH, json=ok)).status == 204


async def test_invalid_records_are_named_and_the_rest_kept(aiohttp_client: ClientFactory) -> None:
    """A bad update is a 400 naming its line and field; valid lines still land."""
    client = await aiohttp_client(create_app(Settings()))
    bad = shopper("quinn", pageViews=-1)
    body = push_body({"job": "x"}, shopper("rose"), bad, "a note")
    resp = await client.post(PUSH, json=body)
    assert resp.status == 400
    text = await resp.text()
    assert "line 1: pageViews" in text
    assert (await client.get("/api/shoppers/rose")).status == 200
    assert (await client.get("/api/shoppers/quinn")).status == 404
    assert [line["line"] for line in await query_lines(client, '{type="other"}')] == ["a note"]
