"""Who an invoice is addressed to and what tax it carries, as read and as fixed at finalization.

A draft shows its application's billing account as it is now and the taxes of the last run; finalizing
writes the account's details on the invoice (`Invoice.customer`) and taxes it once more with the rates
in force at that moment, in the finalizing transaction: from then on neither an account change nor a
rate change alters it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import pricing as pr
from billing.accounts import current_customers, tax_context
from billing.invoice_records import TAX_FIELDS, InvoiceRecord, TaxRecord
from billing.tax import invoice_taxes, per_line_json, tax_rows
from billing.usage_queries import chunks
from tollway.money import money_text
from tollway.schema_billing import Invoice, InvoiceLine, InvoiceTax

TAX_COLUMNS = [getattr(InvoiceTax, name) for name in TAX_FIELDS]


def with_subtotal(record: InvoiceRecord) -> InvoiceRecord:
    """An invoice written before taxes (its new columns added empty by the schema upgrade): untaxed, so
    its subtotal is its total."""
    if record.subtotal:
        return record
    zero = money_text(pr.round_amount(Decimal(0), record.currency))
    return replace(record, subtotal=record.total, tax_total=zero, customer={})


async def taxes_and_customers(
    session: AsyncSession, invoices: Mapping[str, InvoiceRecord]
) -> tuple[dict[str, list[TaxRecord]], dict[str, dict[str, Any]]]:
    """Each invoice's tax lines, and whom it is addressed to (finalized: its snapshot; else the
    account's current details)."""
    taxes: dict[str, list[TaxRecord]] = defaultdict(list)
    for chunk in chunks(list(invoices)):
        statement = (
            select(*TAX_COLUMNS)
            .where(col(InvoiceTax.invoice_id).in_(chunk))
            .order_by(col(InvoiceTax.invoice_id), col(InvoiceTax.position))
        )
        for row in (await session.exec(statement)).all():
            taxes[row[0]].append(TaxRecord(*row[1:]))
    customers: dict[str, dict[str, Any]] = {}
    live = {inv.application_id for inv in invoices.values() if inv.finalized_at is None}
    current = await current_customers(session, live) if live else {}
    for invoice_id, inv in invoices.items():
        if inv.finalized_at is not None:
            # A snapshot; {} (or [] from a database upgraded in place) when it had no account.
            snapshot: Any = inv.customer
            customers[invoice_id] = dict(snapshot) if isinstance(snapshot, dict) else {}
        else:
            customers[invoice_id] = current.get(inv.application_id, {})
    return taxes, customers


async def fix_at_finalization(session: AsyncSession, invoice: Invoice) -> None:
    """Writes the account's details on `invoice` and taxes it with the rates in force now (its lines'
    tax details, its tax lines and totals)."""
    invoice.customer = (await current_customers(session, [invoice.application_id])).get(
        invoice.application_id, {}
    )
    context = await tax_context(session, [invoice.application_id])
    lines = list(
        (
            await session.exec(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice.id)
                .order_by(col(InvoiceLine.position))
            )
        ).all()
    )
    taxes = invoice_taxes(
        [(line.plan_id, line.kind in pr.CHARGED_KINDS, Decimal(line.amount)) for line in lines],
        invoice.currency,
        context.plan_rates,
        context.rates_of_application(invoice.application_id),
    )
    for line, line_taxes in zip(lines, taxes.per_line, strict=True):
        details = {k: v for k, v in line.details.items() if k != "taxes"}
        if line_taxes:
            details["taxes"] = per_line_json(line_taxes)
        if details != line.details:
            line.details = details
            session.add(line)
    await session.exec(delete(InvoiceTax).where(col(InvoiceTax.invoice_id) == invoice.id))
    for row in tax_rows(invoice.id, taxes):
        session.add(InvoiceTax(**dict(zip(TAX_FIELDS, row, strict=True))))
    invoice.subtotal = money_text(taxes.subtotal)
    invoice.tax_total = money_text(taxes.tax_total)
    invoice.total = money_text(taxes.total)
