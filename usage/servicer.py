"""Thin gRPC servicers: Envoy's AccessLogService (ingestion) and Tollway's admin UsageService (queries)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from tollway.errors import InvalidArgument, map_grpc_errors
from tollway.handler_wrapping import add_service
from tollway.protoconv import timestamp, to_datetime
from tollway.request_guard import RateLimitedLog
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc
from usage.aggregate import BUCKET_COLUMNS
from usage.classify import OUTCOMES, percentile
from usage.detail_servicer import DetailQueries
from usage.frames import MalformedMessage, inspect, valid_node_id
from usage.ingest import Ingestor
from usage.store import UsageStore

log = logging.getLogger(__name__)


class AccessLogServicer(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]  # Envoy ships no types
    """One call per Envoy worker stream; the node identifier comes only with the first message.

    Registered with `register()`, so messages arrive as the bytes Envoy sent: the hot path checks their
    structure (usage/frames.inspect), and hands those very bytes to the WAL; entries are decoded and
    classified by the background flush."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.metrics = ingestor.metrics
        # Garbled or cut streams arrive as often as a peer opens them: one line per interval, counted.
        self._stream_errors = RateLimitedLog(log)

    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, als_pb2.StreamAccessLogsResponse],
    ) -> als_pb2.StreamAccessLogsResponse:
        node_id = ""
        try:
            async for raw in request_iterator:
                try:
                    received = inspect(raw)
                except MalformedMessage:
                    # Entries of the earlier, whole messages stay received; the garbage is refused.
                    self.metrics.bad_streams["malformed_message"] += 1
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed StreamAccessLogsMessage")
                if not node_id:
                    node_id = received.node_id
                    if not valid_node_id(node_id):
                        self.metrics.bad_streams["missing_identifier"] += 1
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT, "first message must identify the node"
                        )
                entries = received.http_entries + received.tcp_entries
                if entries:
                    self.metrics.entries_by_node[node_id] += entries
                    await self.ingestor.submit(node_id, raw, entries)
        except (grpc.aio.AbortError, GeneratorExit, asyncio.CancelledError):
            raise
        except Exception as exc:  # a cut or garbled stream ends this call, never the service
            self.metrics.bad_streams["stream_error"] += 1
            self._stream_errors.event(
                logging.WARNING,
                type(exc).__name__,
                "usage: access-log stream from node %r ended abnormally: %s",
                node_id,
                type(exc).__name__,
            )
        return als_pb2.StreamAccessLogsResponse()


ACCESS_LOG_SERVICE = "envoy.service.accesslog.v3.AccessLogService"


def register(servicer: AccessLogServicer, server: grpc.aio.Server) -> None:
    """Adds StreamAccessLogs with no request deserializer: the servicer receives raw message bytes."""
    handler = grpc.stream_unary_rpc_method_handler(
        servicer.StreamAccessLogs,
        request_deserializer=None,
        response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString,
    )
    add_service(server, ACCESS_LOG_SERVICE, {"StreamAccessLogs": handler})


_GRANULARITIES = {
    usage_pb2.GRANULARITY_MINUTE: "minute",
    usage_pb2.GRANULARITY_HOUR: "hour",
    usage_pb2.GRANULARITY_DAY: "day",
}
_GRANULARITY_ENUM = {name: value for value, name in _GRANULARITIES.items()}
_DIMENSIONS = {
    usage_pb2.DIMENSION_API: "api_id",
    usage_pb2.DIMENSION_SUBSCRIPTION: "subscription_id",
    usage_pb2.DIMENSION_APPLICATION: "application_id",
    usage_pb2.DIMENSION_PLAN: "plan_id",
    usage_pb2.DIMENSION_KEY: "key_id",
}
MAX_PAGE = 10_000


def _range(start: Timestamp, end: Timestamp, has_start: bool, has_end: bool) -> tuple[datetime, datetime]:
    if not has_start or not has_end:
        raise InvalidArgument("start_time and end_time are required")
    begin, finish = to_datetime(start, "start_time"), to_datetime(end, "end_time")
    if finish <= begin:
        raise InvalidArgument("end_time must be after start_time (the range is half-open [start, end))")
    return begin, finish


