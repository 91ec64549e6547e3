"""Three replicas behind real HAProxy, read by real Prometheus as one store.

Three exporters run with --shard i/3 and a --state-file, HAProxy runs deploy/haproxy.cfg in front
of them, and Prometheus scrapes them with prometheus/prometheus.scale.yml (its targets replaced by
the test's ports) beside one unsharded reference exporter. Seeded demo traffic goes through the
proxy (the Python client naming each request's shard) and, the very same records, straight to
the reference. Every dashboard query and recording rule is then evaluated by Prometheus for the
replicas and for the reference, and the answers compared.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_dashboards import prometheus_targets
from test_prometheus_rules import RULE_FILES, alert_rules, load_rules

from exporter.client import MetricsClient
from exporter.demo import DemoGenerator
from exporter.sharding import SHARD_HEADER, shard_of

from support import (
    ROOT,
    RunningProcess,
    SseClient,
    async_wait_until,
    free_port,
    http_get,
    http_request,
    require_binary,
    run_exporter,
    run_haproxy,
    run_process,
    shopper,
    wait_until,
)

pytestmark = pytest.mark.integration

COUNT = 3
JOB, REFERENCE = "shopper-exporter", "shopper-reference"
SCALE_CONFIG = ROOT / "prometheus" / "prometheus.scale.yml"
# Nobody goes offline or is forgotten while the test runs: sweeps at different moments in
# different processes would make the gauges differ for reasons that are no part of sharding.
SETTINGS = ("--active-window", "3600", "--retention", "7200", "--snapshot-interval", "1")
# Every range window is widened to an hour for the comparison, so each covers the whole test
# from the counters' first zero samples however slow the machine (summing across replicas does
# not depend on a window's length).
WINDOW = "1h"
# Each target is scraped at its own phase, so rate() and increase() extrapolate each replica's
# last sample to the window's end by its own fraction of a scrape interval (1 s here) over a
# sampled span of a minute or more: at most about 2% apart. Everything else is compared exactly.
RANGE_TOLERANCE = 0.03
# Recorded from a day of history: a fresh Prometheus has none.
NEEDS_HISTORY = {"job_ago", "usual_max", "usual_min"}
SEED, SHOPPERS, SPEED, STEP = 29, 60, 20.0, 0.5

Records = tuple[list[dict[str, Any]], list[dict[str, Any]]]


@dataclass
class Cluster:
    """The running processes, and the traffic sent so far."""

    tmp: Path
    stack: ExitStack
    ports: list[int]
    replicas: list[RunningProcess] = field(default_factory=list)
    servers: dict[str, RunningProcess] = field(default_factory=dict)
    """The reference exporter, the proxy and Prometheus, by name."""
    generator: DemoGenerator = field(
        default_factory=lambda: DemoGenerator(SHOPPERS, SEED, speed=SPEED)
    )
    clock: float = field(default_factory=lambda: time.time() - 200)
    """Store time of the next tick: well in the past, so every record is older than now."""
    sent: int = 0
    """Records sent to the reference (and, as many, through the proxy)."""

    @property
    def reference(self) -> RunningProcess:
        return self.servers["reference"]

    @property
    def proxy(self) -> RunningProcess:
        return self.servers["proxy"]

    @property
    def prometheus(self) -> RunningProcess:
        return self.servers["prometheus"]

    def start_replica(self, index: int) -> RunningProcess:
        state = self.tmp / f"replica-{index}.state"
        args = ("--shard", f"{index}/{COUNT}", "--state-file", str(state), *SETTINGS)
        running = self.stack.enter_context(run_exporter(self.tmp, *args, port=self.ports[index]))
        if index < len(self.replicas):
            self.replicas[index] = running
        else:
            self.replicas.append(running)
        return running

    def traffic(self, seconds: float) -> list[Records]:
        """The generator's next `seconds` of (simulated, already past) store time."""
        ticks = []
        for _ in range(int(seconds / STEP)):
            ticks.append(self.generator.tick(self.clock))
            self.clock += STEP
        return [t for t in ticks if t[0] or t[1]]

    def promql(self, expr: str) -> list[dict[str, Any]]:
        """Prometheus' instant answer at now."""
        query = urllib.parse.urlencode({"query": expr, "time": f"{time.time():.3f}"})
        status, body = http_get(f"{self.prometheus.base_url}/api/v1/query?{query}", timeout=10)
        answer = json.loads(body)
        assert status == 200, answer
        return list(answer["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.promql(expr)
        return float(result[0]["value"][1]) if result else None


def expand(expr: str, job: str) -> str:
    """A dashboard query or rule expression for job `job`, every instance, hour-long windows."""
    expr = (
        expr.replace("$__rate_interval", WINDOW)
        .replace("$__range", WINDOW)
        .replace("$__auto", "1m")
        .replace("$job", job)
        .replace("$instance", ".*")
        .replace(f'job="{JOB}"', f'job="{job}"')
    )
    return re.sub(r"\[\d+[smhd]\]", f"[{WINDOW}]", expr)


def _prometheus_config(cluster_ports: list[int], reference_port: int, rules: Path) -> str:
    """The scaled stack's Prometheus config with the test's addresses, a 1 s rhythm, no
    Alertmanager, and the reference exporter as a job of its own."""
    config = yaml.safe_load(SCALE_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config.pop("alerting")
    config["rule_files"] = [str(p) for p in RULE_FILES] + [str(rules)]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    assert len(job["static_configs"][0]["targets"]) == COUNT
    job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in cluster_ports]}]
    reference = {
        "job_name": REFERENCE,
        "static_configs": [{"targets": [f"127.0.0.1:{reference_port}"]}],
    }
    config["scrape_configs"].append(reference)
    return str(yaml.safe_dump(config))


