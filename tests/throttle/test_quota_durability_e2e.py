"""Through a real Envoy, on PostgreSQL and a redis-server of the test's own (no persistence): a HARD
monthly quota of N is used up, Redis is restarted empty, and the gateway does not grant the quota
again. The throttle notices the loss (its marker key is gone), answers 429 `quota_rebuilding` for the
subscription meanwhile, rebuilds the billing-period counter from what usage metered, and from then on
answers 429 `quota_exceeded` with 0 remaining. Failure mode deny: while Redis itself is unreachable
Envoy answers 503 (mode allow would admit, uncounted, see the README)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import POSTGRES_URL
from tests.e2e.harness import Stack, start_stack, stop_stack
from tests.throttle.throttle_fixtures import PrivateRedis
from tests.usage.usage_stack import totals_by, wait_until
from tollway.catalog.v1 import catalog_pb2
from tollway.db import Database
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.usage.v1 import usage_pb2

pytestmark = pytest.mark.e2e

QUOTA = 6


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: PrivateRedis) -> Iterator[Stack]:
    schema_name = f"tw_test_{secrets.token_hex(6)}"
    started = start_stack(
        Path(tmp_path_factory.mktemp("quota-durability")),
        database_url=POSTGRES_URL,
        database_schema=schema_name,
        ratelimit_store="redis",
        redis_url=redis_server.url,
        ratelimit_failure_mode="deny",
        usage_flush_ms=50,
    )
    try:
        yield started
    finally:
        stop_stack(started)

        async def drop() -> None:
            db = Database(POSTGRES_URL)
            async with db.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE'))
            await db.dispose()

        asyncio.run(drop())


def outcome(stack: Stack, path: str, key: str) -> str:
    response = stack.get(path, {"x-api-key": key})
    if response.status == 429:
        return f"429 {response.json()['reason']}"
    return str(response.status)


def test_a_hard_monthly_quota_is_not_granted_again_after_redis_restarts_empty(
    stack: Stack, redis_server: PrivateRedis
) -> None:
    plan = stack.create_plan("hard-quota", limits=catalog_pb2.PlanLimits(monthly_quota=QUOTA))
    api = stack.create_api("durable", "/durable/v1", [plan.id])
    app = stack.create_application("durable-app")
    sub = stack.subscribe(app.id, api.id, plan.id)
    key = stack.issue_key(app.id).key
    path = "/durable/v1/items"
    response, _ = stack.wait_for_status(path, 200, {"x-api-key": key}, timeout=15)
    assert response.status == 200
    answers = [outcome(stack, path, key) for _ in range(QUOTA + 2)]
    assert answers.count("200") == QUOTA - 1  # with the first one: the whole quota
    assert answers[-2:] == ["429 quota_exceeded"] * 2

    # usage metered the QUOTA admitted requests (Envoy's access log, flushed every second).
    def metered() -> bool:
        rows = totals_by(stack, api.id, usage_pb2.DIMENSION_SUBSCRIPTION)
        return (sub.id,) in rows and rows[(sub.id,)].success == QUOTA

    assert wait_until(metered, timeout=20)

    redis_server.stop()
    redis_server.start()  # no persistence: counters and marker gone
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen.append(outcome(stack, path, key))
        if seen[-1] == "429 quota_exceeded":
            break
        time.sleep(0.05)
    assert "200" not in seen, seen
    assert seen[-1] == "429 quota_exceeded", seen[-10:]
    assert "429 quota_rebuilding" in seen  # refused, not granted, while the counter was rebuilt

    quota = throttle_pb2_grpc.QuotaServiceStub(stack._channel)
    report = stack.call(
        quota.GetSubscriptionQuota, throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=sub.id)
    )
    [period] = [w for w in report.windows if w.window == throttle_pb2.WINDOW_BILLING_PERIOD]
    assert (period.limit, period.used, period.remaining) == (QUOTA, QUOTA, 0)
