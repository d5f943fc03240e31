"""The fused mode's limits (throttle/gate.py) against the ratelimit path: for the same requests the gate
answers what Envoy's ratelimit filter makes of ShouldRateLimit's response (status, X-RateLimit-*,
Retry-After, body, access-log metadata), and counts the same. Envoy's side is written out here from its
XRateLimitHeaderUtils (DRAFT_VERSION_03), independently of the code under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.struct_pb2 import Struct
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.throttle.throttle_fixtures import FakeClock, free_port, index_with, subscription
from throttle.counters import MemoryCounterStore
from throttle.gate import ThrottleGate
from throttle.index import ThrottleIndex, ThrottleSnapshot
from throttle.limits import SharedLimits
from throttle.redis_store import RedisCounterStore
from throttle.rls_response import rate_limit_response
from throttle.service import MAX_DESCRIPTORS, ThrottleService
from tollway.admission import Admission
from tollway.catalog.limits import PlanLimits
from tollway.vocabulary import FailureMode, LimitScope

RLS = rls_pb2.RateLimitResponse
START = datetime(2026, 3, 31, 23, 59, 58, tzinfo=UTC)


def envoy_answer(response: rls_pb2.RateLimitResponse) -> tuple[int, dict[str, str], str]:
    """(status, headers Envoy adds, body) from a ShouldRateLimit response: 0 admitted, else 429. Envoy
    adds the answer's headers to add either way (X-RateLimit-*; on a refusal also Retry-After and the
    content type), and x-envoy-ratelimited to a refusal."""
    headers = {header.key: header.value for header in response.response_headers_to_add}
    if response.overall_code != RLS.OVER_LIMIT:
        return 0, headers, ""
    headers["x-envoy-ratelimited"] = "true"
    return 429, headers, response.raw_body.decode()


def struct(values: Any) -> Struct:
    message = Struct()
    message.update(values)
    return message


def pair(
    plans: dict[str, PlanLimits], subs: list[Any], shared: list[SharedLimits], failure: str = "allow"
) -> tuple[ThrottleService, ThrottleGate, FakeClock]:
    """A service for the ratelimit path and a gate on a service of its own, same view and clock."""
    clock = FakeClock(START)

    def service() -> ThrottleService:
        index = ThrottleIndex(snapshot=ThrottleSnapshot.build(plans, subs, shared))
        return ThrottleService(index, MemoryCounterStore(), failure_mode=failure, clock=clock)

    return service(), ThrottleGate(service()), clock


plan_limits = st.builds(
    PlanLimits,
    requests_per_second=st.integers(0, 3),
    requests_per_minute=st.integers(0, 5),
    requests_per_day=st.sampled_from([0, 7]),
    monthly_quota=st.integers(0, 6),
    quota_policy=st.sampled_from(["HARD", "SOFT"]),
    shadow_mode=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(
    plans=st.lists(plan_limits, min_size=1, max_size=3),
    api_per_minute=st.sampled_from([0, 4]),
    requests=st.lists(
        st.tuples(
            st.lists(st.integers(0, 3), min_size=1, max_size=3),  # 3: an unknown subscription
            st.sampled_from([0, 0, 1, 30, 3600]),  # seconds the clock moves first
        ),
        min_size=1,
        max_size=25,
    ),
)
async def test_the_gate_answers_what_envoy_makes_of_should_rate_limit(
    plans: list[PlanLimits], api_per_minute: int, requests: list[tuple[list[int], int]]
) -> None:
    plan_ids = {f"plan_{n}": limits for n, limits in enumerate(plans)}
    subs = [subscription(f"plan_{n % len(plans)}", anchor=n * 10) for n in range(3)]
    shared = [SharedLimits(LimitScope.API, "api_1", per_minute=api_per_minute)] if api_per_minute else []
    service, gate, clock = pair(plan_ids, subs, shared)
    for chosen, seconds in requests:
        clock.advance(seconds=seconds)
        descriptors = [
            {
                "subscription_id": subs[n].id if n < 3 else "sub_new",
                "plan_id": "plan_0",
                "application_id": "app_1",
                "api_id": "api_1",
            }
            for n in chosen
        ]
        response = rate_limit_response(await service.should_rate_limit("tollway", descriptors))
        admission = await gate.admit(descriptors)
        status, headers, body = envoy_answer(response)
        assert (admission.status, dict(admission.headers), admission.body) == (status, headers, body)
        assert struct(admission.metadata) == response.dynamic_metadata
        assert len(admission.headers) == len(headers)  # no header twice
    # And both counted alike.
    for sub in subs:
        assert await service.quota(sub.id) == await gate.service.quota(sub.id)


async def test_a_descriptor_without_a_subscription_is_admitted_without_headers() -> None:
    _, gate, _ = pair({"p": PlanLimits(requests_per_minute=1)}, [], [])
    for _ in range(3):
        assert await gate.admit([{"api_id": "api_1"}]) == Admission()


async def test_a_429_carries_the_problem_and_the_window_for_the_access_log() -> None:
    sub = subscription("p")
    _, gate, clock = pair({"p": PlanLimits(requests_per_minute=1)}, [sub], [])
    clock.current = datetime(2026, 1, 20, 10, 0, 45, tzinfo=UTC)
    descriptor = {"subscription_id": sub.id, "plan_id": "p", "application_id": "app_1", "api_id": "api_1"}
    first = await gate.admit([descriptor])
    assert first.admitted and first.metadata == {}
    assert dict(first.headers) == {
        "x-ratelimit-limit": '1, 1;w=60;name="minute"',
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "15",
    }
    denied = await gate.admit([descriptor])
    assert (denied.status, denied.reason, denied.metadata) == (429, "rate_limited", {"window": "minute"})
    assert dict(denied.headers)["retry-after"] == "15"
    assert dict(denied.headers)["content-type"] == "application/problem+json"


async def test_a_soft_quota_admits_beyond_it_with_overage_metadata() -> None:
    sub = subscription("p")
    _, gate, _ = pair({"p": PlanLimits(monthly_quota=1, quota_policy="SOFT")}, [sub], [])
    descriptor = {"subscription_id": sub.id, "plan_id": "p", "application_id": "app_1", "api_id": "api_1"}
    assert (await gate.admit([descriptor])).metadata == {}
    beyond = await gate.admit([descriptor])
    assert beyond.admitted
    assert beyond.metadata == {"overage": True, "overage_hits": 1, "window": "billing_period"}
    # A billing period is a month to Envoy: 30 days, whatever the calendar says.
    assert dict(beyond.headers)["x-ratelimit-limit"] == '1, 1;w=2592000;name="billing_period"'


async def test_a_view_still_loading_follows_the_failure_mode() -> None:
    descriptor = {"subscription_id": "sub_1", "plan_id": "p", "application_id": "app_1", "api_id": "api_1"}
    for mode, expected in ((FailureMode.ALLOW, 0), (FailureMode.DENY, 503)):
        gate = ThrottleGate(ThrottleService(ThrottleIndex(), MemoryCounterStore(), failure_mode=mode))
        answer = await gate.admit([descriptor])
        assert answer.status == expected
        assert answer.headers == (() if expected == 0 else (("content-type", "application/problem+json"),))
        if expected:
            assert answer.reason == "rate_limit_unavailable" and '"status": 503' in answer.body


async def test_a_request_the_service_refuses_follows_the_failure_mode_and_counts_nothing() -> None:
    sub = subscription("p")
    for mode, expected in ((FailureMode.ALLOW, 0), (FailureMode.DENY, 503)):
        _, gate, _ = pair({"p": PlanLimits(requests_per_minute=1)}, [sub], [], failure=mode)
        descriptor = {"subscription_id": sub.id, "plan_id": "p"}
        answer = await gate.admit([descriptor] * (MAX_DESCRIPTORS + 1))
        assert answer.status == expected
        assert (await gate.service.quota(sub.id)).windows[0].used == 0


async def test_unreachable_counters_follow_the_failure_mode() -> None:
    sub = subscription("p")
    descriptor = {"subscription_id": sub.id, "plan_id": "p", "application_id": "app_1", "api_id": "api_1"}
    answers: dict[str, Admission] = {}
    for mode in FailureMode:
        # Nothing listens there: every call fails fast.
        store = RedisCounterStore(f"redis://127.0.0.1:{free_port()}/0", 50)
        index = index_with({"p": PlanLimits(requests_per_minute=1)}, [sub])
        try:
            answers[mode] = await ThrottleGate(ThrottleService(index, store, failure_mode=mode)).admit(
                [descriptor]
            )
        finally:
            await store.close()
    allowed, denied = answers[FailureMode.ALLOW], answers[FailureMode.DENY]
    assert allowed.admitted and allowed.headers == () and allowed.metadata == {"store_unavailable": True}
    assert (denied.status, denied.reason) == (503, "rate_limit_unavailable")


async def test_reset_rounds_up_to_whole_seconds() -> None:
    # A window ending in 0.2 s says 1, never 0 (Retry-After and X-RateLimit-Reset alike).
    sub = subscription("p")
    _, gate, clock = pair({"p": PlanLimits(requests_per_second=1)}, [sub], [])
    clock.current = START + timedelta(microseconds=800_000)
    descriptor = {"subscription_id": sub.id, "plan_id": "p", "application_id": "app_1", "api_id": "api_1"}
    assert dict((await gate.admit([descriptor])).headers)["x-ratelimit-reset"] == "1"
    denied = await gate.admit([descriptor])
    assert dict(denied.headers)["retry-after"] == "1" and dict(denied.headers)["x-ratelimit-reset"] == "1"
