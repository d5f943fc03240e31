"""Limits shared by an API's subscribers and by an application's subscriptions: decisions, the
admin RPCs behind them (SQLite and PostgreSQL), and the quota report."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest

from tests.support import grpc_server
from tests.throttle.throttle_fixtures import FakeClock, unique
from throttle.counters import MemoryCounterStore
from throttle.index import SubscriptionInfo, ThrottleIndex, ThrottleSnapshot
from throttle.limits import API, APPLICATION, PlanLimits, SharedLimits
from throttle.rls_response import rate_limit_response
from throttle.service import ThrottleService
from throttle.servicer import QuotaServicer
from throttle.store import TrafficLimitStore
from tollway import schema
from tollway.db import Database
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc

PLAN = PlanLimits(requests_per_minute=100)


def _sub(app: str, api: str) -> SubscriptionInfo:
    return SubscriptionInfo(unique("sub"), "p", app, api, "ACTIVE")


def _service(subs: list[SubscriptionInfo], shared: list[SharedLimits]) -> ThrottleService:
    index = ThrottleIndex(snapshot=ThrottleSnapshot.build({"p": PLAN}, subs, shared))
    clock = FakeClock(datetime(2026, 9, 9, 9, 0, 0, tzinfo=UTC))
    return ThrottleService(index, MemoryCounterStore(), clock=clock)


async def _allowed(service: ThrottleService, sub: SubscriptionInfo) -> bool:
    decision = await service.should_rate_limit("tollway", [{"subscription_id": sub.id}])
    return not decision.over_limit


async def test_api_limit_is_shared_by_all_its_subscribers() -> None:
    a, b = _sub("app_a", "api_x"), _sub("app_b", "api_x")
    other_api = _sub("app_a", "api_y")
    service = _service([a, b, other_api], [SharedLimits(API, "api_x", per_minute=3)])
    assert [await _allowed(service, s) for s in (a, b, a, b, a)] == [True, True, True, False, False]
    # Another API is not affected.
    assert await _allowed(service, other_api)
    denied = await service.should_rate_limit("tollway", [{"subscription_id": b.id}])
    response = rate_limit_response(denied)
    problem = json.loads(response.raw_body)
    assert (problem["scope"], problem["window"], problem["limit"]) == ("api", "minute", 3)
    assert "shared by all its subscribers" in problem["detail"]
    # The API's denials did not count against the subscription's own windows.
    report = await service.quota(a.id)
    by_scope = {(w.window.scope, w.window.name): w.used for w in report.windows}
    assert by_scope == {
        ("subscription", "minute"): 2,
        ("subscription", "billing_period"): 2,
        ("api", "minute"): 3,
    }


async def test_application_limit_spans_the_applications_subscriptions() -> None:
    on_x, on_y = _sub("app_a", "api_x"), _sub("app_a", "api_y")
    stranger = _sub("app_b", "api_x")
    service = _service([on_x, on_y, stranger], [SharedLimits(APPLICATION, "app_a", per_hour=2)])
    assert [await _allowed(service, s) for s in (on_x, on_y, on_x)] == [True, True, False]
    assert await _allowed(service, stranger)
    status = rate_limit_response(
        await service.should_rate_limit("tollway", [{"subscription_id": stranger.id}])
    ).statuses[0]
    assert status.current_limit.name == "minute"  # the stranger's own plan window, not app_a's


async def test_tightest_window_is_reported_whichever_scope_it_has() -> None:
    sub = _sub("app_a", "api_x")
    service = _service([sub], [SharedLimits(API, "api_x", per_minute=10)])
    status = rate_limit_response(
        await service.should_rate_limit("tollway", [{"subscription_id": sub.id}])
    ).statuses[0]
    assert (status.current_limit.requests_per_unit, status.limit_remaining) == (10, 9)


async def test_subscription_not_loaded_yet_uses_the_descriptors_api_and_application() -> None:
    service = _service([], [SharedLimits(API, "api_x", per_second=1)])
    entries = {"subscription_id": "sub_new", "plan_id": "p", "api_id": "api_x", "application_id": "app_q"}
    assert not (await service.should_rate_limit("tollway", [entries])).over_limit
    assert (await service.should_rate_limit("tollway", [entries])).over_limit


@pytest.fixture
async def quota_stub(
    database: Database,
) -> AsyncIterator[tuple[throttle_pb2_grpc.QuotaServiceStub, Database]]:
    index = ThrottleIndex(database)
    service = ThrottleService(index, MemoryCounterStore())
    servicer = QuotaServicer(service, TrafficLimitStore(database))
    async with grpc_server(lambda s: throttle_pb2_grpc.add_QuotaServiceServicer_to_server(servicer, s)) as ch:
        yield throttle_pb2_grpc.QuotaServiceStub(ch), database


async def _api_and_app(db: Database) -> tuple[str, str]:
    api = schema.Api(id=schema.new_id("api"), name="w", context_path=f"/{unique('w')}")
    app = schema.Application(id=schema.new_id("app"), name=unique("a"))
    async with db.session() as session:
        session.add(api)
        session.add(app)
        await session.commit()
    return api.id, app.id


async def test_traffic_limit_rpcs(quota_stub: tuple) -> None:
    stub, db = quota_stub
    api_id, app_id = await _api_and_app(db)
    revision = await db.current_revision()
    limit = throttle_pb2.TrafficLimit(
        scope=throttle_pb2.LIMIT_SCOPE_API, target_id=api_id, requests_per_minute=50
    )
    created = (await stub.SetTrafficLimit(throttle_pb2.SetTrafficLimitRequest(limit=limit))).limit
    assert created == limit
    assert await db.current_revision() > revision  # replicas will reload
    replaced = throttle_pb2.TrafficLimit(
        scope=throttle_pb2.LIMIT_SCOPE_API, target_id=api_id, requests_per_second=5, requests_per_day=9000
    )
    await stub.SetTrafficLimit(throttle_pb2.SetTrafficLimitRequest(limit=replaced))
    app_limit = throttle_pb2.TrafficLimit(
        scope=throttle_pb2.LIMIT_SCOPE_APPLICATION, target_id=app_id, requests_per_hour=7
    )
    await stub.SetTrafficLimit(throttle_pb2.SetTrafficLimitRequest(limit=app_limit))
    listed = (await stub.ListTrafficLimits(throttle_pb2.ListTrafficLimitsRequest())).limits
    assert list(listed) == [replaced, app_limit]

    index = ThrottleIndex(db)
    await index.reload()
    assert index.snapshot.api_limits[api_id] == SharedLimits(API, api_id, per_second=5, per_day=9000)
    assert index.snapshot.shared_for(api_id, app_id) == (
        SharedLimits(API, api_id, per_second=5, per_day=9000),
        SharedLimits(APPLICATION, app_id, per_hour=7),
    )

    await stub.DeleteTrafficLimit(
        throttle_pb2.DeleteTrafficLimitRequest(scope=throttle_pb2.LIMIT_SCOPE_API, target_id=api_id)
    )
    assert list((await stub.ListTrafficLimits(throttle_pb2.ListTrafficLimitsRequest())).limits) == [app_limit]


async def test_traffic_limit_rpcs_refuse_bad_input_without_change(quota_stub: tuple) -> None:
    stub, db = quota_stub
    api_id, _ = await _api_and_app(db)
    revision = await db.current_revision()
    bad = [
        (
            throttle_pb2.TrafficLimit(target_id=api_id, requests_per_minute=1),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            throttle_pb2.TrafficLimit(scope=throttle_pb2.LIMIT_SCOPE_SUBSCRIPTION, target_id=api_id),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (throttle_pb2.TrafficLimit(scope=throttle_pb2.LIMIT_SCOPE_API), grpc.StatusCode.INVALID_ARGUMENT),
        (
            throttle_pb2.TrafficLimit(
                scope=throttle_pb2.LIMIT_SCOPE_API, target_id=api_id, requests_per_day=2**63
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            throttle_pb2.TrafficLimit(scope=throttle_pb2.LIMIT_SCOPE_API, target_id="api_nope"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            throttle_pb2.TrafficLimit(scope=throttle_pb2.LIMIT_SCOPE_APPLICATION, target_id=api_id),
            grpc.StatusCode.NOT_FOUND,
        ),
    ]
    for limit, code in bad:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.SetTrafficLimit(throttle_pb2.SetTrafficLimitRequest(limit=limit))
        assert failure.value.code() == code, limit
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.DeleteTrafficLimit(
            throttle_pb2.DeleteTrafficLimitRequest(scope=throttle_pb2.LIMIT_SCOPE_API, target_id=api_id)
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert await db.current_revision() == revision
    assert list((await stub.ListTrafficLimits(throttle_pb2.ListTrafficLimitsRequest())).limits) == []
