"""Exact counting on a real Redis Cluster under concurrency: two throttle replicas, each its own OS
process with its own cluster client, and 64 concurrent clients spread over both. Each trial drives
subscriptions whose keys land on all three masters, twice their plan's N per minute each: exactly N
are admitted per subscription, trial after trial. With an API-wide limit on top (its counter in
another slot, taken as a second step): a limit above what the subscriptions can use changes nothing;
one below it admits exactly that many in all, none beyond any subscription's N, and every counter
ends holding exactly what was admitted (refused requests consumed nothing)."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.redis_cluster import RedisClusterNodes
from tests.throttle.replica_server import PLANS, SHARED_API_LIMITS
from tests.throttle.throttle_fixtures import free_port
from throttle.cluster_store import ClusterCounterStore
from throttle.limits import API, SharedLimits, windows_for

ROOT = Path(__file__).resolve().parents[2]
CLOCK = datetime(2026, 4, 4, 4, 4, 4, tzinfo=UTC)
CLIENTS = 64
TRIALS = 8
PER_MASTER = 2  # subscriptions per master in a trial
PLAN_ID = "p_minute"
N = PLANS[PLAN_ID].requests_per_minute
RLS = rls_pb2.RateLimitResponse


def _request(sub_id: str, api_id: str) -> rls_pb2.RateLimitRequest:
    entries = [
        ratelimit_pb2.RateLimitDescriptor.Entry(key="subscription_id", value=sub_id),
        ratelimit_pb2.RateLimitDescriptor.Entry(key="plan_id", value=PLAN_ID),
        ratelimit_pb2.RateLimitDescriptor.Entry(key="api_id", value=api_id),
    ]
    return rls_pb2.RateLimitRequest(
        domain="tollway", descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=entries)]
    )


@dataclass
class ClusterReplicas:
    stubs: list[rls_pb2_grpc.RateLimitServiceStub]
    api_prefix: str

    async def drive(self, requests: list[rls_pb2.RateLimitRequest]) -> list[bool]:
        """Every request once, by 64 concurrent clients, each alternating between the replicas;
        whether each was admitted."""
        admitted = [False] * len(requests)
        pending = iter(range(len(requests)))

        async def client(first: int) -> None:
            stubs = itertools.cycle(self.stubs[first:] + self.stubs[:first])
            for index in pending:
                response = await next(stubs).ShouldRateLimit(requests[index], timeout=30)
                # Admitted uncounted (Redis did not answer in time) would read as over-admission.
                assert not response.dynamic_metadata.fields["store_unavailable"].bool_value
                admitted[index] = response.overall_code == RLS.OK

        await asyncio.gather(*(client(n % len(self.stubs)) for n in range(CLIENTS)))
        return admitted


@pytest.fixture(scope="module")
def replica_processes(redis_cluster: RedisClusterNodes) -> Iterator[tuple[list[int], str]]:
    """Two replicas on the cluster, for the module's tests: (their ports, the prefix of their APIs)."""
    api_prefix = f"api_{secrets.token_hex(4)}_"
    ports = [free_port(), free_port()]
    arguments = [redis_cluster.nodes_setting, CLOCK.isoformat(), "cluster", api_prefix]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.throttle.replica_server", str(port), *arguments],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
        )
        for port in ports
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == b"ready"
        yield ports, api_prefix
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


@pytest.fixture
async def replicas(replica_processes: tuple[list[int], str]) -> AsyncIterator[ClusterReplicas]:
    ports, api_prefix = replica_processes
    async with AsyncExitStack() as stack:
        stubs = []
        for port in ports:
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
            stubs.append(rls_pb2_grpc.RateLimitServiceStub(channel))
        yield ClusterReplicas(stubs, api_prefix)


async def _trial(
    replicas: ClusterReplicas, cluster: RedisClusterNodes, api_id: str
) -> tuple[dict[str, int], dict[str, int]]:
    """(admitted per subscription, counters after) for twice N requests per subscription."""
    subs = cluster.subscriptions_on_every_master(PER_MASTER)
    order = [sub for sub in subs for _ in range(2 * N)]
    random.shuffle(order)
    admitted_flags = await replicas.drive([_request(sub, api_id) for sub in order])
    admitted = dict.fromkeys(subs, 0)
    for sub, flag in zip(order, admitted_flags, strict=True):
        admitted[sub] += flag
    size = api_id.removeprefix(replicas.api_prefix).split("_")[0]
    shared = (
        (SharedLimits(API, api_id, per_minute=SHARED_API_LIMITS[size]),) if size in SHARED_API_LIMITS else ()
    )
    windows = {sub: windows_for(sub, PLANS[PLAN_ID], CLOCK, 0, shared) for sub in subs}
    keys = sorted({w.key for own in windows.values() for w in own})
    store = ClusterCounterStore(nodes=cluster.nodes, timeout_ms=2000)
    try:
        await store.connect()
        counters = dict(zip(keys, await store.read(keys, CLOCK), strict=True))
    finally:
        await store.close()
    return admitted, counters


async def test_exactly_n_per_subscription_on_every_master(
    replicas: ClusterReplicas, redis_cluster: RedisClusterNodes
) -> None:
    for _ in range(TRIALS):
        admitted, counters = await _trial(replicas, redis_cluster, api_id="")
        assert admitted == dict.fromkeys(admitted, N)
        assert set(counters.values()) == {N}  # each subscription's minute and billing period


async def test_exact_with_an_api_wide_limit_in_another_slot(
    replicas: ClusterReplicas, redis_cluster: RedisClusterNodes
) -> None:
    for trial in range(TRIALS):
        size = "small" if trial % 2 == 0 else "large"
        api_id = f"{replicas.api_prefix}{size}_{trial}"
        admitted, counters = await _trial(replicas, redis_cluster, api_id)
        api_key = next(key for key in counters if "{api:" in key)
        total = sum(admitted.values())
        if size == "large":
            # The API's limit is above what its subscriptions may use: each is limited by its plan.
            assert admitted == dict.fromkeys(admitted, N)
        else:
            assert total == SHARED_API_LIMITS["small"] < N * len(admitted)
            assert all(count <= N for count in admitted.values())
        # Counted exactly what was admitted, in every window: refusals (and their compensated
        # steps) consumed nothing.
        assert counters[api_key] == total
        for sub, count in admitted.items():
            assert {v for k, v in counters.items() if "{sub:" + sub + "}" in k} == {count}
