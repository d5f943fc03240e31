"""Redis failing mid-test, on a redis-server of the test's own: answers keep arriving within the
timeout, following the configured failure mode, and counting resumes by itself when Redis is back.
Both ways Redis can fail are covered: the process gone (connection refused) and the process frozen
(SIGSTOP: connections accepted by the kernel, never answered, so only the timeout can save the call)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.support import grpc_server
from tests.throttle.throttle_fixtures import FakeClock, PrivateRedis, index_with, subscription
from throttle.metrics import ThrottleMetrics
from throttle.redis_store import RedisCounterStore
from throttle.service import ThrottleService
from throttle.servicer import RateLimitServicer
from tollway.catalog.limits import PlanLimits

RLS = rls_pb2.RateLimitResponse
TIMEOUT_MS = 50
# Generous functional bound for "within the timeout" (the timeout plus scheduling on a busy machine).
ANSWER_BOUND_S = 1.0
PLAN = PlanLimits(requests_per_minute=1000)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)
        server.stop()


class Harness:
    def __init__(
        self, stub: rls_pb2_grpc.RateLimitServiceStub, sub_id: str, metrics: ThrottleMetrics
    ) -> None:
        self.stub = stub
        self.sub_id = sub_id
        self.metrics = metrics

    async def call(self) -> tuple[rls_pb2.RateLimitResponse | grpc.StatusCode, float]:
        entries = [ratelimit_pb2.RateLimitDescriptor.Entry(key="subscription_id", value=self.sub_id)]
        request = rls_pb2.RateLimitRequest(
            domain="tollway", descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=entries)]
        )
        started = time.monotonic()
        try:
            response: rls_pb2.RateLimitResponse | grpc.StatusCode = await self.stub.ShouldRateLimit(
                request, timeout=10
            )
        except grpc.aio.AioRpcError as error:
            response = error.code()
        return response, time.monotonic() - started

    async def wait_counting(
        self, remaining: int | None = None, timeout: float = 10.0
    ) -> rls_pb2.RateLimitResponse:
        """Calls until an answer carries a counted status again (Redis reachable)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response, _ = await self.call()
            if isinstance(response, rls_pb2.RateLimitResponse) and response.statuses[0].HasField(
                "current_limit"
            ):
                return response
            await asyncio.sleep(0.05)
        raise AssertionError("counting did not resume")


async def _harness(redis_url: str, mode: str) -> AsyncIterator[Harness]:
    sub = subscription("p")
    metrics = ThrottleMetrics()
    store = RedisCounterStore(redis_url, TIMEOUT_MS, cooldown=0.2, metrics=metrics)
    clock = FakeClock(datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC))
    service = ThrottleService(
        index_with({"p": PLAN}, [sub]), store, failure_mode=mode, clock=clock, metrics=metrics
    )
    servicer = RateLimitServicer(service)
    try:
        async with grpc_server(
            lambda s: rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, s)
        ) as ch:
            yield Harness(rls_pb2_grpc.RateLimitServiceStub(ch), sub.id, metrics)
    finally:
        await store.close()


@pytest.fixture
async def allow(redis_server: PrivateRedis) -> AsyncIterator[Harness]:
    async for harness in _harness(redis_server.url, "allow"):
        yield harness


@pytest.fixture
async def deny(redis_server: PrivateRedis) -> AsyncIterator[Harness]:
    async for harness in _harness(redis_server.url, "deny"):
        yield harness


async def _assert_outage_answers(harness: Harness, expected: object) -> None:
    for _ in range(5):
        response, elapsed = await harness.call()
        assert elapsed < ANSWER_BOUND_S
        if expected == "allowed":
            assert isinstance(response, rls_pb2.RateLimitResponse)
            assert response.overall_code == RLS.OK
            assert response.dynamic_metadata.fields["store_unavailable"].bool_value is True
        else:
            assert response == expected


async def test_redis_stopped_fail_open_then_recovers(allow: Harness, redis_server: PrivateRedis) -> None:
    first = await allow.wait_counting()
    assert first.statuses[0].limit_remaining == PLAN.requests_per_minute - 1
    redis_server.stop()
    await _assert_outage_answers(allow, "allowed")
    assert allow.metrics.decisions[("p", "store_unavailable_allowed")] == 5
    assert sum(allow.metrics.redis_errors.values()) >= 1
    redis_server.start()
    # A fresh redis-server (no persistence): counting starts again from zero.
    resumed = await allow.wait_counting()
    assert resumed.statuses[0].limit_remaining == PLAN.requests_per_minute - 1
    again, _ = await allow.call()
    assert isinstance(again, rls_pb2.RateLimitResponse)
    assert again.statuses[0].limit_remaining == PLAN.requests_per_minute - 2


async def test_redis_stopped_fail_closed_then_recovers(deny: Harness, redis_server: PrivateRedis) -> None:
    await deny.wait_counting()
    redis_server.stop()
    await _assert_outage_answers(deny, grpc.StatusCode.UNAVAILABLE)
    assert deny.metrics.decisions[("p", "store_unavailable_denied")] == 5
    redis_server.start()
    await deny.wait_counting()


async def test_frozen_redis_times_out_within_the_deadline(allow: Harness, redis_server: PrivateRedis) -> None:
    await allow.wait_counting()
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        await _assert_outage_answers(allow, "allowed")
        assert allow.metrics.redis_errors["TimeoutError"] >= 1
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    resumed = await allow.wait_counting()
    # What was counted before the freeze is still there: Redis only paused.
    assert resumed.statuses[0].limit_remaining < PLAN.requests_per_minute - 1
