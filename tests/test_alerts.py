"""Alertmanager's webhook: firing and resolved alerts become events in the live stream."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]

PAYLOAD = {
    "version": "4",
    "status": "firing",
    "receiver": "default",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "ShopperTrafficSpike", "severity": "warning", "job": "x"},
            "annotations": {"summary": "Shopper traffic spike."},
            "startsAt": "2026-11-24T18:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "ShopperIngestStalled", "severity": "critical"},
            "annotations": {},
            "startsAt": "2026-11-24T17:00:00Z",
            "endsAt": "2026-11-24T17:30:00Z",
        },
    ],
}


async def test_alerts_join_the_event_stream(client: Client) -> None:
    """Each alert of a webhook call is logged as an `alert` event with its summary."""
    resp = await client.post("/api/alerts", json=PAYLOAD)
    assert resp.status == 200
    assert (await resp.json())["accepted"] == 2
    import time

    now = time.time_ns()
    query = '{job="shopper-events", type="alert"}'
    resp = await client.get(
        "/loki/api/v1/query_range", params={"query": query, "start": now - 10**11, "end": now}
    )
    body = await resp.text()
    assert "firing: Shopper traffic spike." in body
    assert "resolved: ShopperIngestStalled" in body
    metrics = await (await client.get("/metrics")).text()
    assert 'shopper_events_total{event="alert"} 2.0' in metrics


async def test_bad_webhook_bodies(client: Client) -> None:
    """A body without an alerts array is refused by field."""
    resp = await client.post("/api/alerts", json={"alerts": "no"})
    assert resp.status == 422
    assert (await resp.json())["message"].startswith("alerts:")
    assert (await client.post("/api/alerts", data=b"{")).status == 400
