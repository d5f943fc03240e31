"""`tollway billing top-up | balance | ledger | cap ... | caps | alerts`: prepaid credit, spend caps and
alerts over BillingService (--output json|table, as every admin command), mounted on `tollway billing`
by billing/cli.py."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from tollway.billing.v1 import billing_pb2 as pb
from tollway.cli_support import DEFAULT_ADMIN_ADDR, AdminAddr, AdminToken, Output, admin_client, emit

if TYPE_CHECKING:
    import grpc

    from tollway.billing.v1.billing_pb2_grpc import BillingServiceStub


def billing_service_stub(channel: grpc.Channel) -> BillingServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.billing.v1.billing_pb2_grpc import BillingServiceStub

    return BillingServiceStub(channel)


class ScopeChoice(StrEnum):
    application = "application"
    subscription = "subscription"


class CapKindChoice(StrEnum):
    charge = "charge"
    requests = "requests"


Application = Annotated[str, typer.Option("--application", help="Application id.")]
Currency = Annotated[str, typer.Option("--currency", help="ISO 4217 code, e.g. EUR.")]
Scope = Annotated[ScopeChoice, typer.Option("--scope", help="What the cap applies to.")]
Target = Annotated[str, typer.Option("--target", help="The application or subscription id.")]
TargetFilter = Annotated[str, typer.Option("--target", help="Only this application's or subscription's.")]
Kind = Annotated[CapKindChoice, typer.Option("--kind", help="charge: the period's metered charge; requests.")]


def add_commands(app: typer.Typer) -> None:
    @app.command("top-up")
    def top_up(
        application: Application,
        amount: Annotated[str, typer.Option("--amount", help="Positive amount, e.g. 100.00.")],
        currency: Currency,
        request_id: Annotated[
            str, typer.Option("--request-id", help="Idempotency key (retrying with it adds nothing more).")
        ] = "",
        note: Annotated[str, typer.Option("--note")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Add prepaid credit to an application's balance."""
        request = pb.TopUpCreditRequest(
            application_id=application, currency=currency, amount=amount,
            request_id=request_id or f"cli-{uuid.uuid4().hex}", note=note,
        )  # fmt: skip
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.TopUpCredit, request))

    @app.command()
    def balance(
        application: Application, currency: Currency = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """An application's credit balances."""
        request = pb.GetCreditBalanceRequest(application_id=application, currency=currency)
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.GetCreditBalance, request))

    @app.command()
    def ledger(
        application: Application, currency: Currency = "",
        limit: Annotated[int, typer.Option("--limit", min=0)] = 0,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """An application's credit ledger (top-ups and burns), newest first."""
        request = pb.ListCreditEntriesRequest(application_id=application, currency=currency, limit=limit)
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.ListCreditEntries, request))

    @app.command("cap")
    def set_cap(
        scope: Scope, target: Target, kind: Kind,
        limit: Annotated[str, typer.Option("--limit", help="Amount (charge) or number of requests; >= 0.")],
        currency: Currency = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Set a spend cap; reaching it refuses at the gateway (402 spend_cap_reached)."""
        cap = pb.SpendCap(
            scope=scope.value.upper(),
            target_id=target,
            kind=kind.value.upper(),
            limit=limit,
            currency=currency,
        )
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.SetSpendCap, pb.SetSpendCapRequest(cap=cap)))

    @app.command("clear-cap")
    def clear_cap(
        scope: Scope, target: Target, kind: Kind,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Remove a spend cap."""
        request = pb.ClearSpendCapRequest(
            scope=scope.value.upper(), target_id=target, kind=kind.value.upper()
        )
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.ClearSpendCap, request))

    @app.command()
    def caps(
        target: TargetFilter = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """List spend caps."""
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.ListSpendCaps, pb.ListSpendCapsRequest(target_id=target)))

    @app.command()
    def alerts(
        target: TargetFilter = "",
        kind: Annotated[
            list[str] | None,
            typer.Option("--kind", help="QUOTA, CAP_CHARGE, CAP_REQUESTS or CREDIT; repeatable."),
        ] = None,
        limit: Annotated[int, typer.Option("--limit", min=0)] = 0,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Alerts raised (50/80/100 % of a quota, a spend cap or funded credit), newest first."""
        request = pb.ListAlertsRequest(target_id=target, kinds=kind or [], limit=limit)
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.ListAlerts, request))
