"""`tollway usage ...`: the UsageService for accounting and support (JSON on stdout). Same connection
options and token as the other admin commands."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from tollway.admin_cli import AddrOpt, AdminClient, TokenOpt, _emit, _resolve_token
from tollway.settings import Settings
from tollway.usage.v1 import usage_pb2 as pb
from tollway.usage.v1 import usage_pb2_grpc

_DEFAULT_ADDR = Settings().admin_addr
GRANULARITIES = {"minute": pb.GRANULARITY_MINUTE, "hour": pb.GRANULARITY_HOUR, "day": pb.GRANULARITY_DAY}
DIMENSIONS = {
    "api": pb.DIMENSION_API,
    "subscription": pb.DIMENSION_SUBSCRIPTION,
    "application": pb.DIMENSION_APPLICATION,
    "plan": pb.DIMENSION_PLAN,
    "key": pb.DIMENSION_KEY,
}

StartOpt = Annotated[str, typer.Option("--start", help="Range start (ISO 8601, UTC); default: today 00:00.")]
EndOpt = Annotated[str, typer.Option("--end", help="Range end, exclusive (ISO 8601); default: start + 1d.")]
ApiOpt = Annotated[str, typer.Option("--api", help="Only this API id.")]
AppOpt = Annotated[str, typer.Option("--application", help="Only this application id.")]
SubOpt = Annotated[str, typer.Option("--subscription", help="Only this subscription id.")]


class UsageClient(AdminClient):
    def __init__(self, addr: str, token: str) -> None:
        super().__init__(addr, token)
        self.usage = usage_pb2_grpc.UsageServiceStub(self._channel)


def _client(addr: str, token: str | None) -> UsageClient:
    return UsageClient(addr, _resolve_token(token))


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"invalid time {text!r}: use ISO 8601, e.g. 2026-11-01T00:00:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def time_range(start: str, end: str) -> tuple[Timestamp, Timestamp]:
    """[start, end) as Timestamps; defaults to today (UTC)."""
    begin = _time(start) if start else datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    finish = _time(end) if end else begin + timedelta(days=1)
    stamps = Timestamp(), Timestamp()
    stamps[0].FromDatetime(begin)
    stamps[1].FromDatetime(finish)
    return stamps


def _choice(value: str, choices: dict[str, int], what: str) -> int:
    try:
        return choices[value.strip().lower()]
    except KeyError:
        raise typer.BadParameter(f"{what} must be one of {', '.join(choices)}") from None


def _commands() -> typer.Typer:
    app = typer.Typer(help="Metered usage: windows, totals, top consumers, throttling, completeness.")

    @app.command()
    def windows(
        granularity: Annotated[str, typer.Option("--granularity", help="minute, hour or day.")] = "hour",
        start: StartOpt = "", end: EndOpt = "", api: ApiOpt = "", application: AppOpt = "",
        subscription: SubOpt = "", addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Usage windows of one granularity starting in [start, end)."""
        begin, finish = time_range(start, end)
        request = pb.ListUsageWindowsRequest(
            granularity=_choice(granularity, GRANULARITIES, "granularity"),
            start_time=begin,
            end_time=finish,
            filter=pb.UsageFilter(api_id=api, application_id=application, subscription_id=subscription),
        )
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.usage.ListUsageWindows, request))

    @app.command()
    def totals(
        by: Annotated[list[str] | None, typer.Option("--by", help="Group by api, subscription, ...")] = None,
        start: StartOpt = "", end: EndOpt = "", api: ApiOpt = "", application: AppOpt = "",
        subscription: SubOpt = "", addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Totals over [start, end), with per-node completeness."""
        begin, finish = time_range(start, end)
        request = pb.GetUsageTotalsRequest(
            start_time=begin,
            end_time=finish,
            group_by=[_choice(name, DIMENSIONS, "--by") for name in by or []],
            filter=pb.UsageFilter(api_id=api, application_id=application, subscription_id=subscription),
        )
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.usage.GetUsageTotals, request))

    @app.command()
    def top(
        by: Annotated[str, typer.Option("--by", help="subscription, application, api, plan or key.")] = (
            "subscription"
        ),
        limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 10,
        start: StartOpt = "", end: EndOpt = "", api: ApiOpt = "",
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Top consumers by requests in [start, end)."""
        begin, finish = time_range(start, end)
        request = pb.ListTopConsumersRequest(
            start_time=begin,
            end_time=finish,
            dimension=_choice(by, DIMENSIONS, "--by"),
            filter=pb.UsageFilter(api_id=api),
            limit=limit,
        )
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.usage.ListTopConsumers, request))

    @app.command()
    def throttled(
        start: StartOpt = "", end: EndOpt = "", api: ApiOpt = "", subscription: SubOpt = "",
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Throttled-out requests per minute and the limit that fired."""
        begin, finish = time_range(start, end)
        request = pb.ListThrottledWindowsRequest(
            start_time=begin, end_time=finish, filter=pb.UsageFilter(api_id=api, subscription_id=subscription)
        )
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.usage.ListThrottledWindows, request))

    @app.command()
    def completeness(
        start: StartOpt = "", end: EndOpt = "", addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None
    ) -> None:
        """Per Envoy node: entries counted vs. what Envoy reports written and dropped."""
        begin, finish = time_range(start, end)
        with closing(_client(addr, token)) as client:
            _emit(
                client.call(
                    client.usage.GetCompleteness, pb.GetCompletenessRequest(start_time=begin, end_time=finish)
                )
            )

    @app.command()
    def stats(addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None) -> None:
        """Ingestion metrics of the replica that answers (rate, batch latency, WAL size, skips)."""
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.usage.GetIngestionStats, pb.GetIngestionStatsRequest()))

    return app


def register(app: typer.Typer) -> None:
    """Mounts `tollway usage ...` on the main CLI."""
    app.add_typer(_commands(), name="usage")