def counts(row: dict[str, Any]) -> usage_pb2.UsageCounts:
    buckets = [int(row.get(name) or 0) for name in BUCKET_COLUMNS]
    return usage_pb2.UsageCounts(
        requests=sum(int(row.get(name) or 0) for name in OUTCOMES),
        success=int(row["success"]),
        overage=int(row["overage"]),
        client_error=int(row["client_error"]),
        upstream_fault=int(row["upstream_fault"]),
        throttled=int(row["throttled"]),
        unauthorized=int(row["unauthorized"]),
        ratelimit_error=int(row["ratelimit_error"]),
        request_bytes=int(row["request_bytes"]),
        response_bytes=int(row["response_bytes"]),
        latency_us_sum=int(row["latency_us_sum"]),
        latency_us_max=int(row["latency_us_max"]),
        # Interpolation inside the top bucket can overshoot; the true max bounds every percentile.
        latency_us_p50=min(percentile(buckets, 0.50), int(row["latency_us_max"])),
        latency_us_p95=min(percentile(buckets, 0.95), int(row["latency_us_max"])),
        latency_us_p99=min(percentile(buckets, 0.99), int(row["latency_us_max"])),
    )


def _group(row: dict[str, Any]) -> usage_pb2.UsageGroup:
    return usage_pb2.UsageGroup(
        api_id=row.get("api_id", ""),
        subscription_id=row.get("subscription_id", ""),
        application_id=row.get("application_id", ""),
        plan_id=row.get("plan_id", ""),
        key_id=row.get("key_id", ""),
        counts=counts(row),
    )


def _node(report: dict[str, Any]) -> usage_pb2.NodeCompleteness:
    return usage_pb2.NodeCompleteness(**report)


