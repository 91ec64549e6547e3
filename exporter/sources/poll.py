"""poll+http:// and poll+https:// sources: GET a JSON body every poll interval (startPolling)."""

from __future__ import annotations

import asyncio

import aiohttp

from exporter.model import BodyError
from exporter.sources.supervisor import SourceError, SourceLink, source_name

REQUEST_TIMEOUT_SECONDS = 30.0


class PollSource:
    """Fetches `{"metrics": [...], "events": [...]}` (or any accepted shape) on an interval.

    An unchanged body (same ETag, answered 304) is not ingested again.
    """

    transport = "poll"

    def __init__(
        self, url: str, session: aiohttp.ClientSession, interval: float, max_body_bytes: int
    ) -> None:
        self.url = url.partition("+")[2]
        self.name = source_name(url)
        self.session = session
        self.interval = interval
        self.max_body_bytes = max_body_bytes
        self._etag: str | None = None

    async def run(self, link: SourceLink) -> None:
        """Poll until a poll fails (the failure ends the run; the supervisor retries)."""
        while True:
            await self.poll_once(link)
            await asyncio.sleep(self.interval)

    async def poll_once(self, link: SourceLink) -> None:
        headers = {"Accept": "application/json"}
        if self._etag:
            headers["If-None-Match"] = self._etag
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with self.session.get(self.url, headers=headers, timeout=timeout) as resp:
            if resp.status == 304:
                link.connected()
                link.delivered()
                return
            if resp.status != 200:
                raise SourceError(f"HTTP {resp.status}")
            raw = await self._read_limited(resp, link)
            etag = resp.headers.get("ETag")
        try:
            link.ingestor.ingest_bytes(raw, self.transport)
        except BodyError as err:
            raise SourceError(f"unreadable body: {err}") from None
        link.connected()
        link.delivered()
        self._etag = etag

    async def _read_limited(self, resp: aiohttp.ClientResponse, link: SourceLink) -> bytes:
        declared = resp.content_length
        chunks: list[bytes] = []
        size = 0
        if declared is None or declared <= self.max_body_bytes:
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > self.max_body_bytes:
                    break
                chunks.append(chunk)
            else:
                return b"".join(chunks)
        link.ingestor.refuse(self.transport, "too_large")
        raise SourceError(f"body over the {self.max_body_bytes}-byte limit")
