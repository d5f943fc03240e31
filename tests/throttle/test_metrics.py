"""Throttle metrics: decisions by plan and result, Redis latency and errors, served in Prometheus text."""

from __future__ import annotations

import asyncio
import urllib.request
from datetime import UTC, datetime

from tests.metrics_support import parse, value
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL, FakeClock, free_port, index_with, subscription
from throttle.counters import MemoryCounterStore
from throttle.metrics import ThrottleMetrics
from throttle.redis_store import RedisCounterStore
from throttle.service import ThrottleService
from tollway.catalog.limits import PlanLimits
from tollway.metrics import serve_metrics


async def test_decisions_and_redis_latency_are_counted_and_rendered() -> None:
    metrics = ThrottleMetrics()
    plan = PlanLimits(requests_per_minute=1)
    sub = subscription("plan_m")
    store = RedisCounterStore(SHARED_REDIS_URL, 500, metrics=metrics)
    clock = FakeClock(datetime(2026, 4, 1, tzinfo=UTC))
    service = ThrottleService(index_with({"plan_m": plan}, [sub]), store, clock=clock, metrics=metrics)
    try:
        for _ in range(3):
            await service.should_rate_limit("tollway", [{"subscription_id": sub.id}])
        await service.should_rate_limit("tollway", [{"api_id": "x"}])
    finally:
        await store.close()
    series = parse(metrics.render())
    assert value(series, "tollway_throttle_decisions_total", plan="plan_m", result="ok") == 1
    assert value(series, "tollway_throttle_decisions_total", plan="plan_m", result="over_limit") == 2
    assert value(series, "tollway_throttle_decisions_total", plan="", result="unknown") == 1
    assert value(series, "tollway_throttle_redis_seconds_count") == 3
    assert value(series, "tollway_throttle_redis_seconds_bucket", le="+Inf") == 3


async def test_metrics_are_served_over_http() -> None:
    metrics = ThrottleMetrics()
    metrics.redis_error("TimeoutError")
    port = free_port()
    server = await serve_metrics("127.0.0.1", port, metrics.render)
    try:

        def fetch() -> tuple[int, str, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.status, response.headers["content-type"], response.read().decode()

        status, content_type, body = await asyncio.to_thread(fetch)
    finally:
        server.close()
        await server.wait_closed()
    assert status == 200 and content_type.startswith("text/plain")
    assert value(parse(body), "tollway_throttle_redis_errors_total", error="TimeoutError") == 1


async def test_shadow_and_overage_results_are_labelled() -> None:
    metrics = ThrottleMetrics()
    shadow = PlanLimits(requests_per_minute=1, shadow_mode=True)
    soft = PlanLimits(monthly_quota=1, quota_policy="SOFT")
    subs = [subscription("plan_s"), subscription("plan_o")]
    service = ThrottleService(
        index_with({"plan_s": shadow, "plan_o": soft}, subs), MemoryCounterStore(), metrics=metrics
    )
    for sub in subs:
        for _ in range(2):
            await service.should_rate_limit("tollway", [{"subscription_id": sub.id}])
    assert metrics.decisions[("plan_s", "shadow_over_limit")] == 1
    assert metrics.decisions[("plan_o", "overage")] == 1


def test_cluster_metrics_are_rendered_per_node() -> None:
    metrics = ThrottleMetrics()
    for requests in (1, 3, 40):
        metrics.batch_size(requests)
    metrics.redis_node_latency("127.0.0.1:7000", 0.002)
    metrics.redis_node_latency("127.0.0.1:7001", 0.02)
    metrics.redis_node_error("127.0.0.1:7001", "ConnectionError")
    metrics.compensation("ok")
    metrics.compensation("ok")
    metrics.compensation("failed")
    series = parse(metrics.render())
    assert value(series, "tollway_throttle_redis_batch_requests_bucket", le="1.0") == 1
    assert value(series, "tollway_throttle_redis_batch_requests_bucket", le="4.0") == 2
    assert value(series, "tollway_throttle_redis_batch_requests_sum") == 44
    assert value(series, "tollway_throttle_redis_batch_requests_count") == 3
    node0, node1 = "127.0.0.1:7000", "127.0.0.1:7001"
    assert value(series, "tollway_throttle_redis_node_seconds_bucket", node=node0, le="0.0025") == 1
    assert value(series, "tollway_throttle_redis_node_seconds_bucket", node=node1, le="0.01") == 0
    assert value(series, "tollway_throttle_redis_node_seconds_count", node=node1) == 1
    assert value(series, "tollway_throttle_redis_node_errors_total", node=node1, error="ConnectionError") == 1
    assert value(series, "tollway_throttle_compensations_total", result="ok") == 2
    assert value(series, "tollway_throttle_compensations_total", result="failed") == 1
