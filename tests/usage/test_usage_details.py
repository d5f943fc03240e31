"""Usage by API resource, status code and destination: routes normalized and bounded whatever callers
send, the dimensions counted exactly once with the counts they refine, and UsageService's breakdown
and series queries (with their refusals)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import grpc_server
from tests.usage.usage_entries import entry
from tollway.db import Database
from tollway.protoconv import timestamp
from tollway.usage.v1 import usage_pb2 as pb
from tollway.usage.v1 import usage_pb2_grpc
from usage.classify import classify
from usage.details import MAX_ROUTE_CHARS, OTHER_ROUTE, RouteCap, detail_of, normalize_route
from usage.servicer import UsageServicer
from usage.store import UsageStore

HOUR = 3600
NOW = time.time()
T0 = NOW - NOW % HOUR - HOUR  # the start of the previous hour


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("", "/"),
        ("/", "/"),
        ("/echo/v1/hello?x=1", "/echo/v1/hello"),
        ("/users/123/orders", "/users/{id}/orders"),
        ("/items/550e8400-e29b-41d4-a716-446655440000", "/items/{id}"),
        ("/blobs/deadbeefcafe", "/blobs/{id}"),
        ("/t/a1b2c3d4e5f6g7h8", "/t/{id}"),
        ("/oauth2/v2/token", "/oauth2/v2/token"),
        ("/a/%20b", "/a/{id}"),
        ("/a/b/c/d/e/f/g/h", "/a/b/c/d/e/f/…"),
    ],
)
def test_routes_are_normalized(path: str, route: str) -> None:
    assert normalize_route(path) == route


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=5000))
def test_any_path_gives_a_short_route(path: str) -> None:
    route = normalize_route(path)
    assert route.startswith("/") and len(route) <= MAX_ROUTE_CHARS


def test_each_api_keeps_a_bounded_number_of_routes() -> None:
    cap = RouteCap(per_api=3, apis=2)
    assert [cap.route("a", f"/r{i}") for i in range(5)] == ["/r0", "/r1", "/r2", OTHER_ROUTE, OTHER_ROUTE]
    assert cap.route("a", "/r1") == "/r1"
    cap.route("b", "/x")
    cap.route("c", "/y")  # forgets api "a", the least recently seen
    assert cap.tracked() <= 2 * 3


def test_an_entrys_dimensions() -> None:
    item = entry(201)
    item.request.request_method = base_pb2.POST
    item.request.path = "/orders/42"
    item.request.original_path = "/shop/v1/orders/42?expand=all"
    item.common_properties.upstream_remote_address.socket_address.address = "10.1.2.3"
    item.common_properties.upstream_remote_address.socket_address.port_value = 8443
    assert detail_of(item) == ("POST", "/shop/v1/orders/{id}", 201, "10.1.2.3:8443")
    refused = entry(401, reason="key_invalid")
    assert detail_of(refused) == ("OTHER", "/", 401, "")


def _record_and_detail(code: int, path: str, latency_ms: float, upstream: str = "127.0.0.1") -> tuple:
    item = entry(code, start=T0 + 30, latency_ms=latency_ms)
    item.request.request_method = base_pb2.GET
    item.request.original_path = path
    if upstream:
        item.common_properties.upstream_remote_address.socket_address.address = upstream
        item.common_properties.upstream_remote_address.socket_address.port_value = 9000
    record = classify(item, "node-1", NOW)
    return record, {(record[0], record[1]): detail_of(item)}


@pytest.fixture
async def stub(database: Database) -> AsyncIterator[usage_pb2_grpc.UsageServiceStub]:
    servicer = UsageServicer(UsageStore(database))
    async with grpc_server(
        lambda server: usage_pb2_grpc.add_UsageServiceServicer_to_server(servicer, server)
    ) as channel:
        yield usage_pb2_grpc.UsageServiceStub(channel)


async def test_dimensions_are_counted_once_and_queried(
    database: Database, stub: usage_pb2_grpc.UsageServiceStub
) -> None:
    store = UsageStore(database)
    batch = [
        _record_and_detail(200, "/api/v1/users/1", 5),
        _record_and_detail(200, "/api/v1/users/2", 15),
        _record_and_detail(404, "/api/v1/users/3", 2),
        _record_and_detail(503, "/api/v1/health", 900, upstream="10.0.0.9"),
    ]
    records = [record for record, _ in batch]
    details = {key: value for _, detail in batch for key, value in detail.items()}
    assert (await store.apply(records, details=details)).counted == 4
    assert (await store.apply(records, details=details)).counted == 0  # a replay counts nothing twice

    start, end = datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + HOUR, UTC)
    rows = (
        await stub.ListUsageBreakdown(
            pb.ListUsageBreakdownRequest(start_time=timestamp(start), end_time=timestamp(end))
        )
    ).rows
    assert [(r.method, r.route, r.requests) for r in rows] == [
        ("GET", "/api/v1/users/{id}", 3),
        ("GET", "/api/v1/health", 1),
    ]
    by_status = (
        await stub.ListUsageBreakdown(
            pb.ListUsageBreakdownRequest(
                start_time=timestamp(start),
                end_time=timestamp(end),
                group_by=[pb.BREAKDOWN_DIMENSION_STATUS_CODE, pb.BREAKDOWN_DIMENSION_DESTINATION],
                filter=pb.UsageFilter(api_id="api_1"),
            )
        )
    ).rows
    assert {(r.status_code, r.destination, r.requests) for r in by_status} == {
        (200, "127.0.0.1:9000", 2),
        (404, "127.0.0.1:9000", 1),
        (503, "10.0.0.9:9000", 1),
    }
    points = (
        await stub.ListUsageSeries(
            pb.ListUsageSeriesRequest(
                granularity=pb.GRANULARITY_HOUR,
                start_time=timestamp(start - timedelta(hours=1)),
                end_time=timestamp(end),
                filter=pb.UsageFilter(api_id="api_1"),
            )
        )
    ).points
    assert len(points) == 1 and points[0].start_time.ToDatetime(tzinfo=UTC) == start
    counts = points[0].counts
    assert (counts.requests, counts.success, counts.client_error, counts.upstream_fault) == (4, 2, 1, 1)
    assert 0 < counts.latency_us_p50 <= counts.latency_us_p95 <= counts.latency_us_max == 900_000


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.ListUsageBreakdownRequest(), "start_time and end_time are required"),
        (
            pb.ListUsageBreakdownRequest(
                start_time=timestamp(datetime(2026, 1, 2, tzinfo=UTC)),
                end_time=timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
            ),
            "end_time must be after start_time",
        ),
        (
            pb.ListUsageBreakdownRequest(
                start_time=timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
                end_time=timestamp(datetime(2026, 1, 2, tzinfo=UTC)),
                limit=5000,
            ),
            "limit must be 1..1000",
        ),
        (
            pb.ListUsageBreakdownRequest(
                start_time=timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
                end_time=timestamp(datetime(2026, 1, 2, tzinfo=UTC)),
                group_by=[99],
            ),
            "unknown dimension",
        ),
        (
            pb.ListUsageSeriesRequest(
                granularity=pb.GRANULARITY_MINUTE,
                start_time=timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
                end_time=timestamp(datetime(2026, 2, 1, tzinfo=UTC)),
            ),
            "spans at most 24 hours",
        ),
    ],
)
async def test_bad_queries_are_refused(
    stub: usage_pb2_grpc.UsageServiceStub, request_: object, message: str
) -> None:
    call = (
        stub.ListUsageBreakdown
        if isinstance(request_, pb.ListUsageBreakdownRequest)
        else stub.ListUsageSeries
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (refused.value.details() or "")
