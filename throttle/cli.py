"""`tollway quota <subscription-id>` and `tollway limits ...`: the QuotaService for support and
operators (JSON on stdout). Same connection options and token as the other admin commands."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from typing import Annotated

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from tollway.admin_cli import AddrOpt, AdminClient, TokenOpt, _emit, _resolve_token
from tollway.settings import Settings
from tollway.throttle.v1 import throttle_pb2 as pb
from tollway.throttle.v1 import throttle_pb2_grpc

_DEFAULT_ADDR = Settings().admin_addr

ApiOpt = Annotated[str, typer.Option("--api", help="The limit is shared by every subscriber of this API id.")]
AppOpt = Annotated[
    str,
    typer.Option("--application", help="The limit is shared by every subscription of this application id."),
]


class QuotaClient(AdminClient):
    def __init__(self, addr: str, token: str) -> None:
        super().__init__(addr, token)
        self.quota = throttle_pb2_grpc.QuotaServiceStub(self._channel)


def _client(addr: str, token: str | None) -> QuotaClient:
    return QuotaClient(addr, _resolve_token(token))


def _at(text: str) -> Timestamp | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"invalid time {text!r}: use ISO 8601, e.g. 2026-11-01T00:00:00Z") from None
    stamp = Timestamp()
    stamp.FromDatetime(value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC))
    return stamp


def target(api: str, application: str) -> tuple[int, str]:
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
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Create or replace the shared limit of an API or application (from the next request on)."""
        scope, target_id = target(api, application)
        limit = pb.TrafficLimit(
            scope=scope,  # type: ignore[arg-type]
            target_id=target_id,
            requests_per_second=per_second,
            requests_per_minute=per_minute,
            requests_per_hour=per_hour,
            requests_per_day=per_day,
        )
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.quota.SetTrafficLimit, pb.SetTrafficLimitRequest(limit=limit)))

    @app.command("list")
    def list_(addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None) -> None:
        """Every shared traffic limit."""
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.quota.ListTrafficLimits, pb.ListTrafficLimitsRequest()))

    @app.command("delete")
    def delete(
        api: ApiOpt = "", application: AppOpt = "", addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None
    ) -> None:
        """Remove the shared limit of an API or application."""
        scope, target_id = target(api, application)
        request = pb.DeleteTrafficLimitRequest(scope=scope, target_id=target_id)  # type: ignore[arg-type]
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.quota.DeleteTrafficLimit, request))

    return app


def register(app: typer.Typer) -> None:
    """Mounts `tollway quota` and `tollway limits ...` on the main CLI."""

    @app.command("quota")
    def quota(
        subscription_id: Annotated[str, typer.Argument(help="The subscription to report on.")],
        at: Annotated[
            str, typer.Option("--at", help="Instant to read the windows at (ISO 8601); default now.")
        ] = "",
        addr: AddrOpt = _DEFAULT_ADDR,
        token: TokenOpt = None,
    ) -> None:
        """Each window of a subscription's limits: limit, used, remaining and reset time."""
        request = pb.GetSubscriptionQuotaRequest(subscription_id=subscription_id, at=_at(at))
        with closing(_client(addr, token)) as client:
            _emit(client.call(client.quota.GetSubscriptionQuota, request))

    app.add_typer(_limit_commands(), name="limits")
