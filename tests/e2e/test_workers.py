"""`--workers 2` through a real Envoy: both workers answer Envoy (its own per-host counters say so),
usage counts every request exactly once whichever worker received its entry, and a plan's limit is
exact across the workers on the Redis store. In both throttle modes, with the same assertions."""

from __future__ import annotations

import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, free_port_run, start_stack, stop_stack
from tests.metrics_support import Series, parse, value
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL, unique
from tests.usage.usage_stack import subscription_totals
from tollway.catalog.v1 import catalog_pb2
from tollway.vocabulary import ThrottleMode

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=list(ThrottleMode), ids=str)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(
        Path(tmp_path_factory.mktemp("workers")),
        workers=2,
        ratelimit_store="redis",
        redis_url=SHARED_REDIS_URL,
        redis_timeout_ms=1000,
        throttle_mode=request.param,
        # Worker k serves its metrics on this port + k.
        metrics_addr=f"127.0.0.1:{free_port_run(2, set())}",
    )
    try:
        yield started
    finally:
        stop_stack(started)


def host_requests(stack: Stack, cluster: str) -> Counter[str]:
    """Requests Envoy sent to each endpoint of `cluster` (its /clusters page, per host)."""
    pattern = re.compile(rf"^{cluster}::([^:]+:\d+)::rq_total::(\d+)$", re.MULTILINE)
    return Counter({host: int(n) for host, n in pattern.findall(stack.envoy.admin_get("/clusters"))})


def _client(stack: Stack, **limits: int) -> tuple[str, str, str]:
    plan = stack.create_plan(unique("plan"), limits=catalog_pb2.PlanLimits(**limits))
    api = stack.create_api(unique("api"), f"/{unique('w')}/v1", [plan.id])
    app = stack.create_application(unique("app"))
    subscription = stack.subscribe(app.id, api.id, plan.id)
    key = stack.issue_key(app.id).key
    return api.context_path + "/items", key, subscription.id


def warm_up(stack: Stack, path: str, key: str, streak: int = 6) -> Counter[int]:
    """Calls until `streak` calls in a row got 200: the key reached both workers (worker 1 follows the
    change log a poll behind worker 0). Returns every status seen."""
    seen: list[int] = []
    for _ in range(200):
        seen.append(stack.get(path, {"x-api-key": key}).status)
        if seen[-streak:] == [200] * streak:
            return Counter(seen)
    raise AssertionError(f"no streak of 200s: {Counter(seen)}")


def test_each_worker_is_an_endpoint_and_serves(stack: Stack) -> None:
    path, key, subscription = _client(stack, requests_per_minute=100_000)
    seen = warm_up(stack, path, key)
    before = host_requests(stack, "tollway_keymgr")
    seen.update(stack.get(path, {"x-api-key": key}).status for _ in range(60))
    served = host_requests(stack, "tollway_keymgr") - before
    # Envoy round-robins over both workers' endpoints: each answered Checks.
    assert set(served) == set(stack.group.addresses)
    assert all(count > 0 for count in served.values()), served
    assert sum(served.values()) == 60
    if stack.settings.throttle_mode == ThrottleMode.RATELIMIT:
        throttled = host_requests(stack, "tollway_throttle")
        assert set(throttled) == set(stack.group.addresses)
        assert all(count > 0 for count in throttled.values()), throttled
    # Every admitted request counted once, whichever worker's usage received its entry.
    counts = subscription_totals(stack, subscription, seen[200])
    assert (counts.requests, counts.success) == (seen[200], seen[200])
    assert seen[200] >= 66


def test_a_quota_is_exact_across_workers(stack: Stack) -> None:
    path, key, subscription = _client(stack, monthly_quota=40)
    seen = warm_up(stack, path, key)
    seen.update(stack.get(path, {"x-api-key": key}).status for _ in range(60))
    # Both workers counted into the same Redis counters: exactly 40 admitted, whoever answered.
    assert seen[200] == 40
    assert seen[429] >= 60 - 40
    counts = subscription_totals(stack, subscription, 40 + seen[429])
    assert (counts.requests, counts.success, counts.throttled) == (40 + seen[429], 40, seen[429])


def test_every_worker_has_its_own_wal(stack: Stack) -> None:
    wal = stack.settings.usage_wal_dir
    assert wal is not None
    assert (wal / "LOCK").exists()
    assert (wal / "worker-1" / "LOCK").exists()


def worker_metrics(stack: Stack) -> list[Series]:
    """Each worker's own scrape (worker k on the metrics port + k)."""
    host, port = stack.settings.metrics_addr.rsplit(":", 1)
    scrapes = []
    for k in range(stack.settings.workers):
        with urllib.request.urlopen(f"http://{host}:{int(port) + k}/metrics", timeout=5) as response:
            scrapes.append(parse(response.read().decode()))
    return scrapes


def test_each_worker_serves_its_own_metrics_and_their_sum_is_exact(stack: Stack) -> None:
    path, key, _ = _client(stack, requests_per_minute=100_000)
    warm_up(stack, path, key)
    name = "tollway_keymgr_check_decisions_total"
    before = worker_metrics(stack)
    statuses = Counter(stack.get(path, {"x-api-key": key}).status for _ in range(40))
    after = worker_metrics(stack)
    moved = [
        value(a, name, reason="allowed") - value(b, name, reason="allowed")
        for a, b in zip(after, before, strict=True)
    ]
    # Envoy round-robins: both workers answered, and summing the workers' series gives the exact total.
    assert all(count > 0 for count in moved), moved
    assert sum(moved) == statuses[200] >= 30, statuses
    # Worker 0 alone runs xds; the other workers' endpoints carry the hot path only.
    assert value(after[0], "tollway_xds_connected_envoys") == 1
    assert all(("tollway_xds_connected_envoys", frozenset()) not in scrape for scrape in after[1:])
