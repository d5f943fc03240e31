"""`tollway usage ...`: the UsageService for accounting and support (JSON on stdout). Connection options,
token and exit codes come from `tollway.cli_support`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from tollway.cli_support import (
    DEFAULT_ADMIN_ADDR,
    AdminAddr,
    AdminToken,
    Output,
    admin_client,
    emit,
    time_param,
    timestamp_proto,
)
from tollway.usage.v1 import usage_pb2 as pb

if TYPE_CHECKING:
    import grpc

    from tollway.usage.v1.usage_pb2_grpc import UsageServiceStub


def _usage_service_stub(channel: grpc.Channel) -> UsageServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.usage.v1.usage_pb2_grpc import UsageServiceStub

    return UsageServiceStub(channel)


class GranularityChoice(StrEnum):
    minute = "minute"
    hour = "hour"
    day = "day"


class DimensionChoice(StrEnum):
    api = "api"
    subscription = "subscription"
    application = "application"
    plan = "plan"
    key = "key"


class BreakdownChoice(StrEnum):
    api = "api"
    subscription = "subscription"
    application = "application"
    method = "method"
    route = "route"
    status = "status"
    destination = "destination"


BREAKDOWN = {
    BreakdownChoice.api: pb.BREAKDOWN_DIMENSION_API,
    BreakdownChoice.subscription: pb.BREAKDOWN_DIMENSION_SUBSCRIPTION,
    BreakdownChoice.application: pb.BREAKDOWN_DIMENSION_APPLICATION,
    BreakdownChoice.method: pb.BREAKDOWN_DIMENSION_METHOD,
    BreakdownChoice.route: pb.BREAKDOWN_DIMENSION_ROUTE,
    BreakdownChoice.status: pb.BREAKDOWN_DIMENSION_STATUS_CODE,
    BreakdownChoice.destination: pb.BREAKDOWN_DIMENSION_DESTINATION,
}
GRANULARITIES = {
    GranularityChoice.minute: pb.GRANULARITY_MINUTE,
    GranularityChoice.hour: pb.GRANULARITY_HOUR,
    GranularityChoice.day: pb.GRANULARITY_DAY,
}
DIMENSIONS = {
    DimensionChoice.api: pb.DIMENSION_API,
    DimensionChoice.subscription: pb.DIMENSION_SUBSCRIPTION,
    DimensionChoice.application: pb.DIMENSION_APPLICATION,
    DimensionChoice.plan: pb.DIMENSION_PLAN,
    DimensionChoice.key: pb.DIMENSION_KEY,
}

StartOpt = Annotated[
    datetime | None,
    typer.Option(
        "--start",
        parser=time_param,
        metavar="TIME",
        help="Range start (ISO 8601, UTC); default: today 00:00.",
    ),
]
EndOpt = Annotated[
    datetime | None,
    typer.Option(
        "--end",
        parser=time_param,
        metavar="TIME",
        help="Range end, exclusive (ISO 8601); default: start + 1d.",
    ),
]
GranularityOpt = Annotated[
    GranularityChoice, typer.Option("--granularity", case_sensitive=False, help="minute, hour or day.")
]
ApiOpt = Annotated[str, typer.Option("--api", help="Only this API id.")]
AppOpt = Annotated[str, typer.Option("--application", help="Only this application id.")]
SubOpt = Annotated[str, typer.Option("--subscription", help="Only this subscription id.")]


def time_range(start: datetime | None, end: datetime | None) -> tuple[Timestamp, Timestamp]:
    """[start, end) as Timestamps; defaults to today (UTC)."""
    begin = start or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    finish = end or begin + timedelta(days=1)
    return timestamp_proto(begin), timestamp_proto(finish)


def _commands() -> typer.Typer:
    app = typer.Typer(
        help="Metered usage: windows, totals, top consumers, throttling, completeness, resources and series."
    )

    @app.command()
    def windows(
        granularity: GranularityOpt = GranularityChoice.hour,
        start: StartOpt = None, end: EndOpt = None, api: ApiOpt = "", application: AppOpt = "",
        subscription: SubOpt = "", addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None,
        output: Output = None,
    ) -> None:  # fmt: skip
        """Usage windows of one granularity starting in [start, end)."""
        begin, finish = time_range(start, end)
        request = pb.ListUsageWindowsRequest(
            granularity=GRANULARITIES[granularity],
            start_time=begin,
            end_time=finish,
            filter=pb.UsageFilter(api_id=api, application_id=application, subscription_id=subscription),
        )
        with admin_client(addr, token, _usage_service_stub) as usage:
            emit(usage.call(usage.service.ListUsageWindows, request))

    @app.command()
    def totals(
        by: Annotated[
            list[DimensionChoice] | None,
            typer.Option("--by", case_sensitive=False, help="Group by api, subscription, ..."),
        ] = None,
        start: StartOpt = None, end: EndOpt = None, api: ApiOpt = "", application: AppOpt = "",
        subscription: SubOpt = "", addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None,
        output: Output = None,
    ) -> None:  # fmt: skip
        """Totals over [start, end), with per-node completeness."""
        begin, finish = time_range(start, end)
        request = pb.GetUsageTotalsRequest(
            start_time=begin,
            end_time=finish,
            group_by=[DIMENSIONS[name] for name in by or []],
            filter=pb.UsageFilter(api_id=api, application_id=application, subscription_id=subscription),
        )
        with admin_client(addr, token, _usage_service_stub) as usage:
            emit(usage.call(usage.service.GetUsageTotals, request))

    @app.command()
    def top(
        by: Annotated[
            DimensionChoice,
            typer.Option("--by", case_sensitive=False, help="subscription, application, api, plan or key."),
        ] = DimensionChoice.subscription,
        limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 10,
        start: StartOpt = None, end: EndOpt = None, api: ApiOpt = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Top consumers by requests in [start, end)."""
        begin, finish = time_range(start, end)
        request = pb.ListTopConsumersRequest(
            start_time=begin,
            end_time=finish,
            dimension=DIMENSIONS[by],
            filter=pb.UsageFilter(api_id=api),
            limit=limit,
        )
        with admin_client(addr, token, _usage_service_stub) as usage:
            emit(usage.call(usage.service.ListTopConsumers, request))

    @app.command()
    def throttled(
        start: StartOpt = None, end: EndOpt = None, api: ApiOpt = "", subscription: SubOpt = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Throttled-out requests per minute and the limit that fired."""
        begin, finish = time_range(start, end)
        request = pb.ListThrottledWindowsRequest(
            start_time=begin, end_time=finish, filter=pb.UsageFilter(api_id=api, subscription_id=subscription)
        )
        with admin_client(addr, token, _usage_service_stub) as usage:
            emit(usage.call(usage.service.ListThrottledWindows, request))

    @app.command()
    def completeness(
        start: StartOpt = None, end: EndOpt = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Per Envoy node: entries counted vs. what Envoy reports written and dropped."""
        begin, finish = time_range(start, end)
        request = pb.GetCompletenessRequest(start_time=begin, end_time=finish)
        with admin_client(addr, token, _usage_service_stub) as usage:
            emit(usage.call(usage.service.GetCompleteness, request))

    @app.command()
    def breakdown(
        by: Annotated[
            list[BreakdownChoice] | None,
            typer.Option("--by", case_sensitive=False, help="method, route, status, destination, api, ..."),
        ] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
        start: StartOpt = None, end: EndOpt = None, api: ApiOpt = "", application: AppOpt = "",
        subscription: SubOpt = "", addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None,
        output: Output = None,
    ) -> None:  # fmt: skip
        """Requests in [start, end) by API resource (method and route; the default), status code or
        destination upstream, most first."""
        begin, finish = time_range(start, end)
        request = pb.ListUsageBreakdownRequest(
            start_time=begin,
            end_time=finish,
            group_by=[BREAKDOWN[name] for name in by or []],
            filter=pb.UsageFilter(api_id=api, application_id=application, subscription_id=subscription),
            limit=limit,
        )
        with admin_client(addr, token, _usage_service_stub) as usage:
            emit(usage.call(usage.service.ListUsageBreakdown, request))

    @app.command()
    def series(
        granularity: GranularityOpt = GranularityChoice.hour,
        start: StartOpt = None, end: EndOpt = None, api: ApiOpt = "", application: AppOpt = "",
        subscription: SubOpt = "", addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None,
        output: Output = None,
    ) -> None:  # fmt: skip
        """Per window: requests by outcome and latency percentiles, every matching row summed."""
        begin, finish = time_range(start, end)
        request = pb.ListUsageSeriesRequest(
            granularity=GRANULARITIES[granularity],
            start_time=begin,
            end_time=finish,
            filter=pb.UsageFilter(api_id=api, application_id=application, subscription_id=subscription),
        )
        with admin_client(addr, token, _usage_service_stub) as usage:
            emit(usage.call(usage.service.ListUsageSeries, request))

    @app.command()
    def stats(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None) -> None:
        """Ingestion metrics of the replica that answers (rate, batch latency, WAL size, skips)."""
        with admin_client(addr, token, _usage_service_stub) as usage:
            emit(usage.call(usage.service.GetIngestionStats, pb.GetIngestionStatsRequest()))

    return app


def register(app: typer.Typer) -> None:
    """Mounts `tollway usage ...` on the main CLI."""
    app.add_typer(_commands(), name="usage")
