"""BillingService (admin port, bearer token): thin protobuf ↔ repository translation."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from billing import pricing as pr
from billing.account_servicer import credit_note_tax_fields, invoice_account_fields
from billing.completeness import AllowIncomplete
from billing.credit_notes import CreditNoteView, CreditRequest
from billing.credit_servicer import CreditRpcs, settled
from billing.invoice_records import OverrideRecord
from billing.periods import Period, parse_month, period_containing, validate_period
from billing.reconcile import AdmittedCounts, NoLimiter, reconcile
from billing.store import BillingRepository, InvoiceView
from billing.webhook_servicer import WebhookRpc
from billing.webhook_store import WebhookStore
from tollway.billing.v1 import billing_pb2, billing_pb2_grpc
from tollway.errors import InvalidArgument, map_grpc_errors, status_for
from tollway.protoconv import subscription_to_proto, timestamp, to_datetime
from tollway.schema import SubscriptionEvent

_COMPLETENESS = {
    "COMPLETE": billing_pb2.USAGE_COMPLETENESS_COMPLETE,
    "INCOMPLETE": billing_pb2.USAGE_COMPLETENESS_INCOMPLETE,
    "UNKNOWN": billing_pb2.USAGE_COMPLETENESS_UNKNOWN,
}
_STATES = {
    "DRAFT": billing_pb2.INVOICE_STATE_DRAFT,
    "FINALIZED": billing_pb2.INVOICE_STATE_FINALIZED,
    "VOID": billing_pb2.INVOICE_STATE_VOID,
}
_STATE_NAMES = {value: name for name, value in _STATES.items()}
# How long a watcher waits for a change notification before looking anyway.
WATCH_POLL_SECONDS = 1.0


def invoice_to_proto(
    view: InvoiceView, paid: dict[tuple[str, str, datetime], int] | None = None
) -> billing_pb2.Invoice:
    inv = view.invoice
    paid_text, due_text = settled(view, paid or {})
    return billing_pb2.Invoice(
        paid_from_credit=paid_text,
        amount_due=due_text,
        id=inv.id,
        number=inv.number or "",
        state=_STATES[inv.state],
        application_id=inv.application_id,
        currency=inv.currency,
        period_start=timestamp(inv.period_start),
        period_end=timestamp(inv.period_end),
        total=inv.total,
        usage_completeness=_COMPLETENESS.get(inv.usage_completeness, billing_pb2.USAGE_COMPLETENESS_UNKNOWN),
        completeness_note=inv.completeness_note,
        lines=[
            billing_pb2.InvoiceLine(
                position=line.position,
                subscription_id=line.subscription_id,
                api_id=line.api_id,
                plan_id=line.plan_id,
                plan_version=line.plan_version,
                kind=line.kind,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                details_json=json.dumps(line.details, sort_keys=True),
            )
            for line in view.lines
        ],
        create_time=timestamp(inv.created_at),
        finalize_time=timestamp(inv.finalized_at),
        void_time=timestamp(inv.voided_at),
        void_reason=inv.void_reason,
        completeness_override=_override_to_proto(view.override),
        **invoice_account_fields(view),
    )


def _override_to_proto(override: OverrideRecord | None) -> billing_pb2.CompletenessOverride | None:
    if override is None:
        return None
    return billing_pb2.CompletenessOverride(
        by=override.by,
        reason=override.reason,
        time=timestamp(override.at),
        completeness=override.completeness,
        completeness_note=override.completeness_note,
    )


def credit_note_to_proto(view: CreditNoteView) -> billing_pb2.CreditNote:
    note = view.note
    return billing_pb2.CreditNote(
        id=note.id,
        number=note.number,
        invoice_id=note.invoice_id,
        invoice_number=view.invoice_number,
        application_id=note.application_id,
        currency=note.currency,
        total=note.total,
        reason=note.reason,
        lines=[
            billing_pb2.CreditNoteLine(
                position=line.position,
                invoice_line=line.invoice_line,
                subscription_id=line.subscription_id,
                plan_id=line.plan_id,
                plan_version=line.plan_version,
                kind=line.kind,
                description=line.description,
                amount=line.amount,
            )
            for line in view.lines
        ],
        issue_time=timestamp(note.created_at),
        **credit_note_tax_fields(note),
    )


def event_to_proto(event: SubscriptionEvent) -> billing_pb2.SubscriptionEvent:
    return billing_pb2.SubscriptionEvent(
        subscription_id=event.subscription_id,
        time=timestamp(event.at),
        kind=event.kind,
        from_state=event.from_state,
        to_state=event.to_state,
        from_plan_id=event.from_plan_id,
        to_plan_id=event.to_plan_id,
        reason=event.reason,
    )


def counts_to_proto(usage: pr.Usage) -> billing_pb2.UsageCounts:
    return billing_pb2.UsageCounts(**usage.to_json())


def _time(stamp: Timestamp, present: bool, field: str) -> datetime | None:
    """A request's optional instant; out of range is INVALID_ARGUMENT naming the field."""
    return to_datetime(stamp, field) if present else None


