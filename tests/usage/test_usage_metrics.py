"""One Prometheus endpoint per process: scrape a real TollwayProcess (usage + throttle + the gateway
components) before and after traffic through a real Envoy, parse the text, and check the numbers moved."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2_grpc

from tests.e2e.harness import Stack, free_port, start_stack, stop_stack
from tests.support import EnvoyCredential
from tests.usage.usage_entries import entry, message
from tests.usage.usage_stack import create_api, start_status_upstream, wait_until
from tollway.catalog.v1 import catalog_pb2

pytestmark = pytest.mark.e2e

LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    """The text exposition format, strictly: every sample's family declared, no series twice."""
    series: Series = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name not in typed, f"family {name} declared twice"
            typed[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, f"{name} has no TYPE"
        key = (name, frozenset(LABEL.findall(labels or "")))
        assert key not in series, f"{line!r} twice"
        series[key] = float(value)
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(
        Path(tmp_path_factory.mktemp("metrics-stack")),
        usage_flush_ms=50,
        usage_sample_seconds=0.3,
        metrics_addr=f"127.0.0.1:{free_port()}",
    )
    try:
        yield started
    finally:
        stop_stack(started)


def scrape(stack: Stack) -> Series:
    with urllib.request.urlopen(f"http://{stack.settings.metrics_addr}/metrics", timeout=5) as response:
        assert response.headers["content-type"].startswith("text/plain")
        return parse(response.read().decode())


def test_one_endpoint_shows_usage_and_throttle_and_the_counts_move(stack: Stack) -> None:
    # Completeness counts Envoy's counters from its first sample on: wait for one before the traffic.
    written = ("tollway_usage_node_logs_written", frozenset({("node", "e2e")}))

    def sampled() -> Series | None:
        series = scrape(stack)
        return series if written in series else None

    before = wait_until(sampled)
    assert before is not None
    components = ",".join(sorted(stack.settings.components))
    assert value(before, "tollway_info", components=components) == 1
    upstream, upstream_url = start_status_upstream()
    try:
        tight = stack.create_plan("metrics-tight", limits=catalog_pb2.PlanLimits(requests_per_minute=2))
        api = create_api(stack, "metrics-api", "/metrics-api/v1", upstream_url, [tight.id])
        app = stack.create_application("metrics-app")
        stack.subscribe(app.id, api.id, tight.id)
        key = stack.issue_key(app.id).key
        stack.wait_for_status("/metrics-api/v1/status/500", 500, {"x-api-key": key})
        statuses = [stack.get("/metrics-api/v1/status/200", {"x-api-key": key}).status for _ in range(4)]
        statuses.append(stack.get("/metrics-api/v1/status/200").status)  # no key: 401
    finally:
        upstream.shutdown()
    assert 429 in statuses and 401 in statuses
    # A hostile stream straight to the Envoy-facing port: no identifier on its first message.
    # (with Envoy's credential: without it the stream would not reach usage at all)
    with EnvoyCredential(stack.settings).channel() as channel, pytest.raises(grpc.RpcError):
        als_pb2_grpc.AccessLogServiceStub(channel).StreamAccessLogs(iter([message([entry()])]), timeout=5)

    def moved() -> Series | None:
        after = scrape(stack)
        counted = value(after, "tollway_usage_entries_counted_total")
        done = (
            counted >= value(before, "tollway_usage_entries_counted_total") + len(statuses)
            and value(after, "tollway_usage_node_logs_written", node="e2e") >= len(statuses)
            # The per-node gauges are refreshed by every completeness sample, after the flush.
            and value(after, "tollway_usage_node_counted", node="e2e") >= len(statuses)
        )
        return after if done else None

    after = wait_until(moved, timeout=20)
    assert after is not None
    received = value(after, "tollway_usage_entries_received_total")
    assert received >= value(before, "tollway_usage_entries_received_total") + len(statuses)
    assert value(after, "tollway_usage_node_entries_received_total", node="e2e") >= received
    assert value(after, "tollway_usage_messages_received_total") > value(
        before, "tollway_usage_messages_received_total"
    )
    assert value(after, "tollway_usage_streams_rejected_total", reason="missing_identifier") == 1
    # Batch latency: the histogram saw the flushes, cumulative up to +Inf.
    flushes = value(after, "tollway_usage_flush_seconds_count")
    assert flushes > value(before, "tollway_usage_flush_seconds_count")
    assert value(after, "tollway_usage_flush_seconds_bucket", le="+Inf") == flushes
    assert value(after, "tollway_usage_flushes_total") == flushes
    # WAL: its size is reported, everything received is in the database, no errors.
    assert ("tollway_usage_wal_bytes", frozenset()) in after
    assert value(after, "tollway_usage_wal_segments") >= 1
    assert value(after, "tollway_usage_wal_syncs_total") > value(before, "tollway_usage_wal_syncs_total")
    assert value(after, "tollway_usage_db_errors_total", operation="flush") == 0
    # Completeness per node, beside Envoy's own counters.
    assert 0 < value(after, "tollway_usage_node_completeness", node="e2e") <= 1
    assert value(after, "tollway_usage_node_counted", node="e2e") > 0
    # The throttle's decisions on the same endpoint.
    over = value(after, "tollway_throttle_decisions_total", plan=tight.id, result="over_limit")
    assert over == statuses.count(429)
    assert value(after, "tollway_throttle_decisions_total", plan=tight.id, result="ok") >= 2