@map_grpc_errors
class UsageServicer(DetailQueries, usage_pb2_grpc.UsageServiceServicer):
    def __init__(self, store: UsageStore, ingestor: Ingestor | None = None) -> None:
        self.store = store
        self.ingestor = ingestor

    async def ListUsageWindows(
        self,
        request: usage_pb2.ListUsageWindowsRequest,
        context: grpc.aio.ServicerContext[
            usage_pb2.ListUsageWindowsRequest, usage_pb2.ListUsageWindowsResponse
        ],
    ) -> usage_pb2.ListUsageWindowsResponse:
        granularity = _GRANULARITIES.get(request.granularity)
        if granularity is None:
            raise InvalidArgument("granularity is required (MINUTE, HOUR or DAY)")
        start, end = _range(
            request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
        )
        size = request.page_size or 1000
        if not 0 < size <= MAX_PAGE:
            raise InvalidArgument(f"page_size must be 1..{MAX_PAGE}")
        offset = 0
        if request.page_token:
            try:
                offset = int(base64.urlsafe_b64decode(request.page_token.encode()).decode())
            except (ValueError, UnicodeDecodeError):
                raise InvalidArgument("invalid page_token") from None
            if offset < 0:
                raise InvalidArgument("invalid page_token")
        rows = await self.store.windows(
            granularity,
            start,
            end,
            api_id=request.filter.api_id,
            application_id=request.filter.application_id,
            subscription_id=request.filter.subscription_id,
            limit=size + 1,
            offset=offset,
        )
        more = len(rows) > size
        windows = [
            usage_pb2.UsageWindow(
                granularity=_GRANULARITY_ENUM[row["granularity"]],
                start_time=timestamp(row["window_start"]),
                api_id=row["api_id"],
                subscription_id=row["subscription_id"],
                application_id=row["application_id"],
                plan_id=row["plan_id"],
                key_id=row["key_id"],
                counts=counts(row),
            )
            for row in rows[:size]
        ]
        token = base64.urlsafe_b64encode(str(offset + size).encode()).decode() if more else ""
        return usage_pb2.ListUsageWindowsResponse(windows=windows, next_page_token=token)

    async def GetUsageTotals(
        self,
        request: usage_pb2.GetUsageTotalsRequest,
        context: grpc.aio.ServicerContext[usage_pb2.GetUsageTotalsRequest, usage_pb2.GetUsageTotalsResponse],
    ) -> usage_pb2.GetUsageTotalsResponse:
        start, end = _range(
            request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
        )
        group_by = []
        for dimension in request.group_by:
            if dimension not in _DIMENSIONS:
                raise InvalidArgument("group_by holds an unknown dimension")
            if _DIMENSIONS[dimension] not in group_by:
                group_by.append(_DIMENSIONS[dimension])
        rows = await self.store.totals(
            start,
            end,
            tuple(group_by),
            api_id=request.filter.api_id,
            application_id=request.filter.application_id,
            subscription_id=request.filter.subscription_id,
            limit=MAX_PAGE,
        )
        nodes = await self.store.completeness(start, end)
        return usage_pb2.GetUsageTotalsResponse(
            groups=[_group(row) for row in rows], completeness=[_node(n) for n in nodes]
        )

    async def ListTopConsumers(
        self,
        request: usage_pb2.ListTopConsumersRequest,
        context: grpc.aio.ServicerContext[
            usage_pb2.ListTopConsumersRequest, usage_pb2.ListTopConsumersResponse
        ],
    ) -> usage_pb2.ListTopConsumersResponse:
        start, end = _range(
            request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
        )
        dimension = request.dimension or usage_pb2.DIMENSION_SUBSCRIPTION
        if dimension not in _DIMENSIONS:
            raise InvalidArgument("unknown dimension")
        limit = request.limit or 10
        if not 0 < limit <= 1000:
            raise InvalidArgument("limit must be 1..1000")
        rows = await self.store.totals(
            start,
            end,
            (_DIMENSIONS[dimension],),
            api_id=request.filter.api_id,
            application_id=request.filter.application_id,
            subscription_id=request.filter.subscription_id,
            order_by_requests=True,
            limit=limit,
        )
        return usage_pb2.ListTopConsumersResponse(consumers=[_group(row) for row in rows])

    async def ListThrottledWindows(
        self,
        request: usage_pb2.ListThrottledWindowsRequest,
        context: grpc.aio.ServicerContext[
            usage_pb2.ListThrottledWindowsRequest, usage_pb2.ListThrottledWindowsResponse
        ],
    ) -> usage_pb2.ListThrottledWindowsResponse:
        start, end = _range(
            request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
        )
        limit = request.limit or 1000
        if not 0 < limit <= MAX_PAGE:
            raise InvalidArgument(f"limit must be 1..{MAX_PAGE}")
        rows = await self.store.throttled(
            start,
            end,
            api_id=request.filter.api_id,
            subscription_id=request.filter.subscription_id,
            limit=limit,
        )
        return usage_pb2.ListThrottledWindowsResponse(
            windows=[
                usage_pb2.ThrottledWindow(
                    start_time=timestamp(row["window_start"]),
                    api_id=row["api_id"],
                    subscription_id=row["subscription_id"],
                    application_id=row["application_id"],
                    plan_id=row["plan_id"],
                    limit=row["limit_name"],
                    throttled=int(row["throttled"]),
                )
                for row in rows
            ]
        )

    async def GetCompleteness(
        self,
        request: usage_pb2.GetCompletenessRequest,
        context: grpc.aio.ServicerContext[
            usage_pb2.GetCompletenessRequest, usage_pb2.GetCompletenessResponse
        ],
    ) -> usage_pb2.GetCompletenessResponse:
        start, end = _range(
            request.start_time, request.end_time, request.HasField("start_time"), request.HasField("end_time")
        )
        return usage_pb2.GetCompletenessResponse(
            nodes=[_node(n) for n in await self.store.completeness(start, end)]
        )

    async def GetIngestionStats(
        self,
        request: usage_pb2.GetIngestionStatsRequest,
        context: grpc.aio.ServicerContext[
            usage_pb2.GetIngestionStatsRequest, usage_pb2.GetIngestionStatsResponse
        ],
    ) -> usage_pb2.GetIngestionStatsResponse:
        if self.ingestor is None:
            return usage_pb2.GetIngestionStatsResponse()
        m = self.ingestor.metrics
        elapsed = max(time.monotonic() - m.started_at, 1e-9)
        return usage_pb2.GetIngestionStatsResponse(
            received=m.received,
            counted=m.counted,
            duplicates=m.duplicates,
            replayed=m.replayed,
            unflushed=self.ingestor.unflushed,
            wal_bytes=self.ingestor.wal_size_bytes(),
            wal_syncs=m.wal_syncs,
            flushes=m.flushes,
            flush_failures=m.flush_failures,
            last_flush_seconds=m.last_flush_seconds,
            max_flush_seconds=m.max_flush_seconds,
            received_per_second=m.received / elapsed,
            skipped=dict(m.skipped),
            bad_streams=dict(m.bad_streams),
            entries_by_node=dict(m.entries_by_node),
        )