def _short_rules(path: Path) -> Path:
    """ShopperExporterDown as the repo writes it, with `for` shortened to one second."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "ShopperExporterDown"]
    rule = {**rule, "for": "1s"}
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "short", "interval": "1s", "rules": [rule]}]})
    )
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three sharded replicas, HAProxy, the reference exporter and Prometheus, all up."""
    prometheus_bin = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("cluster")
    prometheus_port, reference_port = free_port(), free_port()
    with ExitStack() as stack:
        cluster = Cluster(tmp, stack, [free_port() for _ in range(COUNT)])
        for index in range(COUNT):
            cluster.start_replica(index)
        servers = cluster.servers
        servers["reference"] = stack.enter_context(
            run_exporter(tmp, *SETTINGS, port=reference_port)
        )
        servers["proxy"] = stack.enter_context(run_haproxy(tmp, cluster.ports))
        config = tmp / "prometheus.yml"
        short = _short_rules(tmp / "short.yml")
        config.write_text(_prometheus_config(cluster.ports, reference_port, short))
        servers["prometheus"] = stack.enter_context(
            run_process(
                [
                    prometheus_bin,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                ],
                tmp / "prometheus.log",
                f"http://127.0.0.1:{prometheus_port}",
                "/-/ready",
                timeout=60,
            )
        )

        # The counters' zero samples first: rate() and increase() then see every record.
        def scraped_twice() -> bool:
            up = cluster.value(f'count(up{{job=~"{JOB}|{REFERENCE}"}} == 1)')
            samples = cluster.value("min(count_over_time(shopper_orders_total[1h]))")
            return up == COUNT + 1 and (samples or 0) >= 2

        wait_until(scraped_twice, timeout=60, interval=0.5)
        yield cluster


async def _send(
    cluster: Cluster, client: MetricsClient, batches: list[Records]
) -> list[dict[str, Any]]:
    """Send batches through the proxy client and, the same records, to the reference."""
    reports = []
    async with MetricsClient(cluster.reference.base_url) as reference:
        for metrics, events in batches:
            reports.append(await client.push_batch(metrics, events))
            await reference.push_batch(metrics, events)
            cluster.sent += len(metrics) + len(events)
    return reports


def _received(cluster: Cluster, job: str) -> float | None:
    return cluster.value(f'sum(shopper_updates_received_total{{job="{job}"}})')


def _wait_scraped(cluster: Cluster) -> None:
    """Until Prometheus holds every record sent, for the replicas and for the reference."""
    wait_until(
        lambda: _received(cluster, JOB) == _received(cluster, REFERENCE) == cluster.sent,
        timeout=60,
        interval=0.5,
    )


