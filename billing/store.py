"""Billing's repository, the one object BillingService talks to: it composes the approval workflow
(billing/approvals.py over tollway/lifecycle.py), the usage queries (billing/usage_queries.py), the
invoice store (billing/invoice_store.py, drafts from billing/invoice_engine.py), credit notes
(billing/credit_notes.py) and the export (billing/export.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing import alerts
from billing.accounts import AccountStore
from billing.approvals import SubscriptionApprovals
from billing.completeness import CompletenessSource, UnknownCompleteness
from billing.credit_notes import CreditNoteStore
from billing.credit_store import CreditStore
from billing.export import export_text
from billing.invoice_engine import UsageRow
from billing.invoice_records import InvoiceRecord, InvoiceView, LineRecord
from billing.invoice_store import InvoiceStore
from billing.periods import Period
from billing.spend_caps import SpendCapStore
from billing.usage_queries import UsageQueries
from tollway.db import Database
from tollway.schema import utcnow
from tollway.schema_billing import Alert

__all__ = [
    "BillingRepository",
    "CompletenessSource",
    "InvoiceRecord",
    "InvoiceView",
    "LineRecord",
    "UnknownCompleteness",
    "UsageRow",
]


class BillingRepository:
    def __init__(
        self,
        db: Database,
        on_commit: Callable[[], None],
        clock: Callable[[], datetime] = utcnow,
        completeness: CompletenessSource | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self.approvals = SubscriptionApprovals(db, on_commit, clock)
        self.usage = UsageQueries(db)
        self.invoices = InvoiceStore(db, on_commit, clock, completeness)
        self.credit_notes = CreditNoteStore(db, self.invoices.billing_write, on_commit, clock)
        self.accounts = AccountStore(db, on_commit, clock)
        # Subscription workflow.
        self.get_subscription = self.approvals.get_subscription
        self.list_pending = self.approvals.list_pending
        self.approve = self.approvals.approve
        self.reject = self.approvals.reject
        self.suspend = self.approvals.suspend
        self.resume = self.approvals.resume
        self.change_plan = self.approvals.change_plan
        self.events = self.approvals.events
        # Usage.
        self.usage_summary = self.usage.usage_summary
        self.subscriptions = self.usage.subscriptions
        self.period_usage = self.usage.period_usage
        # Invoices.
        self.generate = self.invoices.generate
        self.get_invoice = self.invoices.get_invoice
        self.list_invoices = self.invoices.list_invoices
        self.finalize = self.invoices.finalize
        self.void = self.invoices.void
        # Credit notes.
        self.issue_credit_note = self.credit_notes.issue
        self.get_credit_note = self.credit_notes.get
        self.list_credit_notes = self.credit_notes.list_notes
        # Prepaid credit and spend caps.
        self.credit = CreditStore(db, on_commit)
        self.spend_caps = SpendCapStore(db, on_commit)

    async def list_alerts(
        self, scope: str = "", target_id: str = "", kinds: list[str] | None = None, limit: int = 0
    ) -> list[Alert]:
        async with self._db.session() as session:
            return await alerts.list_alerts(session, scope, target_id, kinds or (), limit)

    def now(self) -> datetime:
        return self._clock()

    async def export(self, period: Period, fmt: str, state: str = "") -> str:
        """A period's invoices and their credit notes, one row per line: CSV (header first) or JSON lines
        (one per invoice or credit note)."""
        views = await self.list_invoices(state=state, period=period, with_lines=True)
        notes = await self.credit_notes.list_notes(invoice_ids=[view.invoice.id for view in views])
        return export_text(views, fmt, notes)
