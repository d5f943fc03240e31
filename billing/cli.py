"""`tollway billing ...`: BillingService for accounting from the command line (JSON on stdout; exports
as CSV or JSON lines). Connection options, token and exit codes come from `tollway.cli_support`."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from google.protobuf.timestamp_pb2 import Timestamp

from billing.accounts_cli import add_account_commands
from billing.credit_cli import add_commands
from billing.webhook_cli import commands as webhook_commands
from tollway.billing.v1 import billing_pb2 as pb
from tollway.cli_support import (
    DEFAULT_ADMIN_ADDR,
    AdminAddr,
    AdminToken,
    Output,
    admin_client,
    emit,
    fail,
    time_param,
    timestamp_proto,
    typer_parser,
)

if TYPE_CHECKING:
    import grpc

    from tollway.billing.v1.billing_pb2_grpc import BillingServiceStub


def _billing_service_stub(channel: grpc.Channel) -> BillingServiceStub:
    """The stub, imported on first use: gRPC's import is paid by a call, not by `tollway --help`."""
    from tollway.billing.v1.billing_pb2_grpc import BillingServiceStub

    return BillingServiceStub(channel)


class InvoiceStateChoice(StrEnum):
    draft = "draft"
    finalized = "finalized"
    void = "void"


class ExportFormatChoice(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


_STATES = {
    InvoiceStateChoice.draft: pb.INVOICE_STATE_DRAFT,
    InvoiceStateChoice.finalized: pb.INVOICE_STATE_FINALIZED,
    InvoiceStateChoice.void: pb.INVOICE_STATE_VOID,
}
_FORMATS = {ExportFormatChoice.csv: pb.EXPORT_FORMAT_CSV, ExportFormatChoice.jsonl: pb.EXPORT_FORMAT_JSONL}


def parse_month(text: str) -> datetime:
    """'YYYY-MM' as the first instant of that month in UTC."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"invalid month {text!r}: use YYYY-MM, e.g. 2026-11") from None


def month_bounds(first: datetime) -> tuple[Timestamp, Timestamp]:
    """[first of month, first of next month) in UTC, for listing and exporting a month's invoices."""
    after = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return timestamp_proto(first), timestamp_proto(after)


_month_param = typer_parser(parse_month)


def parse_credit_line(text: str) -> pb.CreditLine:
    """'POSITION' or 'POSITION:AMOUNT' (the amount as typed; the server checks it)."""
    position, _, amount = text.partition(":")
    if not position.strip().isdigit():
        raise typer.BadParameter(f"invalid --line {text!r}: use POSITION or POSITION:AMOUNT, e.g. 1:5.00")
    return pb.CreditLine(invoice_line=int(position), amount=amount.strip())


SubId = Annotated[str, typer.Argument(help="Subscription id.")]
# The shared names (--app and --sub, the earlier spellings, still work: tollway.cli_support).
ApplicationOpt = Annotated[str, typer.Option("--application", help="Only this application id.")]
SubscriptionOpt = Annotated[str, typer.Option("--subscription", help="Only this subscription id.")]
InvoiceRef = Annotated[str, typer.Argument(help="Invoice id or number.")]
MonthOpt = Annotated[
    datetime | None,
    typer.Option("--month", parser=_month_param, metavar="YYYY-MM", help="Billing month, e.g. 2026-11."),
]
StartOpt = Annotated[
    datetime | None,
    typer.Option(
        "--start",
        parser=time_param,
        metavar="TIME",
        help="Period start (ISO 8601, UTC unless an offset is given).",
    ),
]
EndOpt = Annotated[
    datetime | None,
    typer.Option("--end", parser=time_param, metavar="TIME", help="Period end, exclusive (ISO 8601)."),
]
ListMonthOpt = Annotated[
    datetime | None,
    typer.Option("--month", parser=_month_param, metavar="YYYY-MM", help="Periods starting in this month."),
]
# Sent as typed: the server resolves each subscription's period starting in this month.
RunMonthOpt = Annotated[
    str, typer.Option("--month", help="Each subscription's period starting in this month.")
]
StateOpt = Annotated[
    InvoiceStateChoice | None,
    typer.Option("--state", case_sensitive=False, help="Only draft, finalized or void invoices."),
]
# Not --output, which chooses json or table in every other command (the old `export --output PATH`
# still works: tollway.cli_support.LEGACY_COMMAND_OPTIONS).
FileOpt = Annotated[Path | None, typer.Option("--file", "-o", help="File to write (stdout if unset).")]


def _period_fields(
    month: datetime | None, start: datetime | None, end: datetime | None
) -> dict[str, Timestamp]:
    if month and (start or end):
        raise typer.BadParameter("give --month or --start/--end, not both")
    if month:
        first, after = month_bounds(month)
        return {"period_start": first, "period_end": after}
    fields: dict[str, Timestamp] = {}
    if start:
        fields["period_start"] = timestamp_proto(start)
    if end:
        fields["period_end"] = timestamp_proto(end)
    return fields


def _state(state: InvoiceStateChoice | None) -> pb.InvoiceState:
    return _STATES[state] if state is not None else pb.INVOICE_STATE_UNSPECIFIED


def _commands() -> typer.Typer:
    app = typer.Typer(
        help="Invoices, usage summaries and the subscription approval workflow.", no_args_is_help=True
    )

    @app.command()
    def usage(
        subscription: SubId, month: MonthOpt = None, start: StartOpt = None, end: EndOpt = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """A subscription's usage in a period (its current billing period by default)."""
        request = pb.GetUsageSummaryRequest(subscription_id=subscription, **_period_fields(month, start, end))
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.GetUsageSummary, request))

    @app.command()
    def generate(
        month: RunMonthOpt = "",
        start: StartOpt = None, end: EndOpt = None,
        application: ApplicationOpt = "",
        subscription: SubscriptionOpt = "",
        request_id: Annotated[str, typer.Option("--request-id", help="Idempotency key of this run.")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Create or refresh draft invoices for a period."""
        if month and (start or end):
            raise typer.BadParameter("give --month or --start/--end, not both")
        request = pb.GenerateInvoicesRequest(
            billing_month=month, application_id=application, subscription_id=subscription,
            request_id=request_id, **_period_fields(None, start, end),
        )  # fmt: skip
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.GenerateInvoices, request))

    @app.command("list")
    def list_(
        state: StateOpt = None,
        application: ApplicationOpt = "",
        month: ListMonthOpt = None,
        lines: Annotated[bool, typer.Option("--lines", help="Include the lines.")] = False,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """List invoices."""
        request = pb.ListInvoicesRequest(
            state=_state(state), application_id=application, include_lines=lines,
            **_period_fields(month, None, None),
        )  # fmt: skip
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.ListInvoices, request))

    @app.command()
    def show(
        invoice: InvoiceRef,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """One invoice with its lines."""
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.GetInvoice, pb.GetInvoiceRequest(id=invoice)))

    @app.command()
    def finalize(
        invoice: InvoiceRef,
        allow_incomplete: Annotated[
            str | None,
            typer.Option(
                "--allow-incomplete", metavar="REASON",
                help="Finalize even though the period's usage is incomplete, for this reason (recorded "
                "on the invoice with --by and the completeness figure).",
            ),
        ] = None,
        by: Annotated[
            str, typer.Option("--by", help="Who decides --allow-incomplete; default: the OS user name.")
        ] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Finalize a draft: numbered, immutable (finalizing again returns the same invoice). Refused
        (FAILED_PRECONDITION) while the period's usage is incomplete, unless --allow-incomplete."""
        request = pb.FinalizeInvoiceRequest(id=invoice)
        if allow_incomplete is not None:
            request.allow_incomplete.by = by or getpass.getuser()
            request.allow_incomplete.reason = allow_incomplete
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.FinalizeInvoice, request))

    @app.command()
    def void(
        invoice: InvoiceRef,
        reason: Annotated[str, typer.Option("--reason", help="Why (required; kept on the record).")],
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Void an invoice; the record and its number stay."""
        request = pb.VoidInvoiceRequest(id=invoice, reason=reason)
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.VoidInvoice, request))

    @app.command()
    def credit(
        invoice: InvoiceRef,
        reason: Annotated[str, typer.Option("--reason", help="Why (required; kept on the credit note).")],
        line: Annotated[
            list[str] | None,
            typer.Option(
                "--line",
                metavar="POSITION[:AMOUNT]",
                help="Invoice line to credit, repeatable; without AMOUNT all that is left of it. Without "
                "--line: every charged line in full.",
            ),
        ] = None,
        request_id: Annotated[str, typer.Option("--request-id", help="Idempotency key.")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Correct a finalized invoice with a credit note (numbered CN-000001, CN-000002, ...)."""
        request = pb.IssueCreditNoteRequest(
            invoice_id=invoice, reason=reason, request_id=request_id,
            lines=[parse_credit_line(text) for text in line or ()],
        )  # fmt: skip
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.IssueCreditNote, request))

    @app.command("credit-notes")
    def credit_notes(
        invoice: Annotated[str, typer.Option("--invoice", help="Only this invoice's (id or number).")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """List credit notes."""
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.ListCreditNotes, pb.ListCreditNotesRequest(invoice_id=invoice)))

    @app.command()
    def export(
        month: Annotated[
            datetime,
            typer.Option(
                "--month", parser=_month_param, metavar="YYYY-MM",
                help="Invoices whose period starts in this month.",
            ),
        ],
        fmt: Annotated[
            ExportFormatChoice, typer.Option("--format", case_sensitive=False, help="csv or jsonl.")
        ] = ExportFormatChoice.csv,
        state: StateOpt = None,
        file: FileOpt = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None,
    ) -> None:  # fmt: skip
        """Export a month's invoices as CSV (one row per line) or JSON lines (one invoice per line)."""
        first, after = month_bounds(month)
        request = pb.ExportInvoicesRequest(
            period_start=first, period_end=after, format=_FORMATS[fmt], state=_state(state)
        )
        with admin_client(addr, token, _billing_service_stub) as billing:
            content = billing.call(billing.service.ExportInvoices, request).content
        if file is None:
            typer.echo(content, nl=False)
        else:
            file.write_text(content)

    @app.command()
    def pending(
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None
    ) -> None:
        """Subscriptions waiting for approval."""
        request = pb.ListPendingSubscriptionsRequest()
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.ListPendingSubscriptions, request))

    @app.command()
    def watch(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None) -> None:
        """Print pending subscriptions now and as they arrive (Ctrl-C stops)."""
        import grpc

        with admin_client(addr, token, _billing_service_stub) as billing:
            stream = billing.service.WatchPendingSubscriptions(
                pb.WatchPendingSubscriptionsRequest(), metadata=billing.metadata
            )
            try:
                for item in stream:
                    emit(item.subscription)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    fail(billing.describe(exc))
            except KeyboardInterrupt:
                stream.cancel()

    def _transition(rpc_name: str, request_type: type, needs_reason: bool, help_text: str) -> None:
        def command(
            subscription: SubId,
            reason: Annotated[str, typer.Option("--reason", help="Why (kept on the record).")] = "",
            addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
        ) -> None:  # fmt: skip
            if needs_reason and not reason.strip():
                raise typer.BadParameter("--reason is required")
            request = request_type(subscription_id=subscription, reason=reason)
            with admin_client(addr, token, _billing_service_stub) as billing:
                emit(billing.call(getattr(billing.service, rpc_name), request))

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
        plan_argument: Annotated[
            str | None, typer.Argument(metavar="PLAN", help="The same as --plan (the earlier form).")
        ] = None,
        plan: Annotated[
            str | None, typer.Option("--plan", help="Plan id or name offered by the subscription's API.")
        ] = None,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Move a subscription to another plan from now on (the fee is prorated)."""
        if bool(plan) == bool(plan_argument):
            raise typer.BadParameter("give the new plan once: --plan PLAN")
        plan = plan or plan_argument
        request = pb.ChangeSubscriptionPlanRequest(subscription_id=subscription, plan_id=plan)
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.ChangeSubscriptionPlan, request))

    @app.command()
    def events(
        subscription: SubId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR,
        token: AdminToken = None,
        output: Output = None,
    ) -> None:
        """A subscription's approval, suspension and plan-change history."""
        request = pb.ListSubscriptionEventsRequest(subscription_id=subscription)
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.ListSubscriptionEvents, request))

    @app.command()
    def reconcile(
        application: ApplicationOpt = "",
        subscription: SubscriptionOpt = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Billed requests vs the rate limiter's admitted counts, current period, per subscription."""
        request = pb.ReconcileUsageRequest(application_id=application, subscription_id=subscription)
        with admin_client(addr, token, _billing_service_stub) as billing:
            emit(billing.call(billing.service.ReconcileUsage, request))

    add_commands(app)
    add_account_commands(app)
    app.add_typer(webhook_commands(), name="webhooks")
    return app


def register(app: typer.Typer) -> None:
    """Mounts `tollway billing ...` on the main CLI."""
    app.add_typer(_commands(), name="billing")
