"""sse+http:// and sse+https:// sources: an upstream Server-Sent Events stream (connectSSE)."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import aiohttp

from exporter.sources.supervisor import SourceError, SourceLink, source_name

SILENCE_LIMIT_SECONDS = 300.0
"""A stream silent this long (no data, no keep-alive) is presumed dead and reopened."""

#: Event names whose data is ingested, and what a bare object in them is.
INGESTED = {"message": "metric", "user_metric": "metric", "metrics": "metric", "event": "event"}

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its name ("message" when unnamed), data, and the stream's last id."""

    type: str
    data: str
    last_event_id: str


class SseParser:
    """The SSE wire format (WHATWG HTML, "event stream interpretation"), fed chunk by chunk.

    Lines end in CRLF, LF or CR; `data` lines join with newlines; `id` takes effect when its
    event is dispatched, so an event cut off mid-way is asked for again on reconnect.
    """

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._after_cr = False
        self._started = False
        self._type = ""
        self._data: list[str] = []
        self._id = last_event_id

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by this chunk."""
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across chunks
        buf = self._buffer + text
        events: list[SseEvent] = []
        pos = 0
        while (end := _LINE_END.search(buf, pos)) is not None:
            self._line(buf[pos : end.start()], events)
            pos = end.end()
        self._buffer = buf[pos:]
        if text:
            self._after_cr = pos == len(buf) and buf.endswith("\r")
        return events

    def _line(self, line: str, events: list[SseEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)

    def _dispatch(self, events: list[SseEvent]) -> None:
        self.last_event_id = self._id
        if self._data:
            events.append(SseEvent(self._type or "message", "\n".join(self._data), self._id))
        self._type = ""
        self._data = []


class SseSource:
    """Follows an upstream SSE stream; reconnects send Last-Event-ID, so nothing is read twice.

    Data of `user_metric`, `metrics` and unnamed events is read as updates, `event` as explicit
    events; other event names (a `summary`, say) are skipped.
    """

    transport = "sse"

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.partition("+")[2]
        self.name = source_name(url)
        self.session = session
        self.last_event_id = ""

    async def run(self, link: SourceLink) -> None:
        """Read the stream until it ends or breaks."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=SILENCE_LIMIT_SECONDS
        )
        async with self.session.get(self.url, headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                raise SourceError(f"HTTP {resp.status}")
            if resp.content_type != "text/event-stream":
                raise SourceError(f"Content-Type {resp.content_type!r}, not text/event-stream")
            link.connected()
            parser = SseParser(self.last_event_id)
            async for chunk in resp.content.iter_any():
                for event in parser.feed(chunk):
                    kind = INGESTED.get(event.type)
                    if kind is not None:
                        link.ingest(event.data, kind)
                    else:
                        link.delivered()
                    self.last_event_id = event.last_event_id
                self.last_event_id = parser.last_event_id
