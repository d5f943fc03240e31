"""UsageService's analytics queries (usage/detail_store.py): a breakdown by API resource, status code and
destination, and time series with latency percentiles. A mixin of usage/servicer.py's UsageServicer."""

from __future__ import annotations

from datetime import datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from tollway.db import Database
from tollway.errors import InvalidArgument, map_grpc_errors
from tollway.protoconv import timestamp, to_datetime
from tollway.usage.v1 import usage_pb2
from usage.detail_store import breakdown, series

_BREAKDOWN = {
    usage_pb2.BREAKDOWN_DIMENSION_API: "api_id",
    usage_pb2.BREAKDOWN_DIMENSION_SUBSCRIPTION: "subscription_id",
    usage_pb2.BREAKDOWN_DIMENSION_APPLICATION: "application_id",
    usage_pb2.BREAKDOWN_DIMENSION_METHOD: "method",
    usage_pb2.BREAKDOWN_DIMENSION_ROUTE: "route",
    usage_pb2.BREAKDOWN_DIMENSION_STATUS_CODE: "status_code",
    usage_pb2.BREAKDOWN_DIMENSION_DESTINATION: "destination",
}
_GRANULARITY = {
    usage_pb2.GRANULARITY_MINUTE: ("minute", timedelta(days=1), "24 hours"),
    usage_pb2.GRANULARITY_HOUR: ("hour", timedelta(days=93), "93 days"),
    usage_pb2.GRANULARITY_DAY: ("day", timedelta(days=3660), "10 years"),
}


def _range(start: Timestamp, end: Timestamp, has_start: bool, has_end: bool) -> tuple[datetime, datetime]:
    if not has_start or not has_end:
        raise InvalidArgument("start_time and end_time are required")
    begin, finish = to_datetime(start, "start_time"), to_datetime(end, "end_time")
    if finish <= begin:
        raise InvalidArgument("end_time must be after start_time (the range is half-open [start, end))")
    return begin, finish


@map_grpc_errors
class DetailQueries:
    """Needs `self.store.db` (UsageServicer provides it)."""

    def _db(self) -> Database:
        db = getattr(getattr(self, "store", None), "db", None)
        assert isinstance(db, Database)
        return db

    async def ListUsageBreakdown(
        self,
        request: usage_pb2.ListUsageBreakdownRequest,
        context: grpc.aio.ServicerContext[
            usage_pb2.ListUsageBreakdownRequest, usage_pb2.ListUsageBreakdownResponse
        ],
    ) -> usage_pb2.ListUsageBreakdownResponse:
        start, end = _range(
            request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
        )
        group_by: list[str] = []
        for dimension in request.group_by or (
            usage_pb2.BREAKDOWN_DIMENSION_METHOD,
            usage_pb2.BREAKDOWN_DIMENSION_ROUTE,
        ):
            if dimension not in _BREAKDOWN:
                raise InvalidArgument("group_by holds an unknown dimension")
            if _BREAKDOWN[dimension] not in group_by:
                group_by.append(_BREAKDOWN[dimension])
        limit = request.limit or 100
        if not 0 < limit <= 1000:
            raise InvalidArgument("limit must be 1..1000")
        rows = await breakdown(
            self._db(),
            start,
            end,
            tuple(group_by),
            api_id=request.filter.api_id,
            application_id=request.filter.application_id,
            subscription_id=request.filter.subscription_id,
            limit=limit,
        )
        return usage_pb2.ListUsageBreakdownResponse(
            rows=[
                usage_pb2.UsageBreakdownRow(
                    **{name: row[name] for name in group_by},
                    requests=int(row["requests"]),
                    latency_us_sum=int(row["latency_us_sum"]),
                )
                for row in rows
            ]
        )

    async def ListUsageSeries(
        self,
        request: usage_pb2.ListUsageSeriesRequest,
        context: grpc.aio.ServicerContext[
            usage_pb2.ListUsageSeriesRequest, usage_pb2.ListUsageSeriesResponse
        ],
    ) -> usage_pb2.ListUsageSeriesResponse:
        start, end = _range(
            request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
        )
        granularity = request.granularity or usage_pb2.GRANULARITY_HOUR
        if granularity not in _GRANULARITY:
            raise InvalidArgument("unknown granularity")
        name, longest, said = _GRANULARITY[granularity]
        if end - start > longest:
            raise InvalidArgument(f"a {name} series spans at most {said}")
        points = await series(
            self._db(),
            name,
            start,
            end,
            api_id=request.filter.api_id,
            application_id=request.filter.application_id,
            subscription_id=request.filter.subscription_id,
        )
        return usage_pb2.ListUsageSeriesResponse(
            points=[
                usage_pb2.UsageSeriesPoint(
                    start_time=timestamp(point["window_start"]),
                    counts=usage_pb2.UsageCounts(
                        requests=point["requests"],
                        success=point["success"],
                        overage=point["overage"],
                        client_error=point["client_error"],
                        upstream_fault=point["upstream_fault"],
                        throttled=point["throttled"],
                        unauthorized=point["unauthorized"],
                        ratelimit_error=point["ratelimit_error"],
                        latency_us_sum=point["latency_us_sum"],
                        latency_us_max=point["latency_us_max"],
                        latency_us_p50=min(point["latency_us_p50"], point["latency_us_max"]),
                        latency_us_p95=min(point["latency_us_p95"], point["latency_us_max"]),
                        latency_us_p99=min(point["latency_us_p99"], point["latency_us_max"]),
                    ),
                )
                for point in points
            ]
        )