def _period(request: object, required: bool) -> Period | None:
    start = _time(request.period_start, request.HasField("period_start"), "period_start")  # type: ignore[attr-defined]
    end = _time(request.period_end, request.HasField("period_end"), "period_end")  # type: ignore[attr-defined]
    if start is None and end is None:
        if required:
            raise InvalidArgument("period_start and period_end are required")
        return None
    if start is None or end is None:
        raise InvalidArgument("give both period_start and period_end")
    return validate_period(start, end)


class PendingHub:
    """Wakes pending-subscription watchers whenever the change feed reports a committed change."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self.generation = 0

    async def notify(self) -> None:
        async with self._changed:
            self.generation += 1
            self._changed.notify_all()

    async def wait(self, seen: int, timeout: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.generation != seen), timeout)


@map_grpc_errors
class BillingServicer(CreditRpcs, WebhookRpc, billing_pb2_grpc.BillingServiceServicer):
    def __init__(
        self,
        repository: BillingRepository,
        hub: PendingHub | None = None,
        limiter: AdmittedCounts | None = None,
        webhooks: WebhookStore | None = None,
    ) -> None:
        self.repository = repository
        self.webhooks = webhooks
        self.hub = hub or PendingHub()
        self.limiter: AdmittedCounts = limiter or NoLimiter()

    async def GetUsageSummary(
        self,
        request: billing_pb2.GetUsageSummaryRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.GetUsageSummaryRequest, billing_pb2.GetUsageSummaryResponse
        ],
    ) -> billing_pb2.GetUsageSummaryResponse:
        period = _period(request, required=False)
        if period is None:
            subscription = await self.repository.get_subscription(request.subscription_id)
            at = _time(request.at, request.HasField("at"), "at") or self.repository.now()
            period = period_containing(at, subscription.billing_anchor_day)
        rows = await self.repository.usage_summary(request.subscription_id, period)
        total = sum((row.usage for row in rows), pr.Usage())
        return billing_pb2.GetUsageSummaryResponse(
            subscription_id=request.subscription_id.strip(),
            period_start=timestamp(period.start),
            period_end=timestamp(period.end),
            total=counts_to_proto(total),
            plans=[billing_pb2.PlanUsage(plan_id=r.plan_id, counts=counts_to_proto(r.usage)) for r in rows],
        )

    async def GenerateInvoices(
        self,
        request: billing_pb2.GenerateInvoicesRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.GenerateInvoicesRequest, billing_pb2.GenerateInvoicesResponse
        ],
    ) -> billing_pb2.GenerateInvoicesResponse:
        period = _period(request, required=False)
        month = parse_month(request.billing_month.strip()) if request.billing_month.strip() else None
        views = await self.repository.generate(
            period=period,
            month=month,
            application_id=request.application_id,
            subscription_id=request.subscription_id,
            request_id=request.request_id,
        )
        return billing_pb2.GenerateInvoicesResponse(invoices=await self._invoices(views))

    async def ListInvoices(
        self,
        request: billing_pb2.ListInvoicesRequest,
        context: grpc.aio.ServicerContext[billing_pb2.ListInvoicesRequest, billing_pb2.ListInvoicesResponse],
    ) -> billing_pb2.ListInvoicesResponse:
        state = _STATE_NAMES.get(request.state, "") if request.state else ""
        if request.state and not state:
            raise InvalidArgument(f"unknown invoice state {request.state}")
        views = await self.repository.list_invoices(
            state=state,
            application_id=request.application_id,
            period=_period(request, required=False),
            with_lines=request.include_lines,
        )
        return billing_pb2.ListInvoicesResponse(invoices=await self._invoices(views))

    async def GetInvoice(
        self,
        request: billing_pb2.GetInvoiceRequest,
        context: grpc.aio.ServicerContext[billing_pb2.GetInvoiceRequest, billing_pb2.GetInvoiceResponse],
    ) -> billing_pb2.GetInvoiceResponse:
        return billing_pb2.GetInvoiceResponse(
            invoice=(await self._invoices([await self.repository.get_invoice(request.id)]))[0]
        )

    async def FinalizeInvoice(
        self,
        request: billing_pb2.FinalizeInvoiceRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.FinalizeInvoiceRequest, billing_pb2.FinalizeInvoiceResponse
        ],
    ) -> billing_pb2.FinalizeInvoiceResponse:
        allow = None
        if request.HasField("allow_incomplete"):
            allow = AllowIncomplete(request.allow_incomplete.by, request.allow_incomplete.reason)
        view = await self.repository.finalize(request.id, allow)
        return billing_pb2.FinalizeInvoiceResponse(invoice=(await self._invoices([view]))[0])

    async def VoidInvoice(
        self,
        request: billing_pb2.VoidInvoiceRequest,
        context: grpc.aio.ServicerContext[billing_pb2.VoidInvoiceRequest, billing_pb2.VoidInvoiceResponse],
    ) -> billing_pb2.VoidInvoiceResponse:
        view = await self.repository.void(request.id, request.reason)
        return billing_pb2.VoidInvoiceResponse(invoice=(await self._invoices([view]))[0])

    async def ExportInvoices(
        self,
        request: billing_pb2.ExportInvoicesRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ExportInvoicesRequest, billing_pb2.ExportInvoicesResponse
        ],
    ) -> billing_pb2.ExportInvoicesResponse:
        period = _period(request, required=True)
        assert period is not None
        formats = {billing_pb2.EXPORT_FORMAT_CSV: ("csv", "text/csv"),
                   billing_pb2.EXPORT_FORMAT_JSONL: ("jsonl", "application/jsonl")}  # fmt: skip
        if request.format not in formats:
            raise InvalidArgument("format must be EXPORT_FORMAT_CSV or EXPORT_FORMAT_JSONL")
        fmt, content_type = formats[request.format]
        state = _STATE_NAMES.get(request.state, "") if request.state else ""
        content = await self.repository.export(period, fmt, state=state)
        return billing_pb2.ExportInvoicesResponse(content_type=content_type, content=content)

    async def IssueCreditNote(
        self,
        request: billing_pb2.IssueCreditNoteRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.IssueCreditNoteRequest, billing_pb2.IssueCreditNoteResponse
        ],
    ) -> billing_pb2.IssueCreditNoteResponse:
        lines = [CreditRequest(line.invoice_line, line.amount.strip()) for line in request.lines]
        view = await self.repository.issue_credit_note(
            request.invoice_id, request.reason, lines, request.request_id
        )
        return billing_pb2.IssueCreditNoteResponse(credit_note=credit_note_to_proto(view))

    async def GetCreditNote(
        self,
        request: billing_pb2.GetCreditNoteRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.GetCreditNoteRequest, billing_pb2.GetCreditNoteResponse
        ],
    ) -> billing_pb2.GetCreditNoteResponse:
        view = await self.repository.get_credit_note(request.id)
        return billing_pb2.GetCreditNoteResponse(credit_note=credit_note_to_proto(view))

    async def ListCreditNotes(
        self,
        request: billing_pb2.ListCreditNotesRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ListCreditNotesRequest, billing_pb2.ListCreditNotesResponse
        ],
    ) -> billing_pb2.ListCreditNotesResponse:
        views = await self.repository.list_credit_notes(request.invoice_id)
        return billing_pb2.ListCreditNotesResponse(credit_notes=[credit_note_to_proto(v) for v in views])

    async def ListPendingSubscriptions(
        self,
        request: billing_pb2.ListPendingSubscriptionsRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ListPendingSubscriptionsRequest, billing_pb2.ListPendingSubscriptionsResponse
        ],
    ) -> billing_pb2.ListPendingSubscriptionsResponse:
        rows = await self.repository.list_pending()
        return billing_pb2.ListPendingSubscriptionsResponse(
            subscriptions=[subscription_to_proto(r) for r in rows]
        )

    async def ApproveSubscription(
        self,
        request: billing_pb2.ApproveSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ApproveSubscriptionRequest, billing_pb2.ApproveSubscriptionResponse
        ],
    ) -> billing_pb2.ApproveSubscriptionResponse:
        row = await self.repository.approve(request.subscription_id, request.reason)
        return billing_pb2.ApproveSubscriptionResponse(subscription=subscription_to_proto(row))

    async def RejectSubscription(
        self,
        request: billing_pb2.RejectSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.RejectSubscriptionRequest, billing_pb2.RejectSubscriptionResponse
        ],
    ) -> billing_pb2.RejectSubscriptionResponse:
        row = await self.repository.reject(request.subscription_id, request.reason)
        return billing_pb2.RejectSubscriptionResponse(subscription=subscription_to_proto(row))

    async def SuspendSubscription(
        self,
        request: billing_pb2.SuspendSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.SuspendSubscriptionRequest, billing_pb2.SuspendSubscriptionResponse
        ],
    ) -> billing_pb2.SuspendSubscriptionResponse:
        row = await self.repository.suspend(request.subscription_id, request.reason)
        return billing_pb2.SuspendSubscriptionResponse(subscription=subscription_to_proto(row))

    async def ResumeSubscription(
        self,
        request: billing_pb2.ResumeSubscriptionRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ResumeSubscriptionRequest, billing_pb2.ResumeSubscriptionResponse
        ],
    ) -> billing_pb2.ResumeSubscriptionResponse:
        row = await self.repository.resume(request.subscription_id, request.reason)
        return billing_pb2.ResumeSubscriptionResponse(subscription=subscription_to_proto(row))

    async def ChangeSubscriptionPlan(
        self,
        request: billing_pb2.ChangeSubscriptionPlanRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ChangeSubscriptionPlanRequest, billing_pb2.ChangeSubscriptionPlanResponse
        ],
    ) -> billing_pb2.ChangeSubscriptionPlanResponse:
        row = await self.repository.change_plan(request.subscription_id, request.plan_id)
        return billing_pb2.ChangeSubscriptionPlanResponse(subscription=subscription_to_proto(row))

    async def ListSubscriptionEvents(
        self,
        request: billing_pb2.ListSubscriptionEventsRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ListSubscriptionEventsRequest, billing_pb2.ListSubscriptionEventsResponse
        ],
    ) -> billing_pb2.ListSubscriptionEventsResponse:
        events = await self.repository.events(request.subscription_id)
        return billing_pb2.ListSubscriptionEventsResponse(events=[event_to_proto(e) for e in events])

    async def ReconcileUsage(
        self,
        request: billing_pb2.ReconcileUsageRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ReconcileUsageRequest, billing_pb2.ReconcileUsageResponse
        ],
    ) -> billing_pb2.ReconcileUsageResponse:
        at = _time(request.at, request.HasField("at"), "at") or self.repository.now()
        results = await reconcile(
            self.repository, self.limiter, at, request.application_id, request.subscription_id
        )
        return billing_pb2.ReconcileUsageResponse(
            subscriptions=[
                billing_pb2.Reconciliation(
                    subscription_id=r.subscription_id,
                    period_start=timestamp(r.period.start),
                    period_end=timestamp(r.period.end),
                    metered_admitted=r.metered_admitted,
                    billed_successful=r.billed_successful,
                    limiter_admitted=r.limiter_admitted,
                    difference=r.difference,
                    limiter_available=r.limiter_available,
                    note=r.note,
                )
                for r in results
            ]
        )

    # Server streaming: not wrapped by map_grpc_errors (that handles unary methods), so errors are
    # mapped here.
    async def WatchPendingSubscriptions(
        self,
        request: billing_pb2.WatchPendingSubscriptionsRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.WatchPendingSubscriptionsRequest, billing_pb2.WatchPendingSubscriptionsResponse
        ],
    ) -> AsyncIterator[billing_pb2.WatchPendingSubscriptionsResponse]:
        sent: set[str] = set()
        while True:
            generation = self.hub.generation
            try:
                pending = await self.repository.list_pending()
            except Exception as exc:
                code, message = status_for(exc)
                await context.abort(code, message)
            for row in pending:
                if row.id not in sent:
                    sent.add(row.id)
                    yield billing_pb2.WatchPendingSubscriptionsResponse(
                        subscription=subscription_to_proto(row)
                    )
            # Forget the ones decided meanwhile, so the set stays as small as the pending queue.
            sent &= {row.id for row in pending}
            await self.hub.wait(generation, WATCH_POLL_SECONDS)
