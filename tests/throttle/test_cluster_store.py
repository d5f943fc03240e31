"""The counter store on a real Redis Cluster (three masters, three replicas): batches split per slot and
sent per master, limits shared across slots taken as steps (subscription, application, API) with
compensation, what a crash between two steps leaves, and the store's metrics. The contract every
store shares is tested in test_counters.py and test_store_equivalence.py, on this backend too."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.metrics_support import parse, value
from tests.redis_cluster import RedisClusterNodes
from tests.throttle.throttle_fixtures import unique
from throttle.cluster_store import ClusterCounterStore
from throttle.counters import DescriptorWindows, HitResult
from throttle.limits import API, APPLICATION, PlanLimits, SharedLimits, Window, windows_for
from throttle.metrics import ThrottleMetrics

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 7, 7, 7, 7, 7, tzinfo=UTC)


@pytest.fixture
async def store(redis_cluster: RedisClusterNodes) -> AsyncIterator[ClusterCounterStore]:
    created = ClusterCounterStore(nodes=redis_cluster.nodes, timeout_ms=3000, metrics=ThrottleMetrics())
    await created.connect()
    try:
        yield created
    finally:
        await created.close()


def _metrics(store: ClusterCounterStore) -> ThrottleMetrics:
    return store._metrics


async def test_a_batch_over_every_master_is_exact_per_subscription(
    store: ClusterCounterStore, redis_cluster: RedisClusterNodes
) -> None:
    subs = redis_cluster.subscriptions_on_every_master(3)
    plan = PlanLimits(requests_per_minute=5)
    windows = {sub: windows_for(sub, plan, NOW) for sub in subs}
    # 8 concurrent requests per subscription, interleaved: they share batches, split per slot.
    calls = [store.hit(windows[sub], 1, NOW) for _ in range(8) for sub in subs]
    results = await asyncio.gather(*calls)
    admitted = {sub: 0 for sub in subs}
    for index, result in enumerate(results):
        admitted[subs[index % len(subs)]] += result.admitted
    assert admitted == {sub: 5 for sub in subs}
    for sub in subs:
        assert await store.read([w.key for w in windows[sub]], NOW) == [5, 5]
    metrics = _metrics(store)
    series = parse(metrics.render())
    answered = {
        dict(labels)["node"] for name, labels in series if name == "tollway_throttle_redis_node_seconds_count"
    }
    assert len(answered) == redis_cluster.masters  # every master answered its slots
    assert value(series, "tollway_throttle_redis_batch_requests_count") >= len(subs)
    assert not metrics.node_errors


def _shared(subscription: str, plan: PlanLimits, *shared: SharedLimits) -> list[Window]:
    return windows_for(subscription, plan, NOW, 0, shared)


async def test_a_refusal_by_the_api_gives_back_the_subscriptions_step(store: ClusterCounterStore) -> None:
    api = SharedLimits(API, unique("api"), per_minute=2)
    first, second = unique("sub"), unique("sub")
    plan = PlanLimits(requests_per_minute=10)
    results = [await store.hit(_shared(sub, plan, api), 1, NOW) for sub in (first, second, first, second)]
    assert [r.admitted for r in results] == [True, True, False, False]
    refused = results[2]
    # The API's minute is the window that refused (index 2: minute, period, then the API's minute).
    assert (refused.exceeded, refused.counts) == (2, (1, 1, 2))
    first_windows = _shared(first, plan, api)
    assert await store.read([w.key for w in first_windows], NOW) == [1, 1, 2]
    assert _metrics(store).compensations["ok"] == 2


async def test_a_refusal_by_the_application_skips_the_api(store: ClusterCounterStore) -> None:
    application = SharedLimits(APPLICATION, unique("app"), per_hour=1)
    api = SharedLimits(API, unique("api"), per_minute=100)
    sub = unique("sub")
    windows = _shared(sub, PlanLimits(requests_per_minute=10), api, application)
    assert (await store.hit(windows, 1, NOW)).admitted
    refused = await store.hit(windows, 1, NOW)
    # Windows: minute, period, the API's minute, the application's hour.
    assert (refused.admitted, refused.exceeded, refused.counts) == (False, 3, (1, 1, 1, 1))
    assert await store.read([w.key for w in windows], NOW) == [1, 1, 1, 1]


async def test_shadow_descriptors_are_counted_in_every_slot(store: ClusterCounterStore) -> None:
    api = SharedLimits(API, unique("api"), per_minute=1)
    windows = _shared(unique("sub"), PlanLimits(requests_per_minute=1), api)
    for expected in (1, 2, 3):
        result = await store.hit(windows, 1, NOW, enforce=False)
        assert result.counts == (expected, expected, expected)
    assert (result.admitted, result.exceeded) == (False, 0)


async def test_a_caller_that_gives_up_between_steps_still_gets_compensated(
    store: ClusterCounterStore,
) -> None:
    api = SharedLimits(API, unique("api"), per_minute=1)
    plan = PlanLimits(requests_per_minute=10)
    subs = [unique("sub") for _ in range(8)]
    windows = {sub: _shared(sub, plan, api) for sub in subs}
    calls = [asyncio.ensure_future(store.hit(windows[sub], 1, NOW)) for sub in subs]
    await asyncio.sleep(0)  # each is queued for its first step
    for call in calls[1:]:
        call.cancel()  # as gRPC does when Envoy's deadline passes
    await asyncio.gather(*calls, return_exceptions=True)
    # The steps of the cancelled callers finish by themselves: seven are refused by the API's limit.
    compensations = _metrics(store).compensations
    deadline = time.monotonic() + 60
    while compensations["ok"] + compensations["failed"] < 7:
        assert time.monotonic() < deadline, f"compensations after 60 s: {dict(compensations)}"
        await asyncio.sleep(0.01)
    used = [(await store.read([w.key for w in windows[sub]], NOW)) for sub in subs]
    # One request got the API's one slot; every other subscription's step was taken back, except where
    # a compensation timed out on a loaded machine (it is never retried: it may have run, and a second
    # one would over-admit), which leaves that subscription's step counted: over-denial only.
    assert sorted(u[0] for u in used) == [0] * (7 - compensations["failed"]) + [1] * (
        1 + compensations["failed"]
    )
    assert {u[2] for u in used} == {1}


@settings(max_examples=25, deadline=None)
@given(
    sub_limits=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    api_limit=st.integers(1, 12),
    application_limit=st.integers(0, 8),
    requests=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3)), min_size=1, max_size=40),
)
async def test_concurrent_steps_never_over_admit_and_refused_requests_consume_nothing(
    redis_cluster: RedisClusterNodes,
    sub_limits: list[int],
    api_limit: int,
    application_limit: int,
    requests: list[tuple[int, int]],
) -> None:
    """All requests at once, as from many clients: each counter ends holding exactly the hits of the
    admitted requests that touch it, and no hard limit is passed. (How many are admitted may be fewer
    than one atomic step would admit: over-denial while others' steps are in flight.)"""
    store = ClusterCounterStore(nodes=redis_cluster.nodes, timeout_ms=2000)
    await store.connect()
    api = SharedLimits(API, unique("api"), per_minute=api_limit)
    application = SharedLimits(APPLICATION, unique("app"), per_minute=application_limit)
    subs = [unique("sub") for _ in range(3)]
    # The first two subscriptions share the application; all three the API.
    shared = [(api, application), (api, application), (api,)]
    windows = [
        _shared(sub, PlanLimits(requests_per_minute=limit), *own)
        for sub, limit, own in zip(subs, sub_limits, shared, strict=True)
    ]
    try:
        results: list[HitResult] = await asyncio.gather(
            *(store.hit(windows[index], hits, NOW) for index, hits in requests)
        )
        expected: dict[str, int] = {}
        for (index, hits), result in zip(requests, results, strict=True):
            for window in windows[index]:
                expected.setdefault(window.key, 0)
                if result.admitted:
                    expected[window.key] += hits
        keys = sorted(expected)
        assert dict(zip(keys, await store.read(keys, NOW), strict=True)) == expected
        limits = {w.key: w.limit for own in windows for w in own if w.hard and w.limit}
        assert all(expected.get(key, 0) <= limit for key, limit in limits.items())
    finally:
        await store.close()


async def test_read_and_forget_span_slots(
    store: ClusterCounterStore, redis_cluster: RedisClusterNodes
) -> None:
    subs = redis_cluster.subscriptions_on_every_master(1)
    windows = [w for sub in subs for w in windows_for(sub, PlanLimits(requests_per_minute=3), NOW)]
    for sub in subs:
        await store.hit(windows_for(sub, PlanLimits(requests_per_minute=3), NOW), 2, NOW)
    keys = [w.key for w in windows]
    assert await store.read(keys, NOW) == [2] * len(keys)
    await store.forget(keys)
    assert await store.read(keys, NOW) == [0] * len(keys)
    assert await store.ping()


async def test_a_crash_between_steps_leaves_at_most_one_requests_hits(
    store: ClusterCounterStore, redis_cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    """A replica is killed (SIGKILL, from inside, right after its request's subscription step): that
    step's increment is never taken back. The subscription is then over-denied by that request's
    hits until the window ends; nothing is over-admitted, in any window."""
    sub, api_id = unique("sub"), unique("api")
    hits = 2
    arguments = [redis_cluster.nodes_setting, sub, api_id, NOW.isoformat(), str(hits)]
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.throttle.crash_between_steps", *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    from tests.throttle.crash_between_steps import API_PER_MINUTE, PLAN

    windows = _shared(sub, PLAN, SharedLimits(API, api_id, per_minute=API_PER_MINUTE))
    assert await store.read([w.key for w in windows], NOW) == [hits, hits, 0]
    admitted = 0
    for _ in range(PLAN.requests_per_minute + 5):
        admitted += (await store.hit(windows, 1, NOW)).admitted
    # The plan allows 10 a minute: the crashed request's 2 hits stay counted (over-denial), and the
    # API's minute counts exactly what was admitted.
    assert admitted == PLAN.requests_per_minute - hits
    assert await store.read([w.key for w in windows], NOW) == [10, 10, admitted]


async def test_a_master_that_lost_its_data_guards_only_its_own_slots(
    store: ClusterCounterStore, redis_cluster: RedisClusterNodes
) -> None:
    """The durable-quota marker is one key per slot: a master restarted empty (here: FLUSHALL) loses
    exactly its slots' markers, so only its subscriptions' HARD quotas wait for the rebuild (refused,
    nothing counted) while every other request counts. The rebuild seeds counters slot by slot and
    marks every slot again; a master that loses its data during it makes it fail."""
    plan = PlanLimits(monthly_quota=5)
    sub_a, sub_b = redis_cluster.subscriptions_on_every_master(1)[:2]
    lost = redis_cluster.master_of("{sub:" + sub_a + "}")
    windows = {sub: windows_for(sub, plan, NOW) for sub in (sub_a, sub_b)}

    async def guarded(sub: str) -> HitResult:
        (result,) = await store.step([DescriptorWindows(windows[sub], True, True)], 1, NOW)
        return result

    async def rebuild(counters: list[tuple[str, int, int]]) -> bool:
        token = await store.begin_rebuild()
        return await store.seed(token, counters) and await store.finish_rebuild(token)

    assert await rebuild([])
    assert await store.check_seeded()
    assert (await guarded(sub_a)).admitted and (await guarded(sub_b)).admitted
    with redis_cluster.client(lost) as client:
        client.flushall()
    refused = await guarded(sub_a)
    assert (refused.admitted, refused.unseeded, refused.counts) == (False, True, (0,))
    assert not store.seeded
    assert (await store.hit(windows[sub_a], 1, NOW)).admitted  # not guarded: counted from zero
    assert (await guarded(sub_b)).counts == (2,)  # another master's slots: untouched
    assert not await store.check_seeded()
    # What usage metered for sub_a (1 admitted before the loss) is seeded; counting goes on from it.
    # (Seeded counters expire at an instant: the test's clock is in the past, so one from now.)
    period, expire = windows[sub_a][0], int(time.time()) + 3600
    token = await store.begin_rebuild()
    with redis_cluster.client(lost) as client:
        client.flushall()  # lost again during the rebuild: its token is gone with it
    assert not await store.seed(token, [(period.key, 1, expire)])
    assert await rebuild([(period.key, 2, expire)])
    assert store.seeded and await store.check_seeded()
    assert (await guarded(sub_a)).counts == (3,)
