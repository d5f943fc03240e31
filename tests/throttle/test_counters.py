"""Every counter store, same contract: all-or-nothing check-and-increment over a request's windows.
Each test runs on the memory store, the real Redis at 127.0.0.1:6379 and a real Redis Cluster (three
masters, three replicas; tests/redis_cluster.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.redis_cluster import RedisClusterNodes
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL, unique
from throttle.cluster_store import ClusterCounterStore
from throttle.counters import CounterStore, MemoryCounterStore, decide
from throttle.limits import PERIOD, PlanLimits, Window, windows_for
from throttle.redis_store import RedisCounterStore

NOW = datetime(2026, 5, 10, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    created: CounterStore
    if request.param == "memory":
        created = MemoryCounterStore()
    elif request.param == "redis":
        created = RedisCounterStore(SHARED_REDIS_URL, 500)
    else:
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        created = ClusterCounterStore(nodes=cluster.nodes, timeout_ms=500)
        await created.connect()
    try:
        yield created
    finally:
        await created.close()


async def test_admits_up_to_the_limit_then_denies(store: CounterStore) -> None:
    windows = windows_for(unique("sub"), PlanLimits(requests_per_minute=3), NOW)
    results = [await store.hit(windows, 1, NOW) for _ in range(5)]
    assert [r.admitted for r in results] == [True, True, True, False, False]
    assert [r.counts[0] for r in results] == [1, 2, 3, 3, 3]
    assert results[3].exceeded == 0


async def test_concurrent_requests_answer_as_if_one_after_another(store: CounterStore) -> None:
    """Concurrent hits go to Redis as one batch (one script call): each request is still its own
    all-or-nothing step, in order, seeing the increments of those before it."""
    tight = windows_for(unique("sub"), PlanLimits(requests_per_minute=4, monthly_quota=100), NOW)
    other = windows_for(unique("sub"), PlanLimits(requests_per_hour=1), NOW)
    shadow = windows_for(unique("sub"), PlanLimits(requests_per_minute=1), NOW)
    calls = [store.hit(tight, 3, NOW), store.hit(tight, 2, NOW), store.hit(other, 1, NOW)]
    calls += [store.hit(tight, 1, NOW), store.hit(other, 1, NOW), store.hit(shadow, 1, NOW, enforce=False)]
    calls += [store.hit(shadow, 1, NOW, enforce=False)]
    results = await asyncio.gather(*calls)
    assert [(r.admitted, r.exceeded, r.counts) for r in results] == [
        (True, -1, (3, 3)),
        (False, 0, (3, 3)),  # 3 + 2 > 4: nothing counted, not even the monthly quota
        (True, -1, (1, 1)),
        (True, -1, (4, 4)),
        (False, 0, (1, 1)),
        (True, -1, (1, 1)),
        (False, 0, (2, 2)),  # shadow: over the limit, counted anyway
    ]
    assert await store.read([w.key for w in tight], NOW) == [4, 4]


async def test_denied_request_consumes_nothing_in_any_window(store: CounterStore) -> None:
    plan = PlanLimits(requests_per_second=2, requests_per_day=100, monthly_quota=50)
    windows = windows_for(unique("sub"), plan, NOW)
    for _ in range(10):
        await store.hit(windows, 1, NOW)
    used = await store.read([w.key for w in windows], NOW)
    # Only the two admitted requests count, in every window.
    assert used == [2, 2, 2]


async def test_hits_addend_counts_as_many_hits_and_must_fit_whole(store: CounterStore) -> None:
    windows = windows_for(unique("sub"), PlanLimits(requests_per_minute=10), NOW)
    assert (await store.hit(windows, 7, NOW)).counts[0] == 7
    denied = await store.hit(windows, 4, NOW)
    assert not denied.admitted and denied.counts[0] == 7
    assert (await store.hit(windows, 3, NOW)).counts[0] == 10


async def test_soft_windows_never_deny(store: CounterStore) -> None:
    windows = windows_for(unique("sub"), PlanLimits(monthly_quota=2, quota_policy="SOFT"), NOW)
    results = [await store.hit(windows, 1, NOW) for _ in range(4)]
    assert all(r.admitted for r in results)
    assert results[-1].counts == (4,)


async def test_shadow_step_counts_even_when_a_window_is_exceeded(store: CounterStore) -> None:
    windows = windows_for(unique("sub"), PlanLimits(requests_per_minute=1), NOW)
    await store.hit(windows, 1, NOW, enforce=False)
    result = await store.hit(windows, 1, NOW, enforce=False)
    assert not result.admitted and result.exceeded == 0
    assert result.counts[0] == 2


async def test_a_new_window_starts_from_zero(store: CounterStore) -> None:
    sub = unique("sub")
    plan = PlanLimits(requests_per_minute=1)
    assert (await store.hit(windows_for(sub, plan, NOW), 1, NOW)).admitted
    assert not (await store.hit(windows_for(sub, plan, NOW), 1, NOW)).admitted
    later = NOW + timedelta(minutes=1)
    assert (await store.hit(windows_for(sub, plan, later), 1, later)).admitted


async def test_read_of_unknown_keys_is_zero(store: CounterStore) -> None:
    assert await store.read([f"tw:{{sub:{unique('s')}}}:m:0"], NOW) == [0]


async def test_redis_counters_expire_after_their_window() -> None:
    store = RedisCounterStore(SHARED_REDIS_URL, 500)
    client = Redis.from_url(SHARED_REDIS_URL)
    try:
        windows = windows_for(unique("sub"), PlanLimits(requests_per_minute=5), NOW)
        await store.hit(windows, 1, NOW)
        minute_ttl = await client.ttl(windows[0].key)
        period_ttl = await client.ttl(windows[1].key)
        assert 0 < minute_ttl <= 60 + 10
        assert period_ttl > 31 * 86400
    finally:
        await client.aclose()
        await store.close()


def _window(limit: int, hard: bool, index: int) -> Window:
    return Window(f"w{index}", f"k{index}", limit, hard, NOW, NOW + timedelta(minutes=1))


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.booleans(), st.integers(0, 25)), min_size=1, max_size=5),
    st.integers(1, 30),
)
def test_decide_denies_exactly_when_a_hard_limit_would_be_passed(
    spec: list[tuple[int, bool, int]], hits: int
) -> None:
    windows = [_window(limit, hard, i) for i, (limit, hard, _) in enumerate(spec)]
    current = [count for _, _, count in spec]
    exceeded = decide(windows, current, hits)
    over = [i for i, (limit, hard, count) in enumerate(spec) if hard and limit and count + hits > limit]
    assert exceeded == (over[0] if over else -1)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=30), st.integers(1, 20), st.integers(1, 40))
async def test_memory_store_never_admits_beyond_any_limit(
    hits_list: list[int], minute: int, quota: int
) -> None:
    store = MemoryCounterStore()
    windows = windows_for("s", PlanLimits(requests_per_minute=minute, monthly_quota=quota), NOW)
    admitted = 0
    for hits in hits_list:
        result = await store.hit(windows, hits, NOW)
        if result.admitted:
            admitted += hits
        # Every window holds exactly the admitted hits.
        assert await store.read([w.key for w in windows], NOW) == [admitted, admitted]
    assert admitted <= min(minute, quota)
    assert windows[-1].name == PERIOD
