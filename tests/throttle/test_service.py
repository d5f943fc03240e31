"""Decisions and their gRPC answers: statuses, 429 bodies, overage metadata, shadow mode, billing
periods across month boundaries (injectable clock), and malformed requests over a real gRPC server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.wrappers_pb2 import UInt64Value

from tests.support import grpc_server
from tests.throttle.throttle_fixtures import FakeClock, index_with, subscription
from throttle.counters import MemoryCounterStore
from throttle.index import ThrottleSnapshot
from throttle.rls_response import rate_limit_response
from throttle.service import MAX_HITS, InvalidRequest, ThrottleService
from throttle.servicer import RateLimitServicer
from tollway.catalog.limits import PlanLimits

RLS = rls_pb2.RateLimitResponse


def service_for(
    plan: PlanLimits, anchor: int = 0, start: datetime | None = None, plan_id: str = "p"
) -> tuple[ThrottleService, str]:
    sub = subscription(plan_id, anchor)
    clock = FakeClock(start or datetime(2026, 1, 20, 10, 0, 0, tzinfo=UTC))
    service = ThrottleService(index_with({plan_id: plan}, [sub]), MemoryCounterStore(), clock=clock)
    return service, sub.id


def descriptor(sub_id: str, plan_id: str = "") -> dict[str, str]:
    return {"subscription_id": sub_id, "plan_id": plan_id, "application_id": "app_1", "api_id": "api_1"}


async def test_statuses_report_the_tightest_window() -> None:
    service, sub = service_for(PlanLimits(requests_per_minute=5, requests_per_hour=100))
    response = rate_limit_response(await service.should_rate_limit("tollway", [descriptor(sub)]))
    assert response.overall_code == RLS.OK
    (status,) = response.statuses
    assert status.current_limit.requests_per_unit == 5
    assert status.current_limit.unit == RLS.RateLimit.MINUTE
    assert status.limit_remaining == 4
    # 10:00:00 → the minute resets in 60 s.
    assert status.duration_until_reset.seconds == 60


async def test_over_limit_answer_has_retry_after_and_problem_json() -> None:
    service, sub = service_for(
        PlanLimits(requests_per_minute=1), start=datetime(2026, 1, 20, 10, 0, 45, tzinfo=UTC)
    )
    await service.should_rate_limit("tollway", [descriptor(sub)])
    response = rate_limit_response(await service.should_rate_limit("tollway", [descriptor(sub)]))
    assert response.overall_code == RLS.OVER_LIMIT
    assert response.statuses[0].code == RLS.OVER_LIMIT
    headers = {h.key: h.value for h in response.response_headers_to_add}
    assert headers == {
        "retry-after": "15",
        "content-type": "application/problem+json",
        "x-ratelimit-limit": '1, 1;w=60;name="minute"',
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "15",
    }
    problem = json.loads(response.raw_body)
    assert problem["status"] == 429 and problem["window"] == "minute" and problem["reason"] == "rate_limited"
    assert problem["retry_after"] == 15 and problem["reset_time"] == "2026-01-20T10:01:00Z"
    # usage/ files the throttled-out request under the window that fired (ratelimit dynamic metadata).
    assert MessageToDict(response.dynamic_metadata) == {"window": "minute"}


async def test_over_limit_metadata_names_the_quota_window() -> None:
    service, sub = service_for(PlanLimits(requests_per_hour=10, monthly_quota=1))
    await service.should_rate_limit("tollway", [descriptor(sub)])
    denied = await service.should_rate_limit("tollway", [descriptor(sub)])
    assert denied.over_limit and denied.metadata == {"window": "billing_period"}


async def test_monthly_quota_resets_at_the_calendar_month_boundary() -> None:
    service, sub = service_for(PlanLimits(monthly_quota=3), start=datetime(2026, 1, 31, 23, 0, tzinfo=UTC))
    clock = service.clock
    assert isinstance(clock, FakeClock)
    answers = [(await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit for _ in range(4)]
    assert answers == [False, False, False, True]
    denied = rate_limit_response(await service.should_rate_limit("tollway", [descriptor(sub)]))
    assert json.loads(denied.raw_body)["reason"] == "quota_exceeded"
    assert denied.statuses[0].current_limit.unit == RLS.RateLimit.MONTH
    clock.current = datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit
    clock.current = datetime(2026, 2, 1, tzinfo=UTC)
    assert not (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit


async def test_monthly_quota_follows_the_subscriptions_anchor_day() -> None:
    service, sub = service_for(
        PlanLimits(monthly_quota=2), anchor=15, start=datetime(2026, 1, 20, tzinfo=UTC)
    )
    clock = service.clock
    assert isinstance(clock, FakeClock)
    for _ in range(2):
        assert not (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit
    # A calendar month boundary is not this subscription's period boundary.
    clock.current = datetime(2026, 2, 1, tzinfo=UTC)
    assert (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit
    clock.current = datetime(2026, 2, 14, 23, 59, 59, tzinfo=UTC)
    assert (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit
    clock.current = datetime(2026, 2, 15, tzinfo=UTC)
    assert not (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit
    report = await service.quota(sub)
    assert report.windows[-1].used == 1
    assert report.windows[-1].window.start == datetime(2026, 2, 15, tzinfo=UTC)


async def test_burst_denials_do_not_reduce_the_monthly_quota() -> None:
    service, sub = service_for(PlanLimits(requests_per_minute=2, monthly_quota=100))
    for _ in range(10):
        await service.should_rate_limit("tollway", [descriptor(sub)])
    report = await service.quota(sub)
    assert [(w.window.name, w.used, w.remaining) for w in report.windows] == [
        ("minute", 2, 0),
        ("billing_period", 2, 98),
    ]


async def test_soft_quota_admits_and_marks_overage() -> None:
    service, sub = service_for(PlanLimits(monthly_quota=2, quota_policy="SOFT"))
    first = await service.should_rate_limit("tollway", [descriptor(sub)])
    assert first.metadata == {}
    await service.should_rate_limit("tollway", [descriptor(sub)])
    third = await service.should_rate_limit("tollway", [descriptor(sub)], hits=3)
    assert not third.over_limit
    assert third.metadata == {"overage": True, "overage_hits": 3, "window": "billing_period"}
    response = rate_limit_response(third)
    assert MessageToDict(response.dynamic_metadata) == third.metadata
    report = await service.quota(sub)
    assert report.windows[-1].used == 5 and report.windows[-1].overage == 3


async def test_shadow_mode_reports_but_never_denies() -> None:
    service, sub = service_for(PlanLimits(requests_per_minute=1, shadow_mode=True))
    first = await service.should_rate_limit("tollway", [descriptor(sub)])
    second = await service.should_rate_limit("tollway", [descriptor(sub)])
    assert not first.over_limit and not second.over_limit
    assert second.metadata == {"shadow_over_limit": True, "window": "minute"}
    assert rate_limit_response(second).statuses[0].limit_remaining == 0
    assert (await service.quota(sub)).windows[0].used == 2


async def test_plan_change_applies_from_the_next_request_without_reset() -> None:
    service, sub = service_for(PlanLimits(requests_per_minute=2))
    for _ in range(2):
        await service.should_rate_limit("tollway", [descriptor(sub)])
    assert (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit
    info = service.index.snapshot.subscriptions[sub]
    service.index.snapshot = ThrottleSnapshot.build({"p": PlanLimits(requests_per_minute=3)}, [info])
    assert not (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit
    assert (await service.should_rate_limit("tollway", [descriptor(sub)])).over_limit


async def test_subscription_not_yet_loaded_uses_the_descriptors_plan() -> None:
    service, _ = service_for(PlanLimits(requests_per_minute=1))
    fresh = descriptor("sub_new", plan_id="p")
    assert not (await service.should_rate_limit("tollway", [fresh])).over_limit
    assert (await service.should_rate_limit("tollway", [fresh])).over_limit


async def test_descriptors_that_are_not_ours_are_unlimited() -> None:
    service, sub = service_for(PlanLimits(requests_per_minute=1))
    for entries in ({}, {"api_id": "api_1"}, {"subscription_id": ""}):
        decision = await service.should_rate_limit("tollway", [entries])
        assert not decision.over_limit
        assert rate_limit_response(decision).statuses[0] == RLS.DescriptorStatus(code=RLS.OK)
    # Another domain never counts against a subscription.
    for _ in range(3):
        assert not (await service.should_rate_limit("other", [descriptor(sub)])).over_limit
    assert (await service.quota(sub)).windows[0].used == 0


@pytest.mark.parametrize(
    ("domain", "descriptors", "hits"),
    [
        ("", [{"subscription_id": "s"}], 1),
        ("tollway", [], 1),
        ("tollway", [{"subscription_id": "s"}], MAX_HITS + 1),
    ],
)
async def test_malformed_requests_are_invalid_and_count_nothing(
    domain: str, descriptors: list[dict[str, str]], hits: int
) -> None:
    service, sub = service_for(PlanLimits(requests_per_minute=5))
    with pytest.raises(InvalidRequest):
        await service.should_rate_limit(domain, descriptors, hits)
    assert (await service.quota(sub)).windows[0].used == 0


@pytest.fixture
async def rls() -> AsyncIterator[tuple[rls_pb2_grpc.RateLimitServiceStub, ThrottleService, str]]:
    service, sub = service_for(PlanLimits(requests_per_minute=5))
    servicer = RateLimitServicer(service)
    async with grpc_server(lambda s: rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, s)) as ch:
        yield rls_pb2_grpc.RateLimitServiceStub(ch), service, sub


def _request(domain: str, sub: str | None, hits: int = 0) -> rls_pb2.RateLimitRequest:
    descriptors = []
    if sub is not None:
        entries = [ratelimit_pb2.RateLimitDescriptor.Entry(key="subscription_id", value=sub)] if sub else []
        descriptors.append(ratelimit_pb2.RateLimitDescriptor(entries=entries))
    return rls_pb2.RateLimitRequest(domain=domain, descriptors=descriptors, hits_addend=hits)


async def test_grpc_malformed_requests_get_defined_answers(rls: tuple) -> None:
    stub, _service, sub = rls
    for request in (_request("", sub), _request("tollway", None), _request("tollway", sub, 2**32 - 1)):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.ShouldRateLimit(request, timeout=5)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A descriptor with no entries is answered OK, unlimited.
    response = await stub.ShouldRateLimit(_request("tollway", ""), timeout=5)
    assert response.overall_code == RLS.OK and len(response.statuses) == 1
    # Nothing above was counted; the service still answers normally.
    ok = await stub.ShouldRateLimit(_request("tollway", sub), timeout=5)
    assert ok.statuses[0].limit_remaining == 4


async def test_grpc_hits_addend_request_and_descriptor_level(rls: tuple) -> None:
    stub, _, sub = rls
    assert (await stub.ShouldRateLimit(_request("tollway", sub, hits=3), timeout=5)).statuses[
        0
    ].limit_remaining == 2
    request = _request("tollway", sub, hits=1)
    request.descriptors[0].hits_addend.CopyFrom(UInt64Value(value=3))
    # 3 more do not fit into the 2 left: denied, nothing counted.
    assert (await stub.ShouldRateLimit(request, timeout=5)).overall_code == RLS.OVER_LIMIT
    assert (await stub.ShouldRateLimit(_request("tollway", sub, hits=2), timeout=5)).overall_code == RLS.OK


async def test_nothing_is_decided_before_the_first_load() -> None:
    """Before its first load a replica knows no plan: it answers UNAVAILABLE (Envoy's failure mode
    applies) rather than admitting everything unlimited."""
    from throttle.index import ThrottleIndex
    from throttle.service import NotLoaded

    service = ThrottleService(ThrottleIndex(), MemoryCounterStore())
    with pytest.raises(NotLoaded):
        await service.should_rate_limit("tollway", [{"subscription_id": "sub_x"}])
