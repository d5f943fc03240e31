"""Issue 14's throttle points: one atomic step per request over all its descriptors (memory and Redis),
duplicates counted once, at most MAX_DESCRIPTORS per request, and bounded state whatever a caller
sends: the request-parts cache in bytes, unknown subscription ids in a bounded space, undecodable
messages and out-of-range quota times answered INVALID_ARGUMENT without a traceback. No timing is
asserted: memory is measured by the caches' own counts and by tracemalloc."""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from tests.support import grpc_server
from tests.throttle.throttle_fixtures import SHARED_REDIS_URL, FakeClock, index_with, subscription, unique
from throttle import service as service_module
from throttle.counters import CounterStore, MemoryCounterStore
from throttle.redis_store import RedisCounterStore
from throttle.rls_request import MAX_REQUEST_BYTES, RequestPartsCache
from throttle.service import MAX_DESCRIPTORS, MAX_PROVISIONAL_SUBSCRIPTIONS, InvalidRequest, ThrottleService
from throttle.servicer import QuotaServicer, RateLimitServicer, add_rate_limit_service
from throttle.store import TrafficLimitStore
from tollway.catalog.limits import PlanLimits
from tollway.db import Database
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc

RLS = rls_pb2.RateLimitResponse
NOW = datetime(2026, 6, 10, 12, 0, 30, tzinfo=UTC)
PLANS = {
    "wide": PlanLimits(requests_per_minute=10, monthly_quota=100),
    "narrow": PlanLimits(requests_per_minute=1),
}


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    created: CounterStore = (
        MemoryCounterStore() if request.param == "memory" else RedisCounterStore(SHARED_REDIS_URL, 2000)
    )
    try:
        yield created
    finally:
        await created.close()


def _service(store: CounterStore) -> tuple[ThrottleService, str, str]:
    # Unique ids: the Redis variant shares the real Redis with other tests.
    wide = subscription("wide", sub_id=unique("wide"))
    narrow = subscription("narrow", sub_id=unique("narrow"))
    service = ThrottleService(index_with(PLANS, [wide, narrow]), store, clock=FakeClock(NOW))
    return service, wide.id, narrow.id


def _used(report: object) -> list[int]:
    return [w.used for w in report.windows]  # type: ignore[attr-defined]


async def test_a_request_refused_by_any_descriptor_consumes_nothing(store: CounterStore) -> None:
    service, wide, narrow = _service(store)
    assert not (await service.should_rate_limit("tollway", [{"subscription_id": narrow}])).over_limit
    for order in ([wide, narrow], [narrow, wide]):
        for _ in range(5):
            decision = await service.should_rate_limit("tollway", [{"subscription_id": s} for s in order])
            assert decision.over_limit
    # The narrow subscription refused every one of them: the wide one's windows never moved.
    assert _used(await service.quota(wide)) == [0, 0]
    assert _used(await service.quota(narrow)) == [1, 1]
    # Each descriptor still has its own status: the refusing one OVER_LIMIT, the other OK and uncounted.
    decision = await service.should_rate_limit(
        "tollway", [{"subscription_id": wide}, {"subscription_id": narrow}]
    )
    assert [o.over_limit for o in decision.outcomes] == [False, True]
    assert [o.remaining for o in decision.outcomes] == [10, 0]
    assert decision.metadata == {"window": "minute"}


async def test_repeated_descriptors_of_one_subscription_count_once(store: CounterStore) -> None:
    service, wide, _ = _service(store)
    descriptor = {"subscription_id": wide, "plan_id": "wide"}
    decision = await service.should_rate_limit("tollway", [descriptor] * MAX_DESCRIPTORS)
    assert not decision.over_limit
    assert len(set(decision.outcomes)) == 1 and len(decision.outcomes) == MAX_DESCRIPTORS
    assert decision.outcomes[0].remaining == 9
    assert _used(await service.quota(wide)) == [1, 1]


async def test_too_many_descriptors_are_invalid_and_count_nothing(store: CounterStore) -> None:
    service, wide, _ = _service(store)
    with pytest.raises(InvalidRequest, match=f"exceed the limit of {MAX_DESCRIPTORS}"):
        await service.should_rate_limit("tollway", [{"subscription_id": wide}] * (MAX_DESCRIPTORS + 1))
    assert _used(await service.quota(wide)) == [0, 0]


