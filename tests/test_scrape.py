"""/metrics answers in the encoding asked for, with the same exposition either way."""

from __future__ import annotations

import gzip
from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]


async def test_scrape_is_gzipped_when_asked(client: Client) -> None:
    """A scrape asking for gzip gets it, and it inflates to the plain scrape's families."""
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert plain.status == 200
    assert "Content-Encoding" not in plain.headers
    zipped = await client.get(
        "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert zipped.status == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    inflated = gzip.decompress(await zipped.read()).decode()

    def families(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("# TYPE")]

    assert families(inflated) == families(await plain.text())
    assert "shopper_active_shoppers" in inflated


async def test_openmetrics_is_served_when_asked(client: Client) -> None:
    """Asking for OpenMetrics gets OpenMetrics, ending in # EOF."""
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).rstrip().endswith("# EOF")
