"""One invoice as the consumer downloads it (CSV): a header row, one row per line with its
customer-readable description, then one summary row each for the subtotal, every tax rate, the total,
what prepaid credit paid and the amount due. Every row names the customer as the invoice is addressed
(the billing account's details as finalized; a draft's as they are now). Amounts are decimal text."""

from __future__ import annotations

import csv
import io

from tollway.billing.v1 import billing_pb2

HEADER = [
    "invoice", "period_start", "period_end", "currency", "position", "kind", "description",
    "subscription_id", "api_id", "plan_id", "quantity", "unit_price", "amount",
    "customer_name", "customer_email", "customer_address", "customer_tax_id",
]  # fmt: skip


def invoice_csv(invoice: billing_pb2.Invoice) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    number = invoice.number or invoice.id
    start = invoice.period_start.ToDatetime().date().isoformat()
    end = invoice.period_end.ToDatetime().date().isoformat()
    who = invoice.customer
    customer = [_cell(who.name), _cell(who.email), _cell(who.address), _cell(who.tax_id)]
    head = [number, start, end, invoice.currency]
    writer.writerow(HEADER)
    for line in invoice.lines:
        writer.writerow(
            [*head, line.position, line.kind, _cell(line.description), line.subscription_id, line.api_id,
             line.plan_id, line.quantity, line.unit_price, line.amount, *customer]
        )  # fmt: skip

    def summary(kind: str, description: str, amount: str, quantity: str = "") -> None:
        writer.writerow([*head, "", kind, _cell(description), "", "", "", quantity, "", amount, *customer])

    summary("SUBTOTAL", "Subtotal", invoice.subtotal or invoice.total)
    for tax in invoice.taxes:
        mode = "included" if tax.inclusive else "added"
        summary("TAX", f"{tax.name} {tax.rate} % {mode}", tax.amount, quantity=tax.taxable)
    summary("TOTAL", "Total", invoice.total)
    summary("PAID_FROM_CREDIT", "Paid from prepaid credit", invoice.paid_from_credit or "0")
    summary("AMOUNT_DUE", "Amount due", invoice.amount_due or invoice.total)
    return out.getvalue()


def _cell(text: str) -> str:
    # A cell starting with =, +, - or @ is a formula to a spreadsheet: quote it as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


__all__ = ["HEADER", "invoice_csv"]
