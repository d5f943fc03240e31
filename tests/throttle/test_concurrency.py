"""Exact counting under concurrency: 64 concurrent ShouldRateLimit calls on one subscription admit
exactly N, over many trials. Two throttle replicas, each its own OS process with its own gRPC server
and Redis client, share the real Redis (separate processes, so their calls truly interleave); the
memory store is tested with its one replica."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.support import grpc_server
from tests.throttle.replica_server import PLANS
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL, FakeClock, free_port, unique
from throttle.counters import CounterStore, MemoryCounterStore
from throttle.index import ThrottleIndex, ThrottleSnapshot
from throttle.service import ThrottleService
from throttle.servicer import RateLimitServicer
from tollway.catalog.limits import PlanLimits

ROOT = Path(__file__).resolve().parents[2]
CLOCK = datetime(2026, 3, 3, 3, 3, 3, tzinfo=UTC)
CLIENTS = 64
TRIALS = 25
RLS = rls_pb2.RateLimitResponse


def _request(sub_id: str, plan_id: str) -> rls_pb2.RateLimitRequest:
    entries = [
        ratelimit_pb2.RateLimitDescriptor.Entry(key="subscription_id", value=sub_id),
        ratelimit_pb2.RateLimitDescriptor.Entry(key="plan_id", value=plan_id),
    ]
    return rls_pb2.RateLimitRequest(
        domain="tollway", descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=entries)]
    )


class Replicas:
    def __init__(self, stubs: list[rls_pb2_grpc.RateLimitServiceStub], index: ThrottleIndex) -> None:
        self.stubs = stubs
        self.index = index

    async def burst(self, sub_id: str, plan_id: str) -> int:
        """64 concurrent calls, alternating between replicas; returns how many were admitted."""
        request = _request(sub_id, plan_id)
        stubs = itertools.cycle(self.stubs)
        calls = [next(stubs).ShouldRateLimit(request, timeout=10) for _ in range(CLIENTS)]
        responses = await asyncio.gather(*calls)
        return sum(1 for r in responses if r.overall_code == RLS.OK)


async def _replicas(stack: AsyncExitStack, stores: list[CounterStore]) -> Replicas:
    index = ThrottleIndex(snapshot=ThrottleSnapshot.build(PLANS, []))
    clock = FakeClock(CLOCK)
    stubs = []
    for store in stores:
        stack.push_async_callback(store.close)
        servicer = RateLimitServicer(ThrottleService(index, store, clock=clock))
        channel = await stack.enter_async_context(
            grpc_server(
                lambda s, servicer=servicer: rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, s)
            )
        )
        stubs.append(rls_pb2_grpc.RateLimitServiceStub(channel))
    return Replicas(stubs, index)


@pytest.fixture
async def redis_replicas() -> AsyncIterator[Replicas]:
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.throttle.replica_server",
                str(port),
                SHARED_REDIS_URL,
                CLOCK.isoformat(),
            ],
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
        async with AsyncExitStack() as stack:
            stubs = []
            for port in ports:
                channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
                stubs.append(rls_pb2_grpc.RateLimitServiceStub(channel))
            yield Replicas(stubs, ThrottleIndex(snapshot=ThrottleSnapshot.build(PLANS, [])))
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


@pytest.fixture
async def memory_replica() -> AsyncIterator[Replicas]:
    async with AsyncExitStack() as stack:
        yield await _replicas(stack, [MemoryCounterStore()])


def _expected(plan: PlanLimits) -> int:
    return min(
        limit
        for limit in (
            plan.requests_per_second,
            plan.requests_per_minute,
            plan.requests_per_hour,
            plan.monthly_quota,
        )
        if limit
    )


async def _trials(replicas: Replicas) -> None:
    results = []
    for trial in range(TRIALS):
        plan_id, plan = list(PLANS.items())[trial % len(PLANS)]
        # A subscription the replicas have not loaded: limited by the plan its descriptor names.
        sub_id = unique("sub")
        results.append((plan_id, await replicas.burst(sub_id, plan_id), _expected(plan)))
    assert [(p, admitted) for p, admitted, _ in results] == [(p, expected) for p, _, expected in results]


async def test_two_replicas_sharing_redis_admit_exactly_n(redis_replicas: Replicas) -> None:
    await _trials(redis_replicas)


async def test_one_replica_memory_store_admits_exactly_n(memory_replica: Replicas) -> None:
    await _trials(memory_replica)