def _request(*sub_ids: str, padding: str = "") -> rls_pb2.RateLimitRequest:
    Entry = ratelimit_pb2.RateLimitDescriptor.Entry
    descriptors = [
        ratelimit_pb2.RateLimitDescriptor(
            entries=[
                Entry(key="subscription_id", value=s),
                *([Entry(key="note", value=padding)] if padding else []),
            ]
        )
        for s in sub_ids
    ]
    return rls_pb2.RateLimitRequest(domain="tollway", descriptors=descriptors)


@pytest.fixture
async def rls_server() -> AsyncIterator[tuple[grpc.aio.Channel, RateLimitServicer, str]]:
    service, wide, _ = _service(MemoryCounterStore())
    servicer = RateLimitServicer(service)
    async with grpc_server(lambda s: add_rate_limit_service(servicer, s)) as channel:
        yield channel, servicer, wide


async def test_grpc_too_many_descriptors_is_invalid_argument(rls_server: tuple) -> None:
    channel, servicer, wide = rls_server
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ShouldRateLimit(_request(*[wide] * (MAX_DESCRIPTORS + 1)), timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(MAX_DESCRIPTORS) in (failure.value.details() or "")
    assert _used(await servicer.service.quota(wide)) == [0, 0]
    assert len(servicer.parts_cache) == 0  # a refused request is not cached


async def test_undecodable_and_oversized_messages_are_invalid_argument_without_traceback(
    rls_server: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    channel, _, wide = rls_server
    raw = channel.unary_unary(
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        request_serializer=None,
        response_deserializer=rls_pb2.RateLimitResponse.FromString,
    )
    caplog.set_level(logging.INFO)
    for garbage in (
        b"\xff\xff\xff\xff",
        b"\x0a\xff\x01ab",
        b"\x12\x05\x0a\x03\x0a\x01",
        bytes(range(256)) * 3,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await raw(garbage, timeout=5)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await raw(_request(wide, padding="x" * MAX_REQUEST_BYTES).SerializeToString(), timeout=5)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exceeds" in (failure.value.details() or "")
    assert not any(record.exc_info for record in caplog.records)
    # Reported by count, one line per interval, not one per message.
    assert len([r for r in caplog.records if "invalid request" in r.getMessage()]) == 1
    # The service still answers normally.
    ok = await rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(_request(wide), timeout=5)
    assert ok.overall_code == RLS.OK


class _Aborted(Exception):
    pass


class _Context:
    """Just enough of a grpc.aio.ServicerContext: abort raises, as gRPC's does."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise _Aborted(details)


async def test_parts_cache_is_bounded_in_bytes_under_150_distinct_1mb_requests() -> None:
    service, wide, _ = _service(MemoryCounterStore())
    servicer = RateLimitServicer(service)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(150):
            # As add_rate_limit_service hands them over: the request's bytes.
            raw = _request(wide, padding=f"{n:06d}" + "x" * 1_000_000).SerializeToString()
            context = _Context()
            with pytest.raises(_Aborted):
                await servicer.ShouldRateLimit(raw, context)  # type: ignore[arg-type]
            assert context.code == grpc.StatusCode.INVALID_ARGUMENT
            del raw
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert servicer.parts_cache.bytes == 0 and len(servicer.parts_cache) == 0
    # 150 MB went through; what stays is far below one of them (it used to be +482 MB).
    assert grown < 1_000_000, grown


async def test_parts_cache_holds_to_its_byte_budget_with_many_valid_requests() -> None:
    cache = RequestPartsCache(max_bytes=64 * 1024)
    service, _, _ = _service(MemoryCounterStore())
    servicer = RateLimitServicer(service, cache)
    for n in range(400):
        # Distinct valid requests, each near the largest a cache entry may be.
        raw = _request(f"sub_{n}", padding="y" * 600).SerializeToString()
        await servicer.ShouldRateLimit(raw, _Context())  # type: ignore[arg-type]
        assert cache.bytes <= cache.max_bytes
    assert cache.bytes > 0 and 20 < len(cache) < 400
    # A cached request is answered from the cache alike.
    again = await servicer.ShouldRateLimit(
        _request("sub_399", padding="y" * 600).SerializeToString(), _Context()
    )  # type: ignore[arg-type]
    assert isinstance(again, bytes)  # a request that came as bytes is answered as bytes
    assert RLS.FromString(again).overall_code == RLS.OK


async def test_100k_unknown_subscription_ids_leave_memory_bounded() -> None:
    store = MemoryCounterStore()
    service, _, _ = _service(store)
    windows_per_subscription = 2  # "wide": minute and billing period
    total = 100_000

    async def send(ids: range) -> None:
        # MAX_DESCRIPTORS made-up ids per request: fewer calls, the same ids.
        for first in range(ids.start, ids.stop, MAX_DESCRIPTORS):
            descriptors = [
                {"subscription_id": f"made_up_{n}", "plan_id": "wide"}
                for n in range(first, min(first + MAX_DESCRIPTORS, ids.stop))
            ]
            await service.should_rate_limit("tollway", descriptors)

    await send(range(0, total - 12_000))
    # Traced over the last 12,000 ids, in two halves: by the end of the first every live entry was
    # made while tracing (the bound is 1,000 ids), so the second shows whether more ids leave more.
    tracemalloc.start()
    try:
        await send(range(total - 12_000, total - 6_000))
        bounded_state = tracemalloc.get_traced_memory()[0]
        await send(range(total - 6_000, total))
        grown = tracemalloc.get_traced_memory()[0] - bounded_state
    finally:
        tracemalloc.stop()
    assert len(service._provisional) == MAX_PROVISIONAL_SUBSCRIPTIONS
    assert len(store) <= MAX_PROVISIONAL_SUBSCRIPTIONS * windows_per_subscription
    assert len(service._windows) == 0  # only subscriptions of the snapshot are cached there
    assert len(service.metrics.decisions) == 1  # made-up plan ids never become labels
    # 100k ids used to cost +176 MB; now what they leave is a few MB at most and stops growing.
    assert bounded_state < 4_000_000, bounded_state
    assert grown < 200_000, grown
    # The most recent ones are still counted as the plan their descriptor names.
    last = {"subscription_id": f"made_up_{total - 1}", "plan_id": "wide"}
    assert (await service.should_rate_limit("tollway", [last])).outcomes[0].remaining == 8


async def test_a_provisional_subscription_pushed_out_keeps_the_shared_counters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "MAX_PROVISIONAL_SUBSCRIPTIONS", 2)
    store = MemoryCounterStore()
    service, _, _ = _service(store)
    for n in range(5):
        await service.should_rate_limit("tollway", [{"subscription_id": f"new_{n}", "plan_id": "narrow"}])
    assert list(service._provisional) == ["new_3", "new_4"]
    assert len(store) == 4  # two each: minute and billing period


async def test_quota_at_year_9999_is_invalid_argument(tmp_path: Path) -> None:
    service, wide, _ = _service(MemoryCounterStore())
    servicer = QuotaServicer(service, TrafficLimitStore(Database(f"sqlite:///{tmp_path / 'unused.db'}")))
    async with grpc_server(
        lambda s: throttle_pb2_grpc.add_QuotaServiceServicer_to_server(servicer, s)
    ) as channel:
        stub = throttle_pb2_grpc.QuotaServiceStub(channel)
        for at in (
            Timestamp(seconds=int(datetime(9999, 12, 31, tzinfo=UTC).timestamp())),
            Timestamp(seconds=253402300799),  # 9999-12-31T23:59:59Z, the last representable second
            Timestamp(seconds=2**62),
            Timestamp(seconds=0, nanos=-1),
            Timestamp(seconds=-1),
        ):
            request = throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=wide, at=at)
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stub.GetSubscriptionQuota(request, timeout=5)
            assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, at
            assert "at must" in (failure.value.details() or "")
        latest = Timestamp(seconds=int(datetime(9999, 11, 30, 23, tzinfo=UTC).timestamp()))
        answer = await stub.GetSubscriptionQuota(
            throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=wide, at=latest), timeout=5
        )
        assert answer.subscription_id == wide
