"""BillingService's prepaid-credit, spend-cap and alert RPCs (a mixin of billing/servicer.py's
BillingServicer, kept apart so each module stays one responsibility)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import grpc

from billing.credit import from_minor, paid_and_due
from billing.credit_store import utc_instant
from billing.invoice_records import InvoiceView
from billing.store import BillingRepository
from tollway.billing.v1 import billing_pb2 as pb
from tollway.errors import map_grpc_errors
from tollway.protoconv import timestamp
from tollway.schema_billing import Alert, CreditAccount, CreditEntry, SpendCap

Context = grpc.aio.ServicerContext[Any, Any]


def balance_to_proto(account: CreditAccount) -> pb.CreditBalance:
    return pb.CreditBalance(
        application_id=account.application_id,
        currency=account.currency,
        balance=from_minor(account.balance_minor, account.currency),
        funded=from_minor(account.funded_minor, account.currency),
        update_time=timestamp(account.updated_at),
    )


def entry_to_proto(entry: CreditEntry) -> pb.CreditEntry:
    return pb.CreditEntry(
        id=entry.id or 0,
        application_id=entry.application_id,
        currency=entry.currency,
        kind=entry.kind,
        amount=from_minor(entry.amount_minor, entry.currency),
        balance_after=from_minor(entry.balance_after_minor, entry.currency),
        subscription_id=entry.subscription_id,
        period_start=timestamp(entry.period_start),
        requests=entry.requests,
        note=entry.note,
        create_time=timestamp(entry.created_at),
    )


def cap_to_proto(cap: SpendCap) -> pb.SpendCap:
    return pb.SpendCap(
        scope=cap.scope, target_id=cap.target_id, kind=cap.kind, limit=cap.limit, currency=cap.currency,
        update_time=timestamp(cap.updated_at), spent=cap.spent,
    )  # fmt: skip


def alert_to_proto(alert: Alert) -> pb.Alert:
    return pb.Alert(
        id=alert.id or 0, scope=alert.scope, target_id=alert.target_id, period=alert.period, kind=alert.kind,
        threshold=alert.threshold, value=alert.value, raise_time=timestamp(alert.raised_at),
    )  # fmt: skip


def settled(view: InvoiceView, paid: dict[tuple[str, str, datetime], int]) -> tuple[str, str]:
    """(paid from credit, amount due) of an invoice: as fixed at finalization, else from `paid`."""
    inv = view.invoice
    if inv.paid_from_credit is not None and inv.amount_due is not None:
        return inv.paid_from_credit, inv.amount_due
    paid_minor = paid.get((inv.application_id, inv.currency, utc_instant(inv.period_start)), 0)
    return paid_and_due(inv.total, inv.currency, paid_minor)


@map_grpc_errors
class CreditRpcs:
    repository: BillingRepository

    async def _invoices(self, views: Sequence[InvoiceView]) -> list[pb.Invoice]:
        from billing.servicer import invoice_to_proto

        keys = [
            (v.invoice.application_id, v.invoice.currency, v.invoice.period_start)
            for v in views
            if v.invoice.paid_from_credit is None
        ]
        paid = await self.repository.credit.paid_from_credit(keys)
        return [invoice_to_proto(view, paid) for view in views]

    async def TopUpCredit(self, request: pb.TopUpCreditRequest, context: Context) -> pb.TopUpCreditResponse:
        posted = await self.repository.credit.top_up(
            request.application_id, request.currency, request.amount, request.request_id, request.note
        )
        accounts = await self.repository.credit.accounts(posted.entry.application_id, posted.entry.currency)
        return pb.TopUpCreditResponse(
            entry=entry_to_proto(posted.entry),
            balance=balance_to_proto(accounts[0]) if accounts else None,
            created=posted.created,
        )

    async def GetCreditBalance(
        self, request: pb.GetCreditBalanceRequest, context: Context
    ) -> pb.GetCreditBalanceResponse:
        accounts = await self.repository.credit.accounts(request.application_id, request.currency)
        return pb.GetCreditBalanceResponse(balances=[balance_to_proto(a) for a in accounts])

    async def ListCreditEntries(
        self, request: pb.ListCreditEntriesRequest, context: Context
    ) -> pb.ListCreditEntriesResponse:
        entries = await self.repository.credit.entries(
            request.application_id, request.currency, request.limit
        )
        return pb.ListCreditEntriesResponse(entries=[entry_to_proto(e) for e in entries])

    async def SetSpendCap(self, request: pb.SetSpendCapRequest, context: Context) -> pb.SetSpendCapResponse:
        cap = request.cap
        row = await self.repository.spend_caps.set_cap(
            cap.scope, cap.target_id, cap.kind, cap.limit, cap.currency
        )
        return pb.SetSpendCapResponse(cap=cap_to_proto(row))

    async def ClearSpendCap(
        self, request: pb.ClearSpendCapRequest, context: Context
    ) -> pb.ClearSpendCapResponse:
        cleared = await self.repository.spend_caps.clear_cap(request.scope, request.target_id, request.kind)
        return pb.ClearSpendCapResponse(cleared=cleared)

    async def ListSpendCaps(
        self, request: pb.ListSpendCapsRequest, context: Context
    ) -> pb.ListSpendCapsResponse:
        caps = await self.repository.spend_caps.list_caps(request.scope, request.target_id)
        return pb.ListSpendCapsResponse(caps=[cap_to_proto(c) for c in caps])

    async def ListAlerts(self, request: pb.ListAlertsRequest, context: Context) -> pb.ListAlertsResponse:
        kinds = [kind.strip().upper() for kind in request.kinds]
        found = await self.repository.list_alerts(
            request.scope.strip().upper(), request.target_id.strip(), kinds, request.limit
        )
        return pb.ListAlertsResponse(alerts=[alert_to_proto(a) for a in found])
