"""A HARD monthly quota survives a Redis that restarts without persistence: the throttle's gRPC service
on a redis-server of the test's own, its lost billing-period counters rebuilt from usage's summaries in
a real database (SQLite and PostgreSQL). N admitted, Redis restarted empty, and the quota is not
granted again: refused while the counter is rebuilt, then `remaining` 0 from the rebuilt count."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from redis.asyncio import Redis

from tests.support import grpc_server
from tests.throttle.throttle_fixtures import PrivateRedis, index_with, subscription
from tests.usage.usage_entries import entry
from throttle.admitted import UsageWindowCounts
from throttle.counters import MemoryCounterStore
from throttle.limits import PERIOD, expire_at, windows_for
from throttle.metrics import ThrottleMetrics
from throttle.redis_store import RedisCounterStore
from throttle.service import ThrottleService
from throttle.servicer import RateLimitServicer
from tollway.catalog.limits import PlanLimits
from tollway.db import Database
from usage.classify import classify
from usage.store import UsageStore

RLS = rls_pb2.RateLimitResponse
QUOTA = 5
HARD = PlanLimits(monthly_quota=QUOTA)
COUNTED_ONLY = PlanLimits()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Throttle:
    def __init__(self, stub: rls_pb2_grpc.RateLimitServiceStub, service: ThrottleService) -> None:
        self.stub = stub
        self.service = service
        self.hard = next(
            s for s, info in service.index.snapshot.subscriptions.items() if info.plan_id == "hard"
        )
        self.free = next(
            s for s, info in service.index.snapshot.subscriptions.items() if info.plan_id == "free"
        )

    async def call(self, subscription_id: str) -> tuple[str, str]:
        """(OK | OVER_LIMIT | a gRPC status name, the problem reason of a refusal)."""
        entries = [ratelimit_pb2.RateLimitDescriptor.Entry(key="subscription_id", value=subscription_id)]
        request = rls_pb2.RateLimitRequest(
            domain="tollway", descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=entries)]
        )
        try:
            response = await self.stub.ShouldRateLimit(request, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code().name, ""
        if response.overall_code == RLS.OK:
            return "OK", ""
        return "OVER_LIMIT", json.loads(response.raw_body)["reason"]

    async def period_used(self, subscription_id: str) -> int:
        report = await self.service.quota(subscription_id)
        return next(w.used for w in report.windows if w.window.name == PERIOD)


@pytest.fixture
async def throttle(redis_server: PrivateRedis, database: Database) -> AsyncIterator[Throttle]:
    index = index_with({"hard": HARD, "free": COUNTED_ONLY}, [subscription("hard"), subscription("free")])
    store = RedisCounterStore(redis_server.url, 1000, cooldown=0.05)
    # Deny mode: while Redis is unreachable nothing is admitted (allow mode admits, uncounted).
    service = ThrottleService(
        index,
        store,
        failure_mode="deny",
        metrics=ThrottleMetrics(),
        usage=UsageWindowCounts(database),
        settle_seconds=0.3,
    )
    servicer = RateLimitServicer(service)
    try:
        async with grpc_server(
            lambda s: rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, s)
        ) as ch:
            yield Throttle(rls_pb2_grpc.RateLimitServiceStub(ch), service)
    finally:
        assert service.rebuilder is not None
        await service.rebuilder.stop()
        await store.close()


async def meter(database: Database, subscription_id: str, count: int) -> None:
    """What usage/ records for `count` requests Envoy let through (their access-log entries)."""
    now = time.time()
    records = [
        classify(entry(200, subscription_id=subscription_id, plan_id="hard", start=now), "e2e", now)
        for _ in range(count)
    ]
    assert (await UsageStore(database).apply(records)).counted == count


async def until_settled(throttle: Throttle, subscription_id: str, seen: list[tuple[str, str]]) -> None:
    """Calls until the answer is no longer about Redis coming back or the rebuild (every answer kept)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = await throttle.call(subscription_id)
        seen.append(answer)
        if answer not in (("UNAVAILABLE", ""), ("OVER_LIMIT", "quota_rebuilding")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the quota was never rebuilt: {seen[-5:]}")


async def test_a_hard_quota_is_not_granted_twice_after_redis_restarts_empty(
    throttle: Throttle, redis_server: PrivateRedis, database: Database
) -> None:
    # The first call finds this Redis without the marker: the (empty) rebuild runs first.
    first: list[tuple[str, str]] = []
    await until_settled(throttle, throttle.hard, first)
    assert first[-1] == ("OK", "")
    answers = [await throttle.call(throttle.hard) for _ in range(QUOTA + 2)]
    assert answers.count(("OK", "")) == QUOTA - 1
    assert answers[-1] == ("OVER_LIMIT", "quota_exceeded")
    await meter(database, throttle.hard, QUOTA)  # usage metered the QUOTA admitted requests

    redis_server.stop()
    redis_server.start()  # no persistence: every counter and the marker are gone
    seen: list[tuple[str, str]] = []
    await until_settled(throttle, throttle.hard, seen)
    assert ("OK", "") not in seen, seen
    assert ("OVER_LIMIT", "quota_rebuilding") in seen  # noticed the loss, refused meanwhile
    assert seen[-1] == ("OVER_LIMIT", "quota_exceeded")
    assert await throttle.period_used(throttle.hard) == QUOTA  # remaining 0, from usage's count
    assert throttle.service.metrics.quota_rebuilds["completed"] >= 2
    assert throttle.service.metrics.decisions[("hard", "quota_rebuilding")] >= 1


async def test_only_hard_quotas_wait_for_the_rebuild(throttle: Throttle, redis_server: PrivateRedis) -> None:
    await until_settled(throttle, throttle.hard, [])
    assert throttle.service.rebuilder is not None
    throttle.service.rebuilder.settle_seconds = 5.0  # a long rebuild
    redis_server.stop()
    redis_server.start()
    seen: list[tuple[str, str]] = []
    while ("OVER_LIMIT", "quota_rebuilding") not in seen:
        seen.append(await throttle.call(throttle.hard))
        assert len(seen) < 200, seen
    # A subscription without a HARD quota is admitted and counted as usual meanwhile.
    assert await throttle.call(throttle.free) == ("OK", "")
    assert await throttle.period_used(throttle.free) == 1
    assert throttle.service.rebuilder.running


async def test_a_redis_lost_again_during_the_rebuild_makes_it_start_over(
    throttle: Throttle, redis_server: PrivateRedis, database: Database
) -> None:
    await meter(database, throttle.hard, QUOTA)
    assert throttle.service.rebuilder is not None
    throttle.service.rebuilder.settle_seconds = 1.0
    seen: list[tuple[str, str]] = [await throttle.call(throttle.hard)]  # starts the rebuild
    assert seen[0] == ("OVER_LIMIT", "quota_rebuilding")
    client = Redis.from_url(redis_server.url)
    try:  # until the rebuild has begun (its token key is there), settling
        for _ in range(200):
            if await client.keys("tw:quota:rebuild:*"):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the rebuild never began")
    finally:
        await client.aclose()
    redis_server.stop()  # mid-rebuild: its token goes with everything else
    redis_server.start()
    await until_settled(throttle, throttle.hard, seen)
    assert seen[-1] == ("OVER_LIMIT", "quota_exceeded") and ("OK", "") not in seen
    assert throttle.service.metrics.quota_rebuilds["lost_again"] >= 1
    assert await throttle.period_used(throttle.hard) == QUOTA


async def test_rebuilt_counts_tile_each_subscription_s_own_period(database: Database) -> None:
    """Day, hour and minute summaries add up to each period's admitted count; usage before a
    subscription's own period start (anchor day 15) is not part of it; throttled requests are not
    admitted; the counters are the periods' own keys."""
    now = datetime(2026, 1, 20, 10, 5, tzinfo=UTC)
    calendar, anchored = subscription("hard"), subscription("hard", anchor=15)
    store = UsageStore(database)
    moments = [
        datetime(2026, 1, 10, 12),
        datetime(2026, 1, 16, 9),
        datetime(2026, 1, 20, 8, 30),
        datetime(2026, 1, 20, 10, 3),
    ]
    for sub in (calendar, anchored):
        for moment in moments:
            at = moment.replace(tzinfo=UTC).timestamp()
            records = [
                classify(entry(code, subscription_id=sub.id, start=at), "e2e", at) for code in (200, 404, 503)
            ]
            records.append(
                classify(
                    entry(429, subscription_id=sub.id, start=at, flags={"rate_limited": True}), "e2e", at
                )
            )
            await store.apply(records)
    service = ThrottleService(
        index_with({"hard": HARD}, [calendar, anchored]),
        MemoryCounterStore(),
        clock=lambda: now,
        usage=UsageWindowCounts(database),
    )
    assert service.rebuilder is not None
    counters = {key: (count, expire) for key, count, expire in await service.rebuilder.period_counters()}
    by_sub = {
        sub.id: windows_for(sub.id, HARD, now, sub.billing_anchor_day)[-1] for sub in (calendar, anchored)
    }
    assert counters == {
        by_sub[calendar.id].key: (4 * 3, expire_at(by_sub[calendar.id])),
        by_sub[anchored.id].key: (3 * 3, expire_at(by_sub[anchored.id])),
    }
