"""No query freezes the service: backtracking-prone regexes answer at once, long queries time out.

The real exporter runs as its own process. Every regex below takes Python's backtracking `re`
minutes or more on its trigger line (that is how these shapes froze the service); under RE2 each
query answers with Loki's result at once, through query_range, the instant query and tail, while
/healthz and a scrape keep answering. The bound on their latency here only says "the loop was
not blocked"; the latency figure itself is bench/loki_pacing.py's (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import pytest

from support import RunningProcess, run_exporter

pytestmark = pytest.mark.integration

QUICK = 1.0
"""Seconds a query over a few dozen lines may take: RE2 needs milliseconds, `re` needed minutes."""
NOT_BLOCKED = 0.5
"""Seconds /healthz, a scrape or a push may take while queries run: far above a reply's cost on
a busy machine, far below a loop blocked by a query (which held it for the whole query)."""


@dataclass(frozen=True)
class Shape:
    """A catastrophic-backtracking shape: a line it matches and a line built to trigger it."""

    name: str
    pattern: str
    matching: str
    trigger: str
    in_line: tuple[bool, bool] = (True, False)
    """Whether `|~` keeps (matching, trigger): it searches the whole JSON line, not the text."""


SHAPES = [
    Shape("alternation under a star", "(a|aa)*c", "aac", "a" * 40),
    Shape("nested quantifiers", "(a+)+!", "aaa!", "a" * 40 + "?"),
    Shape("star of a star", "(a*)*!", "aa!", "a" * 40 + "?"),
    Shape("overlapping repeats", "(x+x+)+y", "xxxxy", "x" * 40),
    Shape("alternation with an optional", "(a|a?)+!", "aa!", "a" * 40 + "?"),
    Shape("bounded repeat of .*", "(.*a){12}!", "a" * 12 + "!", "a" * 40 + "?"),
    Shape(
        "words and spaces to the end",
        r"(\w+\s?)*$",
        "abcdefgh abcdefgh",
        "abcdefgh " * 6 + "!",
        in_line=(True, True),  # unanchored, it matches the empty string at the line's end
    ),
    Shape(
        "comma-separated fields",
        "^(.*?,){11}P",
        ",".join(map(str, range(1, 12))) + ",P",
        ",".join(map(str, range(40))),
    ),
    Shape(
        "digits to the end",
        r"^(\d+)*$",
        "12345",
        "1" * 40 + "x",
        in_line=(False, False),  # `^` is the JSON line's start, a `{`
    ),
]


def kind(shape: Shape) -> str:
    """The line type each shape's lines are pushed with: it picks them out of the log."""
    return f"shape{SHAPES.index(shape)}"


def push(base_url: str, streams: list[dict[str, Any]]) -> None:
    """Push plain lines through Loki's push API (they are kept in the event log)."""
    request = urllib.request.Request(
        base_url + "/loki/api/v1/push",
        data=orjson.dumps({"streams": streams}),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 204


@pytest.fixture(scope="module")
def shapes_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """The exporter, holding each shape's matching and trigger lines among plain noise."""
    with run_exporter(tmp_path_factory.mktemp("shapes")) as exporter:
        now = time.time_ns()
        streams = [
            {
                "stream": {"job": "app", "type": kind(shape)},
                "values": [[str(now), shape.matching], [str(now + 1), shape.trigger]],
            }
            for shape in SHAPES
        ]
        noise = [[str(now + 10 + i), f"noise line {i} aaaaaaaa"] for i in range(30)]
        streams.append({"stream": {"job": "app", "type": "noise"}, "values": noise})
        push(exporter.base_url, streams)
        yield exporter


@dataclass
class Heartbeat:
    """/healthz and /metrics asked in turn while queries run, with each answer's latency."""

    base_url: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"healthz": [], "scrape": []})

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            for name, path in (("healthz", "/healthz"), ("scrape", "/metrics")):
                started = time.perf_counter()
                async with session.get(self.base_url + path) as resp:
                    await resp.read()
                    assert resp.status == 200
                self.latencies[name].append(time.perf_counter() - started)
            await asyncio.sleep(0.005)

    def check(self) -> None:
        for name, seen in self.latencies.items():
            assert seen, f"no {name} answered while the queries ran"
            assert max(seen) < NOT_BLOCKED, f"{name} took {max(seen):.3f}s: the loop was blocked"


