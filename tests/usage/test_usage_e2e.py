"""Through a real Envoy: every request's access-log entry lands in the summaries, classified, exactly;
in both throttle modes (ratelimit, and authz where Check answers the 429s), with the same assertions."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter

import grpc
import pytest

from tests.e2e.harness import Stack
from tests.usage.usage_stack import (
    create_api,
    start_status_upstream,
    today,
    totals_by,
    usage_stub,
    wait_until,
)
from tollway.catalog.v1 import catalog_pb2
from tollway.usage.v1 import usage_pb2
from usage.completeness import DROPPED, WRITTEN
from usage.process import Usage

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> dict:
    upstream, upstream_url = start_status_upstream()
    free = stack.create_plan("usage-free")
    tight = stack.create_plan("usage-tight", limits=catalog_pb2.PlanLimits(requests_per_minute=3))
    api = create_api(stack, "metered", "/metered/v1", upstream_url, [free.id, tight.id])
    calm_app = stack.create_application("calm")
    busy_app = stack.create_application("busy")
    calm_sub = stack.subscribe(calm_app.id, api.id, free.id)
    busy_sub = stack.subscribe(busy_app.id, api.id, tight.id)
    # Warm-up on another API (its polls hit 404/401 until config and keys propagate), so the metered
    # API sees only the requests counted below.
    warmup = create_api(stack, "warmup", "/warmup/v1", upstream_url, [free.id])
    stack.subscribe(busy_app.id, warmup.id, free.id)
    calm_key = stack.issue_key(calm_app.id).key
    busy_key = stack.issue_key(busy_app.id).key
    stack.wait_for_status("/warmup/v1/status/204", 204, {"x-api-key": busy_key})
    # Everything the gateway answered, per subscription: the ground truth the summaries must match.
    seen: dict[str, Counter[int]] = {calm_sub.id: Counter(), busy_sub.id: Counter(), "": Counter()}
    for _ in range(7):
        seen[calm_sub.id][stack.get("/metered/v1/status/200", {"x-api-key": calm_key}).status] += 1
    for _ in range(4):
        seen[calm_sub.id][stack.get("/metered/v1/status/500", {"x-api-key": calm_key}).status] += 1
    for _ in range(2):
        seen[calm_sub.id][stack.get("/metered/v1/status/404", {"x-api-key": calm_key}).status] += 1
    for _ in range(6):
        seen[busy_sub.id][stack.get("/metered/v1/status/200", {"x-api-key": busy_key}).status] += 1
    for _ in range(3):
        seen[""][stack.get("/metered/v1/status/200").status] += 1  # no key: 401
    seen[""][stack.get("/metered/v1/x", {"x-api-key": "tw_" + "a" * 12 + "_" + "b" * 32}).status] += 1
    yield {"api": api, "calm": calm_sub, "busy": busy_sub, "seen": seen}
    upstream.shutdown()


def expected_classes(statuses: Counter[int]) -> dict[str, int]:
    classes = Counter()
    for status, count in statuses.items():
        if status == 429:
            classes["throttled"] += count
        elif status in (401, 403):
            classes["unauthorized"] += count
        elif status >= 500:
            classes["upstream_fault"] += count
        elif status >= 400:
            classes["client_error"] += count
        else:
            classes["success"] += count
    return dict(classes)


def actual_classes(counts: usage_pb2.UsageCounts) -> dict[str, int]:
    names = ("success", "client_error", "upstream_fault", "throttled", "unauthorized", "ratelimit_error")
    return {name: getattr(counts, name) for name in names if getattr(counts, name)}


def test_mixed_outcomes_are_counted_exactly_per_subscription_and_class(stack: Stack, traffic: dict) -> None:
    seen = traffic["seen"]
    assert seen[traffic["busy"].id][429] >= 3, "the tight plan throttled nothing: throttle not in the path?"
    assert seen[""][401] == 4
    total = sum(sum(c.values()) for c in seen.values())

    def counted() -> dict:
        rows = totals_by(stack, traffic["api"].id, usage_pb2.DIMENSION_SUBSCRIPTION)
        return rows if sum(c.requests for c in rows.values()) >= total else {}

    rows = wait_until(counted)
    assert rows, "usage never caught up with the gateway"
    assert sum(c.requests for c in rows.values()) == total  # nothing counted twice
    for subscription_id, statuses in seen.items():
        assert actual_classes(rows[(subscription_id,)]) == expected_classes(statuses), subscription_id
    calm = rows[(traffic["calm"].id,)]
    assert calm.latency_us_max > 0 and 0 < calm.latency_us_p50 <= calm.latency_us_p99 <= calm.latency_us_max
    assert calm.request_bytes > 0 and calm.response_bytes > 0


def test_refused_requests_are_counted_per_api_and_key(stack: Stack, traffic: dict) -> None:
    rows = totals_by(stack, traffic["api"].id, usage_pb2.DIMENSION_SUBSCRIPTION, usage_pb2.DIMENSION_KEY)
    refused = {key: c.unauthorized for (sub, key), c in rows.items() if not sub}
    assert sum(refused.values()) == 4
    assert "" in refused  # no key at all


def test_windows_top_consumers_and_throttled_summaries(stack: Stack, traffic: dict) -> None:
    stub = usage_stub(stack)
    start, end = today()
    sent = sum(traffic["seen"][traffic["busy"].id].values())

    def busy_windows() -> list:
        # Waits for usage itself: run alone (or on another test worker) no earlier test has.
        windows = stack.call(
            stub.ListUsageWindows,
            usage_pb2.ListUsageWindowsRequest(
                granularity=usage_pb2.GRANULARITY_MINUTE,
                start_time=start,
                end_time=end,
                filter=usage_pb2.UsageFilter(subscription_id=traffic["busy"].id),
            ),
        ).windows
        return list(windows) if sum(w.counts.requests for w in windows) >= sent else []

    windows = wait_until(busy_windows)
    assert sum(w.counts.requests for w in windows) == sent
    top = stack.call(
        stub.ListTopConsumers,
        usage_pb2.ListTopConsumersRequest(
            start_time=start, end_time=end, filter=usage_pb2.UsageFilter(api_id=traffic["api"].id)
        ),
    ).consumers
    assert top[0].subscription_id == traffic["calm"].id
    throttled = stack.call(
        stub.ListThrottledWindows, usage_pb2.ListThrottledWindowsRequest(start_time=start, end_time=end)
    ).windows
    assert (
        sum(w.throttled for w in throttled if w.subscription_id == traffic["busy"].id)
        == traffic["seen"][traffic["busy"].id][429]
    )


def test_completeness_compares_with_envoys_own_counters(stack: Stack, traffic: dict) -> None:
    # The stat names exist on the real Envoy.
    with urllib.request.urlopen(f"http://{stack.settings.envoy_admin_addr}/stats?format=json") as response:
        names = {item.get("name") for item in json.load(response)["stats"]}
    assert {WRITTEN, DROPPED} <= names
    usage = stack.process.find(Usage)
    assert usage is not None
    assert stack.run(usage.sampler.sample_once()) == 1
    start, end = today()
    nodes = stack.call(
        usage_stub(stack).GetCompleteness, usage_pb2.GetCompletenessRequest(start_time=start, end_time=end)
    ).nodes
    [node] = [n for n in nodes if n.node_id == "e2e"]
    assert node.sampled
    assert node.received > 0


def test_ingestion_stats_and_bad_queries(stack: Stack, traffic: dict) -> None:
    stub = usage_stub(stack)
    stats = stack.call(stub.GetIngestionStats, usage_pb2.GetIngestionStatsRequest())
    assert stats.received >= stats.counted > 0
    assert stats.entries_by_node["e2e"] >= stats.received
    with pytest.raises(grpc.RpcError) as error:
        stack.call(stub.GetUsageTotals, usage_pb2.GetUsageTotalsRequest())
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    start, end = today()
    with pytest.raises(grpc.RpcError) as error:
        stack.call(stub.GetUsageTotals, usage_pb2.GetUsageTotalsRequest(start_time=end, end_time=start))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as error:
        usage_stub(stack).GetIngestionStats(usage_pb2.GetIngestionStatsRequest(), timeout=5)
    assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_cli_reads_the_same_numbers(stack: Stack, traffic: dict) -> None:
    from typer.testing import CliRunner

    from tollway.app.cli import app

    start, end = today()
    common = ["--addr", stack.settings.admin_addr, "--token", stack.settings.admin_token]
    span = ["--start", start.ToJsonString(), "--end", end.ToJsonString()]
    runner = CliRunner()
    busy, expected = traffic["busy"].id, traffic["seen"][traffic["busy"].id][429]
    deadline = time.monotonic() + 30  # run on its own, the usage may not be flushed yet
    while True:
        result = runner.invoke(
            app, ["usage", "totals", "--by", "subscription", "--api", traffic["api"].id, *span, *common]
        )
        assert result.exit_code == 0, result.output
        # Empty fields are left out of the JSON: the group of keyless requests has no subscription_id.
        groups = {g.get("subscription_id", ""): g["counts"] for g in json.loads(result.output)["groups"]}
        throttled = int(groups.get(busy, {}).get("throttled", 0))
        if throttled == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert throttled == expected
    result = runner.invoke(app, ["usage", "top", "--by", "subscription", "--limit", "1", *span, *common])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["usage", "windows", "--granularity", "fortnight", *common])
    assert result.exit_code != 0
    result = runner.invoke(app, ["usage", "stats", *common])
    assert result.exit_code == 0 and json.loads(result.output)["received"]
