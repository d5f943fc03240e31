"""`tollway quota <subscription-id>` and `tollway limits ...`: the QuotaService for support and
operators (JSON on stdout). Connection options, token and exit codes come from `tollway.cli_support`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
from tollway.throttle.v1 import throttle_pb2 as pb

if TYPE_CHECKING:
    import grpc

    from tollway.throttle.v1.throttle_pb2_grpc import QuotaServiceStub


def _quota_service_stub(channel: grpc.Channel) -> QuotaServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.throttle.v1.throttle_pb2_grpc import QuotaServiceStub

    return QuotaServiceStub(channel)


ApiOpt = Annotated[str, typer.Option("--api", help="The limit is shared by every subscriber of this API id.")]
AppOpt = Annotated[
    str,
    typer.Option("--application", help="The limit is shared by every subscription of this application id."),
]


UNLIMITED = "unlimited"


def quota_view(data: dict[str, Any]) -> dict[str, Any]:
    """The report as printed: a window without a limit says "unlimited" (its limit and remaining are 0
    on the wire, which reads as "nothing left"), and `used` is always a number, 0 included."""
    for window in data.get("windows", []):
        window.setdefault("used", 0)
        if not window.get("limit"):
            window["limit"] = window["remaining"] = UNLIMITED
        else:
            window.setdefault("remaining", 0)
    return data


def target(api: str, application: str) -> tuple[pb.LimitScope, str]:
    """(scope, target id) from exactly one of --api / --application."""
    if bool(api) == bool(application):
        raise typer.BadParameter("give exactly one of --api or --application")
    return (pb.LIMIT_SCOPE_API, api) if api else (pb.LIMIT_SCOPE_APPLICATION, application)


def _limit_commands() -> typer.Typer:
    app = typer.Typer(
        help="Traffic limits shared by all subscribers of an API or an application's subscriptions."
    )

    @app.command("set")
    def set_(
        api: ApiOpt = "", application: AppOpt = "",
        per_second: Annotated[int, typer.Option("--per-second", min=0, help="0 = no limit.")] = 0,
        per_minute: Annotated[int, typer.Option("--per-minute", min=0, help="0 = no limit.")] = 0,
        per_hour: Annotated[int, typer.Option("--per-hour", min=0, help="0 = no limit.")] = 0,
        per_day: Annotated[int, typer.Option("--per-day", min=0, help="0 = no limit.")] = 0,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Create or replace the shared limit of an API or application (from the next request on)."""
        scope, target_id = target(api, application)
        limit = pb.TrafficLimit(
            scope=scope,
            target_id=target_id,
            requests_per_second=per_second,
            requests_per_minute=per_minute,
            requests_per_hour=per_hour,
            requests_per_day=per_day,
        )
        with admin_client(addr, token, _quota_service_stub) as quota:
            emit(quota.call(quota.service.SetTrafficLimit, pb.SetTrafficLimitRequest(limit=limit)))

    @app.command("list")
    def list_(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None) -> None:
        """Every shared traffic limit."""
        with admin_client(addr, token, _quota_service_stub) as quota:
            emit(quota.call(quota.service.ListTrafficLimits, pb.ListTrafficLimitsRequest()))

    @app.command("delete")
    def delete(
        api: ApiOpt = "", application: AppOpt = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Remove the shared limit of an API or application."""
        scope, target_id = target(api, application)
        request = pb.DeleteTrafficLimitRequest(scope=scope, target_id=target_id)
        with admin_client(addr, token, _quota_service_stub) as quota:
            emit(quota.call(quota.service.DeleteTrafficLimit, request))

    return app


def register(app: typer.Typer) -> None:
    """Mounts `tollway quota` and `tollway limits ...` on the main CLI."""

    @app.command("quota")
    def quota_report(
        subscription_id: Annotated[str, typer.Argument(help="The subscription to report on.")],
        at: Annotated[
            datetime | None,
            typer.Option(
                "--at",
                parser=time_param,
                metavar="TIME",
                help="Instant to read the windows at (ISO 8601); default now.",
            ),
        ] = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """Each window of a subscription's limits: limit ("unlimited" if none), used, remaining, reset."""
        request = pb.GetSubscriptionQuotaRequest(
            subscription_id=subscription_id, at=timestamp_proto(at) if at is not None else None
        )
        with admin_client(addr, token, _quota_service_stub) as quota:
            emit(quota.call(quota.service.GetSubscriptionQuota, request), quota_view)

    app.add_typer(_limit_commands(), name="limits")
