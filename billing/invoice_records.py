"""Invoices and their lines as read or just written: plain values, no ORM identity to keep in sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tollway.schema_billing import Invoice, InvoiceLine

INVOICE_STATES = ("DRAFT", "FINALIZED", "VOID")


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    id: str
    number: str | None
    state: str
    application_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    total: str
    usage_completeness: str
    completeness_note: str
    created_at: datetime
    updated_at: datetime
    finalized_at: datetime | None
    voided_at: datetime | None
    void_reason: str
    subtotal: str
    tax_total: str
    # The account's details as finalized; {} on drafts (InvoiceView.customer holds the current ones).
    customer: dict[str, Any]
    # Fixed at finalization; None: computed when read (drafts, invoices finalized before they were kept).
    paid_from_credit: str | None
    amount_due: str | None


@dataclass(frozen=True, slots=True)
class LineRecord:
    invoice_id: str
    position: int
    subscription_id: str
    api_id: str
    plan_id: str
    plan_version: int
    kind: str
    description: str
    quantity: str
    unit_price: str
    amount: str
    adjusts_segment_id: int | None
    details: dict[str, Any]


INVOICE_FIELDS = [f for f in InvoiceRecord.__slots__]
LINE_FIELDS = [f for f in LineRecord.__slots__]
INVOICE_COLUMNS = [getattr(Invoice, name) for name in INVOICE_FIELDS]
LINE_COLUMNS = [getattr(InvoiceLine, name) for name in LINE_FIELDS]


@dataclass(frozen=True, slots=True)
class OverrideRecord:
    """Finalized while the period's usage was INCOMPLETE: who decided, why, when, at what figure."""

    by: str
    reason: str
    at: datetime
    completeness: float
    completeness_note: str


@dataclass(frozen=True, slots=True)
class TaxRecord:
    """An invoice's tax line for one rate (billing/tax.py)."""

    position: int
    tax_rate_id: str
    name: str
    rate: str
    inclusive: bool
    taxable: str
    amount: str


@dataclass
class InvoiceView:
    invoice: InvoiceRecord
    lines: list[LineRecord] = field(default_factory=list)
    override: OverrideRecord | None = None
    taxes: list[TaxRecord] = field(default_factory=list)
    # Whom the invoice is addressed to: the snapshot once finalized, the account's current details on a
    # draft, {} when its application has no billing account.
    customer: dict[str, Any] = field(default_factory=dict)


# InvoiceTax's columns as written: the invoice's id, then TaxRecord's fields.
TAX_FIELDS = ["invoice_id", *TaxRecord.__slots__]
