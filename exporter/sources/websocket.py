"""ws:// and wss:// sources: an upstream that sends shopper updates as WebSocket messages."""

from __future__ import annotations

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError
from websockets.frames import CloseCode

from exporter.sources.supervisor import SourceLink, source_name


class WebSocketSource:
    """Reads every message of an upstream WebSocket (any body shape the service accepts)."""

    transport = "ws"

    def __init__(self, url: str, max_message_bytes: int) -> None:
        self.url = url
        self.name = source_name(url)
        self.max_message_bytes = max_message_bytes

    async def run(self, link: SourceLink) -> None:
        """Connect, ingest until the upstream closes; pings detect a silently dead peer."""
        async with connect(
            self.url, max_size=self.max_message_bytes, open_timeout=10, proxy=None
        ) as ws:
            link.connected()
            try:
                async for message in ws:
                    link.ingest(message)
            except ConnectionClosedError as err:
                if err.sent is not None and err.sent.code == CloseCode.MESSAGE_TOO_BIG:
                    link.ingestor.refuse(self.transport, "too_large")
                raise
