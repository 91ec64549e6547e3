"""Whatever query text arrives, the Loki API answers 2xx or 4xx, never 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.app import create_app
from exporter.settings import Settings

from support import shopper

TOKENS = [
    "{", "}", "(", ")", "[", "]", ",", "|", "|=", "!=", "|~", "!~", "=", "=~", "==", ">", ">=",
    "<", "<=", "+", "-", "*", "/", "%", "^", "1", "0", "2.5", "1e3", "5m", "15s", "1h30m", "20MB",
    '"a"', '""', '"shopper-events"', "`x`", "``", '"(a+)+"', '"["', '"\\\\d+"', '"{{.type}}"',
    "job", "type", "activity", "userId", "__error__", "json", "logfmt", "regexp", "line_format",
    "label_format", "drop", "keep", "unwrap", "cartValue", "by", "without", "on", "ignoring",
    "bool", "and", "or", "unless", "offset", "sum", "avg", "min", "max", "count", "topk",
    "bottomk", "stddev", "vector", "rate", "count_over_time", "bytes_over_time", "bytes_rate",
    "sum_over_time", "avg_over_time", "quantile_over_time", "0.9",
    '{job="shopper-events"}', '{job="shopper-state"}', "[1m]", "| json", "| drop __error__",
    "|>", "!>", "pattern", "unpack", "decolorize", "--strict", "--keep-empty", "ip", '"10.0.0.0/8"',
    '"<_> <a>"', '"<a><b>"', "group_left", "group_right", "label_replace", "sort", "sort_desc",
    "approx_topk", "absent_over_time", "rate_counter", '"{{ if .a }}x{{ else }}y{{ end }}"',
    '"{{ printf \\"%d %s\\" 1 .a }}"', '"{{ .a | upper | trunc -2 }}"', '"{{ div 1 0 }}"',
    '"{{ regexReplaceAll \\"(\\" .a \\"x\\" }}"', '"{{ repeat 99999 .a }}"', "-5", "-1.5",
]  # fmt: skip

token_soup = st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join)
tight_soup = st.lists(st.sampled_from(TOKENS), max_size=25).map("".join)
any_text = st.text(max_size=200)
queries = st.one_of(token_soup, tight_soup, any_text)
PATHS = ["/loki/api/v1/query_range", "/loki/api/v1/query", "/loki/api/v1/labels"]


class Service:
    """One running service with data in it, driven from synchronous hypothesis tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: TestClient[Any, Any] = self.run(self._start())

    @staticmethod
    async def _start() -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(Settings())))
        await client.start_server()
        body = [shopper(f"z{i}", itemsInCart=i, cartValue=i * 2.5) for i in range(20)]
        await client.post("/api/metrics", json=body)
        return client

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def status(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        async def fetch() -> tuple[int, str]:
            async with self.client.get(path, params=params) as resp:
                return resp.status, await resp.text()

        result: tuple[int, str] = self.run(fetch())
        return result

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    """The service, started once for every generated query."""
    running = Service()
    yield running
    running.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=queries, path=st.sampled_from(PATHS))
def test_queries_never_cause_server_errors(service: Service, query: str, path: str) -> None:
    """Any query text gives a success or a client error with a message, never a 5xx."""
    params = {"query": query, "step": "60s"}
    if path == "/loki/api/v1/query_range":
        params["limit"] = "50"
    status, text = service.status(path, params)
    assert status < 500, text
    if status >= 400:
        assert text


@settings(max_examples=150, deadline=None)
@given(
    start=st.one_of(st.integers(), st.text(max_size=30)),
    step=st.one_of(st.text(max_size=12), st.floats(allow_nan=True).map(str)),
    limit=st.one_of(st.integers(), st.text(max_size=8)).map(str),
    direction=st.text(max_size=10),
)
def test_parameters_never_cause_server_errors(
    service: Service, start: Any, step: str, limit: str, direction: str
) -> None:
    """Odd timestamps, steps, limits and directions are 4xx at worst."""
    params = {
        "query": 'sum by (type) (count_over_time({job="shopper-events"}[1m]))',
        "start": str(start),
        "step": step,
        "limit": limit,
        "direction": direction,
    }
    status, text = service.status("/loki/api/v1/query_range", params)
    assert status < 500, text
    params["query"] = '{job=~"shopper-.*"} | json'
    status, text = service.status("/loki/api/v1/query_range", params)
    assert status < 500, text
