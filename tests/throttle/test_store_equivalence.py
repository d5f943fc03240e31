"""The admit rule is written twice: in Python (counters.decide, MemoryCounterStore) and in Lua
(redis_store.HIT_SCRIPT). Random sequences of requests, each of one to three descriptors (a
subscription may repeat, shadow and enforcing ones mixed), go to the memory store and to a Redis
store, and every decision and count must be the same, so the two copies cannot drift apart. The Redis
side runs against the real Redis at 127.0.0.1:6379, and against a real Redis Cluster, where a request
under the shared API and application limits takes a step per slot with compensation
(cluster_store.py): there the requests of one step go one after another, since concurrent ones may
be over-denied by design (tests/throttle/test_cluster_store.py checks that they never over-admit).

Both stores take the request's time as an argument, so one hand-moved clock drives both: time jumps
across second, minute, hour and billing-period boundaries, where the window keys change. Redis
expires counters by its own clock, the memory store by the request's; only the current windows are
compared, which neither has expired. Every example uses subscription, API and application ids of its
own, and deletes its keys afterwards, so it never meets another test's counters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.redis_cluster import RedisClusterNodes
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL, unique
from throttle.cluster_store import ClusterCounterStore
from throttle.counters import DescriptorWindows, HitResult, MemoryCounterStore
from throttle.limits import SharedLimits, Window, windows_for
from throttle.redis_store import RedisCounterStore
from tollway.catalog.limits import PlanLimits
from tollway.vocabulary import LimitScope, QuotaPolicy

START = datetime(2026, 5, 31, 23, 58, 58, 500_000, tzinfo=UTC)  # near a minute, hour, day, month end
SUBSCRIPTIONS = 3
# Clock moves between steps: none (same windows), within a second, across a second, minute, hour,
# day, and a month (a new billing period).
ADVANCES = (0.0, 0.0, 0.0, 0.4, 1.0, 7.0, 61.0, 3600.0, 86400.0, 31 * 86400.0)

small = st.integers(0, 6)
plans = st.builds(
    PlanLimits,
    requests_per_second=small,
    requests_per_minute=st.integers(0, 10),
    requests_per_hour=st.integers(0, 14),
    requests_per_day=st.integers(0, 18),
    monthly_quota=st.integers(0, 20),
    quota_policy=st.sampled_from((QuotaPolicy.HARD, QuotaPolicy.SOFT)),
)


@dataclass(frozen=True)
class Hit:
    # Per descriptor: index into the example's subscriptions, and whether it enforces (not shadow).
    descriptors: tuple[tuple[int, bool], ...]
    hits: int


hit = st.builds(
    Hit,
    descriptors=st.lists(
        st.tuples(st.integers(0, SUBSCRIPTIONS - 1), st.sampled_from((True, True, True, False))),
        min_size=1,
        max_size=3,
    ).map(tuple),
    hits=st.integers(1, 4),
)
# One step: the clock moves, then a few requests arrive together (one Redis batch).
steps = st.lists(
    st.tuples(st.sampled_from(ADVANCES), st.lists(hit, min_size=1, max_size=3)), min_size=1, max_size=25
)


@pytest.mark.parametrize("backend", ["redis", "cluster"])
@settings(max_examples=60, deadline=None)
@given(
    plan_of=st.lists(plans, min_size=SUBSCRIPTIONS, max_size=SUBSCRIPTIONS),
    api_limits=st.tuples(small, small, st.integers(0, 10)),
    application_limits=st.tuples(small, st.integers(0, 10)),
    anchor_days=st.lists(st.integers(0, 28), min_size=SUBSCRIPTIONS, max_size=SUBSCRIPTIONS),
    sequence=steps,
)
async def test_memory_and_redis_stores_decide_and_count_alike(
    backend: str,
    redis_cluster: RedisClusterNodes,
    plan_of: list[PlanLimits],
    api_limits: tuple[int, int, int],
    application_limits: tuple[int, int],
    anchor_days: list[int],
    sequence: list[tuple[float, list[Hit]]],
) -> None:
    subscriptions = [unique("eq-sub") for _ in range(SUBSCRIPTIONS)]
    # Every subscription is of one API; the first two belong to one application.
    api = SharedLimits(LimitScope.API, unique("eq-api"), *api_limits)
    application = SharedLimits(LimitScope.APPLICATION, unique("eq-app"), *application_limits)
    shared_of = [(api, application), (api, application), (api,)]

    def windows(index: int, now: datetime) -> list[Window]:
        return windows_for(subscriptions[index], plan_of[index], now, anchor_days[index], shared_of[index])

    memory = MemoryCounterStore()
    redis: RedisCounterStore
    if backend == "redis":
        redis = RedisCounterStore(SHARED_REDIS_URL, 2000)
    else:
        redis = ClusterCounterStore(nodes=redis_cluster.nodes, timeout_ms=2000)
        await redis.connect()
    keys: set[str] = set()
    now = START
    try:
        for step, (advance, hits) in enumerate(sequence):
            now += timedelta(seconds=advance)
            requests = [
                ([DescriptorWindows(windows(index, now), enforce) for index, enforce in h.descriptors], h)
                for h in hits
            ]
            keys.update(w.key for parts, _ in requests for part in parts for w in part.windows)
            # Concurrent, as the service issues them: the memory store answers them in call order, the
            # Redis store in one script call that takes them in the same order.
            from_memory: list[list[HitResult]] = await asyncio.gather(
                *(memory.step(parts, h.hits, now) for parts, h in requests)
            )
            if backend == "redis":
                from_redis: list[list[HitResult]] = await asyncio.gather(
                    *(redis.step(parts, h.hits, now) for parts, h in requests)
                )
            else:
                from_redis = [await redis.step(parts, h.hits, now) for parts, h in requests]
            assert from_redis == from_memory, f"step {step} at {now.isoformat()}: {hits}"
            current = sorted({w.key for index in range(SUBSCRIPTIONS) for w in windows(index, now)})
            assert await redis.read(current, now) == await memory.read(current, now), f"step {step}"
    finally:
        if keys:
            await redis.forget(sorted(keys))
        await redis.close()
