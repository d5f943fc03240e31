"""`tollway billing ...`: BillingService for accounting from the command line (JSON on stdout; exports
as CSV or JSON lines). Same connection options and token as the other admin commands."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf.timestamp_pb2 import Timestamp

from tollway.admin_cli import AddrOpt, AdminClient, TokenOpt, _emit, _resolve_token
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.settings import Settings

_DEFAULT_ADDR = Settings().admin_addr
_STATES = {
    "draft": pb.INVOICE_STATE_DRAFT,
    "finalized": pb.INVOICE_STATE_FINALIZED,
    "void": pb.INVOICE_STATE_VOID,
}

SubId = Annotated[str, typer.Argument(help="Subscription id.")]
InvoiceRef = Annotated[str, typer.Argument(help="Invoice id or number.")]
MonthOpt = Annotated[str, typer.Option("--month", help="Billing month, e.g. 2026-11.")]
StartOpt = Annotated[
    str, typer.Option("--start", help="Period start (ISO 8601, UTC unless an offset is given).")
]
EndOpt = Annotated[str, typer.Option("--end", help="Period end, exclusive (ISO 8601).")]
RunMonthOpt = Annotated[
    str, typer.Option("--month", help="Each subscription's period starting in this month.")
]
StateOpt = Annotated[str, typer.Option("--state", help="draft, finalized or void.")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="File to write (stdout if unset).")]


class BillingClient(AdminClient):
    def __init__(self, addr: str, token: str) -> None:
        super().__init__(addr, token)
        self.billing = billing_pb2_grpc.BillingServiceStub(self._channel)


def _client(addr: str, token: str | None) -> BillingClient:
    return BillingClient(addr, _resolve_token(token))


def parse_time(text: str) -> Timestamp:
    """ISO 8601 date or date-time; naive values are UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"invalid time {text!r}: use ISO 8601, e.g. 2026-11-01T00:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def month_bounds(month: str) -> tuple[Timestamp, Timestamp]:
    """[first of month, first of next month) in UTC, for listing and exporting a month's invoices."""
    try:
        start = datetime.strptime(month.strip(), "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise typer.BadParameter(f"invalid month {month!r}: use YYYY-MM, e.g. 2026-11") from None
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return parse_time(start.isoformat()), parse_time(end.isoformat())


def _period_fields(month: str, start: str, end: str) -> dict[str, Timestamp]:
    if month and (start or end):
        raise typer.BadParameter("give --month or --start/--end, not both")
    if month:
        first, after = month_bounds(month)
        return {"period_start": first, "period_end": after}
    fields: dict[str, Timestamp] = {}
    if start:
        fields["period_start"] = parse_time(start)
    if end:
        fields["period_end"] = parse_time(end)
    return fields


def _commands() -> typer.Typer:
    app = typer.Typer(
        help="Invoices, usage summaries and the subscription approval workflow.", no_args_is_help=True
    )

    @app.command()
    def usage(
        subscription: SubId, month: MonthOpt = "", start: StartOpt = "", end: EndOpt = "",
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """A subscription's usage in a period (its current billing period by default)."""
        request = pb.GetUsageSummaryRequest(subscription_id=subscription, **_period_fields(month, start, end))
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.GetUsageSummary, request))

    @app.command()
    def generate(
        month: RunMonthOpt = "",
        start: StartOpt = "", end: EndOpt = "",
        application: Annotated[str, typer.Option("--app", help="Only this application.")] = "",
        subscription: Annotated[str, typer.Option("--sub", help="Only this subscription.")] = "",
        request_id: Annotated[str, typer.Option("--request-id", help="Idempotency key of this run.")] = "",
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Create or refresh draft invoices for a period."""
        if month and (start or end):
            raise typer.BadParameter("give --month or --start/--end, not both")
        request = pb.GenerateInvoicesRequest(
            billing_month=month, application_id=application, subscription_id=subscription,
            request_id=request_id, **_period_fields("", start, end),
        )  # fmt: skip
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.GenerateInvoices, request))

    @app.command("list")
    def list_(
        state: StateOpt = "",
        application: Annotated[str, typer.Option("--app")] = "",
        month: Annotated[str, typer.Option("--month", help="Periods starting in this month.")] = "",
        lines: Annotated[bool, typer.Option("--lines", help="Include the lines.")] = False,
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """List invoices."""
        if state and state.lower() not in _STATES:
            raise typer.BadParameter(f"invalid state {state!r}: use draft, finalized or void")
        request = pb.ListInvoicesRequest(
            state=_STATES.get(state.lower(), 0), application_id=application, include_lines=lines,  # type: ignore[arg-type]
            **_period_fields(month, "", ""),
        )  # fmt: skip
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.ListInvoices, request))

    @app.command()
    def show(invoice: InvoiceRef, addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None) -> None:
        """One invoice with its lines."""
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.GetInvoice, pb.GetInvoiceRequest(id=invoice)))

    @app.command()
    def finalize(invoice: InvoiceRef, addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None) -> None:
        """Finalize a draft: numbered, immutable (finalizing again returns the same invoice)."""
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.FinalizeInvoice, pb.FinalizeInvoiceRequest(id=invoice)))

    @app.command()
    def void(
        invoice: InvoiceRef,
        reason: Annotated[str, typer.Option("--reason", help="Why (required; kept on the record).")],
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Void an invoice; the record and its number stay."""
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.VoidInvoice, pb.VoidInvoiceRequest(id=invoice, reason=reason)))

    @app.command()
    def export(
        month: Annotated[str, typer.Option("--month", help="Invoices whose period starts in this month.")],
        fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
        state: Annotated[str, typer.Option("--state", help="Only draft, finalized or void invoices.")] = "",
        output: OutputOpt = None,
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Export a month's invoices as CSV (one row per line) or JSON lines (one invoice per line)."""
        formats = {"csv": pb.EXPORT_FORMAT_CSV, "jsonl": pb.EXPORT_FORMAT_JSONL}
        if fmt.lower() not in formats:
            raise typer.BadParameter(f"invalid format {fmt!r}: use csv or jsonl")
        if state and state.lower() not in _STATES:
            raise typer.BadParameter(f"invalid state {state!r}: use draft, finalized or void")
        first, after = month_bounds(month)
        request = pb.ExportInvoicesRequest(
            period_start=first, period_end=after, format=formats[fmt.lower()],  # type: ignore[arg-type]
            state=_STATES.get(state.lower(), 0),  # type: ignore[arg-type]
        )  # fmt: skip
        with _closing(_client(addr, token)) as client:
            content = client.call(client.billing.ExportInvoices, request).content
        if output is None:
            typer.echo(content, nl=False)
        else:
            output.write_text(content)

    @app.command()
    def pending(addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None) -> None:
        """Subscriptions waiting for approval."""
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.ListPendingSubscriptions, pb.ListPendingSubscriptionsRequest()))

    @app.command()
    def watch(addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None) -> None:
        """Print pending subscriptions now and as they arrive (Ctrl-C stops)."""
        with _closing(_client(addr, token)) as client:
            stream = client.billing.WatchPendingSubscriptions(
                pb.WatchPendingSubscriptionsRequest(), metadata=client._metadata
            )
            try:
                for item in stream:
                    _emit(item.subscription)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                    typer.echo(f"error: {client._describe(exc)}", err=True)
                    raise typer.Exit(1) from None
            except KeyboardInterrupt:
                stream.cancel()

    def _transition(rpc_name: str, request_type: type, needs_reason: bool, help_text: str) -> None:
        def command(
            subscription: SubId,
            reason: Annotated[str, typer.Option("--reason", help="Why (kept on the record).")] = "",
            addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
        ) -> None:  # fmt: skip
            if needs_reason and not reason.strip():
                raise typer.BadParameter("--reason is required")
            with _closing(_client(addr, token)) as client:
                rpc = getattr(client.billing, rpc_name)
                _emit(client.call(rpc, request_type(subscription_id=subscription, reason=reason)))

        command.__doc__ = help_text
        app.command(rpc_name.removesuffix("Subscription").lower())(command)

    _transition(
        "ApproveSubscription", pb.ApproveSubscriptionRequest, False, "Approve a pending subscription."
    )
    _transition("RejectSubscription", pb.RejectSubscriptionRequest, True, "Reject a pending subscription.")
    _transition("SuspendSubscription", pb.SuspendSubscriptionRequest, True, "Suspend (e.g. for non-payment).")
    _transition("ResumeSubscription", pb.ResumeSubscriptionRequest, False, "Resume a suspended subscription.")

    @app.command("change-plan")
    def change_plan(
        subscription: SubId,
        plan: Annotated[str, typer.Argument(help="Plan id or name offered by the subscription's API.")],
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Move a subscription to another plan from now on (the fee is prorated)."""
        request = pb.ChangeSubscriptionPlanRequest(subscription_id=subscription, plan_id=plan)
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.ChangeSubscriptionPlan, request))

    @app.command()
    def events(subscription: SubId, addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None) -> None:
        """A subscription's approval, suspension and plan-change history."""
        request = pb.ListSubscriptionEventsRequest(subscription_id=subscription)
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.ListSubscriptionEvents, request))

    @app.command()
    def reconcile(
        application: Annotated[str, typer.Option("--app")] = "",
        subscription: Annotated[str, typer.Option("--sub")] = "",
        addr: AddrOpt = _DEFAULT_ADDR, token: TokenOpt = None,
    ) -> None:  # fmt: skip
        """Billed requests vs the rate limiter's admitted counts, current period, per subscription."""
        request = pb.ReconcileUsageRequest(application_id=application, subscription_id=subscription)
        with _closing(_client(addr, token)) as client:
            _emit(client.call(client.billing.ReconcileUsage, request))

    return app


class _closing:
    def __init__(self, client: BillingClient) -> None:
        self.client = client

    def __enter__(self) -> BillingClient:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def register(app: typer.Typer) -> None:
    """Mounts `tollway billing ...` on the main CLI."""
    app.add_typer(_commands(), name="billing")