@pytest.fixture
async def heartbeat(shapes_log: RunningProcess) -> AsyncIterator[Heartbeat]:
    """A heartbeat running for the length of the test, checked at its end."""
    beat = Heartbeat(shapes_log.base_url)
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(beat.run(session))
        yield beat
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    beat.check()


async def timed_get(
    session: aiohttp.ClientSession, url: str, params: dict[str, str]
) -> tuple[int, Any, float]:
    """Status, body (JSON or text) and seconds taken of one GET."""
    started = time.perf_counter()
    async with session.get(url + "?" + urlencode(params)) as resp:
        raw = await resp.read()
        took = time.perf_counter() - started
        body = orjson.loads(raw) if resp.content_type == "application/json" else raw.decode()
        return resp.status, body, took


def texts(body: dict[str, Any]) -> set[str]:
    """The pushed texts of a streams result (each JSON line's `line` field)."""
    return {orjson.loads(line)["line"] for s in body["data"]["result"] for _, line in s["values"]}


def expected(shape: Shape, keeps: tuple[bool, bool]) -> set[str]:
    return {text for text, kept in zip((shape.matching, shape.trigger), keeps, strict=True) if kept}


def queries(shape: Shape) -> dict[str, tuple[str, set[str]]]:
    """The shape as a line filter (unanchored) and as a label filter (anchored), with what each
    keeps of its two lines."""
    pick = f'{{job="shopper-events"}} |= `"type":"{kind(shape)}"`'
    return {
        "line filter": (f"{pick} |~ `{shape.pattern}`", expected(shape, shape.in_line)),
        "label filter": (f"{pick} | json | line=~`{shape.pattern}`", {shape.matching}),
    }


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
async def test_backtracking_shapes_answer_at_once_with_lokis_result(
    shapes_log: RunningProcess, heartbeat: Heartbeat, shape: Shape
) -> None:
    """query_range, the instant query and tail each answer quickly with exactly the lines RE2
    matches, while /healthz and scrapes go on answering."""
    base = shapes_log.base_url + "/loki/api/v1"
    now = time.time_ns()
    window = {"start": str(now - 3_600 * 10**9), "end": str(now + 10**9)}
    async with aiohttp.ClientSession() as session:
        for mode, (query, kept) in queries(shape).items():
            status, body, took = await timed_get(
                session, base + "/query_range", {"query": query, "limit": "100", **window}
            )
            assert status == 200, (mode, body)
            assert took < QUICK, f"{mode} query_range took {took:.2f}s"
            assert texts(body) == kept, mode

            metric = f"sum(count_over_time({query} [1h]))"
            status, body, took = await timed_get(
                session, base + "/query", {"query": metric, "time": window["end"]}
            )
            assert status == 200, (mode, body)
            assert took < QUICK, f"{mode} instant query took {took:.2f}s"
            counted = [float(sample["value"][1]) for sample in body["data"]["result"]]
            assert counted == ([float(len(kept))] if kept else []), mode

            started = time.perf_counter()
            url = f"{base}/tail?query={quote(query)}&start={window['start']}"
            async with session.ws_connect(url) as ws:
                found: set[str] = set()
                if kept:
                    first = orjson.loads(await ws.receive_str(timeout=QUICK))
                    found = {
                        orjson.loads(line)["line"]
                        for s in first["streams"]
                        for _, line in s["values"]
                    }
                took = time.perf_counter() - started
            assert found == kept, mode
            assert took < QUICK, f"{mode} tail took {took:.2f}s to send its backlog"


async def test_a_refused_shape_is_lokis_400_everywhere(
    shapes_log: RunningProcess, heartbeat: Heartbeat
) -> None:
    """A backreference (RE2 has none) is refused with Go's words at its position: a 400 from
    query_range and the instant query, a closing reason from tail."""
    base = shapes_log.base_url + "/loki/api/v1"
    query = r'{job="shopper-events"} |~ `^(a+)+\1$`'
    words = "parse error at line 1, col 27: error parsing regexp: invalid escape sequence: `\\1`"
    async with aiohttp.ClientSession() as session:
        status, body, _ = await timed_get(session, base + "/query_range", {"query": query})
        assert (status, body) == (400, words)
        metric = f"count_over_time({query} [1m])"
        status, body, _ = await timed_get(session, base + "/query", {"query": metric})
        assert (status, body) == (400, words.replace("col 27", "col 43"))
        async with session.ws_connect(f"{base}/tail?query={quote(query)}") as ws:
            message = await ws.receive(timeout=QUICK)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert message.extra == words