def _key(series: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    labels = {k: v for k, v in series["metric"].items() if k not in ("job", "instance")}
    return tuple(sorted(labels.items()))


def _answers(cluster: Cluster, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {_key(s): float(s["value"][1]) for s in cluster.promql(expr)}


def _differ(a: float, b: float, ranged: bool) -> bool:
    if math.isnan(a) and math.isnan(b):
        return False
    if not ranged:
        # Exact, but for the last bits of float sums that add the same terms in another order.
        return abs(a - b) > 1e-9 * max(abs(a), abs(b), 1.0)
    return abs(a - b) > RANGE_TOLERANCE * max(abs(a), abs(b), 1e-9)


def _compare(cluster: Cluster, name: str, ours: str, theirs: str, ranged: bool) -> list[str]:
    """What differs between the replicas' answer and the reference's."""
    mine, reference = _answers(cluster, ours), _answers(cluster, theirs)
    if set(mine) != set(reference):
        return [f"{name}: series {sorted(mine)} against {sorted(reference)}"]
    return [
        f"{name} {dict(key)}: {mine[key]} against {reference[key]}"
        for key in mine
        if _differ(mine[key], reference[key], ranged)
    ]


def _per_replica(expr: str) -> bool:
    """Panels about the replicas themselves: one line each (by instance), or counting them."""
    return (
        bool(re.search(r"by \([^)]*instance", expr))
        or re.search(r"\b(up|shopper_exporter_build_info)\{", expr) is not None
    )


def _kpi_queries() -> list[tuple[str, str]]:
    found = []
    for uid, panel, target in prometheus_targets():
        if not _per_replica(target["expr"]):
            found.append((f"{uid}/{panel['title']}/{target['refId']}", target["expr"]))
    return found


def _rule_queries() -> list[tuple[str, str]]:
    """Every recording rule's expression (those built on a day of history left out)."""
    return [
        (r["record"], r["expr"])
        for r in load_rules()
        if "record" in r and not any(part in r["record"] for part in NEEDS_HISTORY)
    ]


def _mismatches(cluster: Cluster) -> list[str]:
    found = []
    for name, expr in _kpi_queries() + _rule_queries():
        ranged = "rate(" in expr or "increase(" in expr
        found += _compare(cluster, name, expand(expr, JOB), expand(expr, REFERENCE), ranged)
    return found


def _assert_read_as_one(cluster: Cluster) -> None:
    _wait_scraped(cluster)
    try:
        wait_until(lambda: not _mismatches(cluster), timeout=60, interval=1)
    except AssertionError:
        raise AssertionError("\n".join(_mismatches(cluster))) from None


def _tracked_by(cluster: Cluster, user_id: str) -> list[int]:
    path = "/api/shoppers/" + urllib.parse.quote(user_id, safe="")
    return [i for i, r in enumerate(cluster.replicas) if http_get(r.base_url + path)[0] == 200]


def test_seeded_traffic_through_the_proxy_reads_as_one_exporter(cluster: Cluster) -> None:
    """Every shopper is tracked by exactly one replica, its owner, none refused; Prometheus'
    sum of every dashboard KPI and recording rule equals the unsharded exporter's."""
    batches = cluster.traffic(60)

    async def run() -> list[dict[str, Any]]:
        async with MetricsClient(cluster.proxy.base_url, shards=COUNT) as client:
            return await _send(cluster, client, batches)

    reports = asyncio.run(run())
    assert all(r["rejected"] == [] and r["queued"] == 0 for r in reports), reports[:3]
    users = {m["userId"] for metrics, _ in batches for m in metrics}
    assert len(users) >= SHOPPERS
    for user in users:
        assert _tracked_by(cluster, user) == [shard_of(user, COUNT)], user
    assert _kpi_queries()
    assert _rule_queries()
    _assert_read_as_one(cluster)


def test_per_replica_panels_show_one_line_per_replica(cluster: Cluster) -> None:
    """Exporter-health panels grouped by instance show each of the three replicas."""
    grouped = [
        t["expr"] for _, _, t in prometheus_targets() if re.search(r"by \(instance", t["expr"])
    ]
    assert grouped
    for expr in grouped:
        instances = {s["metric"]["instance"] for s in cluster.promql(expand(expr, JOB))}
        assert len(instances) == COUNT, expr


def test_websocket_and_sse_pass_through_the_proxy(cluster: Cluster) -> None:
    """A push WebSocket and the SSE stream work through HAProxy, routed to the named shard."""
    user = next(f"ws-{i}" for i in range(1000) if shard_of(f"ws-{i}", COUNT) == 1)
    record = shopper(user)

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with SseClient(cluster.proxy.base_url, query="?shard=1") as stream:
            await stream.read_until(lambda s: bool(s.data("summary")), timeout=30)
            async with MetricsClient(cluster.proxy.base_url, shards=COUNT) as client:
                pusher = await client.connect_websocket(shard=1)
                ack = await pusher.send([record])
                await pusher.close()
            async with MetricsClient(cluster.reference.base_url) as reference:
                mirror = await reference.connect_websocket()  # the same transport, counted alike
                await mirror.send([record])
                await mirror.close()
            cluster.sent += 1
            return ack, stream.data("summary")

    ack, summaries = asyncio.run(run())
    assert ack["accepted"] == 1, ack
    assert summaries[0]["shard"] == {"index": 1, "count": COUNT}
    assert _tracked_by(cluster, user) == [1]


def test_a_replica_down_then_back_loses_nothing_and_counts_nothing_twice(cluster: Cluster) -> None:
    """Replica 1 stops: the others keep ingesting, ShopperExporterDown fires for it, the client
    holds its records; back with its --state-file it gets them all, once, and its counters carry
    on with no reset; the replicas still read as the unsharded exporter."""
    down = cluster.replicas[1]
    instance = down.base_url.removeprefix("http://")
    assert down.stop() == 0
    during = cluster.traffic(30)
    owned_by_1 = sum(
        1
        for metrics, events in during
        for r in metrics + events
        if shard_of(r["userId"], COUNT) == 1
    )
    assert owned_by_1 > 0
    before = {i: cluster.value(f'sum(shopper_updates_received_total{{instance="127.0.0.1:{p}"}})')
              for i, p in enumerate(cluster.ports) if i != 1}  # fmt: skip

    async def run() -> None:
        async with MetricsClient(cluster.proxy.base_url, shards=COUNT) as client:
            reports = await _send(cluster, client, during)
            assert sum(r["queued"] for r in reports) == owned_by_1
            assert client.queued == owned_by_1
            assert all(r["rejected"] == [] for r in reports)

            # The others kept ingesting, as Prometheus sees it.
            def others_grew() -> bool:
                return all(
                    (
                        cluster.value(
                            f'sum(shopper_updates_received_total{{instance="127.0.0.1:{p}"}})'
                        )
                        or 0
                    )
                    > (before[i] or 0)
                    for i, p in enumerate(cluster.ports)
                    if i != 1
                )

            wait_until(others_grew, timeout=60, interval=0.5)
            wait_until(lambda: _alert_firing(cluster, instance), timeout=60, interval=0.5)

            cluster.start_replica(1)

            async def delivered() -> bool:
                return await client.flush() == 0  # once HAProxy's health check sees it back

            await async_wait_until(delivered, timeout=60, interval=0.2)
            assert client.queued == 0
            assert client.dropped == 0

    asyncio.run(run())
    wait_until(lambda: not _alert_firing(cluster, instance), timeout=60, interval=0.5)
    _assert_read_as_one(cluster)
    selector = f'{{__name__=~"shopper_.+_total", instance="{instance}"}}'
    counters = {
        r["metric"]["__name__"] for r in cluster.promql(f"group by (__name__) ({selector})")
    }
    assert "shopper_orders_total" in counters
    resets = {
        name: cluster.value(f'sum(resets({name}{{instance="{instance}"}}[{WINDOW}]))')
        for name in sorted(counters)
    }
    assert set(resets.values()) == {0}, resets


def _alert_firing(cluster: Cluster, instance: str) -> bool:
    status, body = http_get(f"{cluster.prometheus.base_url}/api/v1/alerts", timeout=10)
    assert status == 200
    return any(
        a["labels"].get("alertname") == "ShopperExporterDown"
        and a["labels"].get("instance") == instance
        and a["state"] == "firing"
        for a in json.loads(body)["data"]["alerts"]
    )


def test_a_record_sent_to_the_wrong_replica_is_refused_naming_its_owner(cluster: Cluster) -> None:
    """Straight to replica 0, a shopper of shard 2 is refused as wrong_shard, the owner named;
    through the proxy with its shard header it reaches replica 2."""
    user = next(f"misrouted-{i}" for i in range(1000) if shard_of(f"misrouted-{i}", COUNT) == 2)
    body = json.dumps([shopper(user)]).encode()
    json_type = {"Content-Type": "application/json"}
    status, _, reply = http_request(
        cluster.replicas[0].base_url + "/api/metrics", body, "POST", json_type
    )
    assert status == 422, reply
    (refused,) = reply["rejected"]
    assert refused["reason"] == "wrong_shard"
    assert refused["shard"] == 2
    assert "belongs to shard 2 of 3" in refused["errors"][0]["message"]
    assert _tracked_by(cluster, user) == []
    status, _, reply = http_request(
        cluster.proxy.base_url + "/api/metrics", body, "POST", {**json_type, SHARD_HEADER: "2"}
    )
    assert status == 200, reply
    assert _tracked_by(cluster, user) == [2]