BIG_LOG = 150_000
HEAVY = (
    '{job="shopper-events"} | json | logfmt'
    ' | line_format "{{.line}} {{.line}} {{.line}} {{.line}}"'
    ' | regexp "(?P<word>[a-z]+) (?P<number>[0-9]+)" | line=~"never.*seen"'
)
"""Parses every line of the big log three ways and keeps none: several seconds of work on a
quiet machine, so even a fast one cannot finish it inside the 1 s timeout."""


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """The exporter with a large synthetic log, a 1 s query timeout and one heavy-query slot."""
    args = (
        "--event-log-size", str(BIG_LOG),
        "--max-body-bytes", str(4 << 20),
        "--loki-query-timeout", "1",
        "--loki-max-concurrent-queries", "1",
    )  # fmt: skip
    with run_exporter(tmp_path_factory.mktemp("big"), *args) as exporter:
        now = time.time_ns() - BIG_LOG
        for batch in range(0, BIG_LOG, 10_000):
            values = [
                [str(now + i), f"order {i} for shopper {i % 977} in Austin, TX: 3 items"]
                for i in range(batch, batch + 10_000)
            ]
            push(exporter.base_url, [{"stream": {"job": "app", "type": "audit"}, "values": values}])
        yield exporter


async def test_a_long_query_times_out_while_pushes_are_taken(big_log: RunningProcess) -> None:
    """A log query and a metric query over the big log stop at --loki-query-timeout with Loki's
    504 words, while a pusher's updates keep being accepted without delay."""
    base = big_log.base_url
    pushed: list[tuple[int, float, float]] = []
    """(status, latency, when answered) of each push."""
    async with aiohttp.ClientSession() as session:

        async def pusher() -> None:
            n = 0
            while True:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                body = {
                    "userId": f"pusher_{n}",
                    "userName": "P",
                    "isActive": True,
                    "timestamp": stamp,
                }
                started = time.perf_counter()
                async with session.post(base + "/api/metrics", json=body) as resp:
                    await resp.read()
                    now = time.perf_counter()
                    pushed.append((resp.status, now - started, now))
                n += 1
                await asyncio.sleep(0.02)

        task = asyncio.create_task(pusher())
        spans: list[tuple[float, float]] = []
        try:
            for query in (HEAVY, f"sum(count_over_time({HEAVY} [1h]))"):
                started = time.perf_counter()
                status, body, took = await timed_get(
                    session, base + "/loki/api/v1/query_range", {"query": query, "step": "60"}
                )
                spans.append((started, started + took))
                assert status == 504, body
                assert body == (
                    "request timed out, decrease the duration of the request or add more label "
                    "matchers (prefer exact match over regex match) to reduce the amount of data "
                    "processed"
                )
                assert 1.0 <= took < 1.0 + QUICK, f"stopped after {took:.2f}s, not at 1s"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        for begin, end in spans:
            during = [p for p in pushed if begin < p[2] < end]
            assert len(during) >= 3, "pushes stalled while the query ran"
        assert all(status == 200 for status, _, _ in pushed)
        assert max(took for _, took, _ in pushed) < NOT_BLOCKED
        async with session.get(f"{base}/api/shoppers/pusher_{len(pushed) - 1}") as resp:
            assert resp.status == 200


async def test_heavy_queries_past_the_cap_get_429_and_light_ones_still_run(
    big_log: RunningProcess,
) -> None:
    """With its one heavy-query slot taken, the service answers another heavy query 429 with
    Retry-After (Loki's words), and still answers a light one."""
    base = big_log.base_url + "/loki/api/v1"
    async with aiohttp.ClientSession() as session:
        first = asyncio.create_task(timed_get(session, base + "/query_range", {"query": HEAVY}))
        await asyncio.sleep(0.3)  # well into its first second
        async with session.get(base + "/query_range?" + urlencode({"query": HEAVY})) as resp:
            assert resp.status == 429
            assert await resp.text() == "too many outstanding requests"
            assert int(resp.headers["Retry-After"]) >= 1
        status, body, _ = await timed_get(
            session, base + "/query", {"query": "vector(1)+vector(1)"}
        )
        assert status == 200, body
        assert body["data"]["result"][0]["value"][1] == "2"
        status, _, _ = await first
        assert status in {200, 504}  # done or stopped at the deadline, by the machine's speed
        # The slot is free again: the next heavy query runs rather than being refused 429.
        status, _, _ = await timed_get(session, base + "/query_range", {"query": HEAVY})
        assert status in {200, 504}
