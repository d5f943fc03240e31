"""A period's invoices and their credit notes as text for accounting: CSV (one row per line, header
first) or JSON lines (one object per invoice, then one per credit note of it). Credit-note rows name
their credit note (`document` credit_note, `credit_note_number`, `credit_note_total`) and the invoice
line they credit (`credits_line`); their amounts are what was credited, positive, like the invoice's.
Every row names the customer (the billing account's details as finalized); tax rows (`document` tax)
give each rate's net base and tax (`credit_note_tax` for a credit note's), and each line its own taxes
and machine-readable details."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from billing.credit_notes import CreditNoteView
from billing.invoice_records import InvoiceView
from tollway.errors import InvalidArgument
from tollway.schema import as_utc

EXPORT_FORMATS = ("csv", "jsonl")

CSV_HEADER = [
    "invoice_number",
    "invoice_id",
    "state",
    "application_id",
    "currency",
    "period_start",
    "period_end",
    "line",
    "subscription_id",
    "plan_id",
    "plan_version",
    "kind",
    "description",
    "quantity",
    "unit_price",
    "amount",
    "invoice_total",
    "usage_completeness",
    "document",
    "credit_note_number",
    "credits_line",
    "credit_note_total",
    # The customer (as finalized; a draft's as it is now) and taxes: each line's tax and the net it was
    # taken from, and one `tax` row per rate (kind TAX, amount = the tax).
    "billing_account_id",
    "customer_name",
    "customer_email",
    "customer_address",
    "customer_tax_id",
    "invoice_subtotal",
    "invoice_tax_total",
    "tax_rate",
    "tax_inclusive",
    "taxable",
    "tax_amount",
    "details",
]


def check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise InvalidArgument(f"unknown export format {fmt!r}; expected csv or jsonl")


def export_text(views: Sequence[InvoiceView], fmt: str, notes: Sequence[CreditNoteView] = ()) -> str:
    check_format(fmt)
    notes_of: dict[str, list[CreditNoteView]] = defaultdict(list)
    for note in notes:
        notes_of[note.note.invoice_id].append(note)
    if fmt == "jsonl":
        return "".join(
            json.dumps(document, sort_keys=True) + "\n"
            for view in views
            for document in [invoice_json(view), *(credit_note_json(n) for n in notes_of[view.invoice.id])]
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for view in views:
        inv = view.invoice
        by_position = {line.position: line for line in view.lines}
        customer = _customer_columns(view)
        for line in view.lines:
            taxes = line.details.get("taxes") or []
            writer.writerow(
                [
                    inv.number or "",
                    inv.id,
                    inv.state,
                    inv.application_id,
                    inv.currency,
                    iso(inv.period_start),
                    iso(inv.period_end),
                    line.position,
                    line.subscription_id,
                    line.plan_id,
                    line.plan_version,
                    line.kind,
                    line.description,
                    line.quantity,
                    line.unit_price,
                    line.amount,
                    inv.total,
                    inv.usage_completeness,
                    "invoice",
                    "",
                    "",
                    "",
                    *customer,
                    ";".join(t["rate"] for t in taxes),
                    ";".join("true" if t["inclusive"] else "false" for t in taxes),
                    ";".join(t["net"] for t in taxes),
                    ";".join(t["tax"] for t in taxes),
                    json.dumps(line.details, sort_keys=True),
                ]
            )
        for tax in view.taxes:
            writer.writerow(
                [
                    inv.number or "", inv.id, inv.state, inv.application_id, inv.currency,
                    iso(inv.period_start), iso(inv.period_end), tax.position, "", "", "", "TAX", tax.name,
                    "", "", tax.amount, inv.total, inv.usage_completeness, "tax", "", "", "", *customer,
                    tax.rate, "true" if tax.inclusive else "false", tax.taxable, tax.amount, "",
                ]
            )  # fmt: skip
        for credit in notes_of[inv.id]:
            for credit_line in credit.lines:
                credited = by_position.get(credit_line.invoice_line)
                writer.writerow(
                    [
                        inv.number or "",
                        inv.id,
                        inv.state,
                        inv.application_id,
                        inv.currency,
                        iso(inv.period_start),
                        iso(inv.period_end),
                        credit_line.position,
                        credit_line.subscription_id,
                        credit_line.plan_id,
                        credit_line.plan_version,
                        credit_line.kind,
                        credit_line.description,
                        credited.quantity if credited else "",
                        credited.unit_price if credited else "",
                        credit_line.amount,
                        inv.total,
                        inv.usage_completeness,
                        "credit_note",
                        credit.note.number,
                        credit_line.invoice_line,
                        credit.note.total,
                        *customer,
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
            for position, credit_tax in enumerate(credit.note.taxes):
                name, rate, taxable, amount = (
                    credit_tax["name"],
                    credit_tax["rate"],
                    credit_tax["taxable"],
                    credit_tax["amount"],
                )
                writer.writerow(
                    [
                        inv.number or "", inv.id, inv.state, inv.application_id, inv.currency,
                        iso(inv.period_start), iso(inv.period_end), position, "", "", "", "TAX", name, "", "",
                        amount, inv.total, inv.usage_completeness, "credit_note_tax", credit.note.number, "",
                        credit.note.total, *customer, rate, "true" if credit_tax["inclusive"] else "false",
                        taxable, amount, "",
                    ]
                )  # fmt: skip
    return out.getvalue()


def _customer_columns(view: InvoiceView) -> list[str]:
    customer = view.customer
    return [
        customer.get("billing_account_id", ""),
        customer.get("name", ""),
        customer.get("email", ""),
        customer.get("address", ""),
        customer.get("tax_id", ""),
        view.invoice.subtotal,
        view.invoice.tax_total,
    ]


def iso(value: datetime | None) -> str:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else ""


def credit_note_json(view: CreditNoteView) -> dict[str, Any]:
    note = view.note
    return {
        "document": "credit_note",
        "id": note.id,
        "number": note.number,
        "invoice_id": note.invoice_id,
        "invoice_number": view.invoice_number,
        "application_id": note.application_id,
        "currency": note.currency,
        "total": note.total,
        "reason": note.reason,
        "subtotal": note.subtotal,
        "tax_total": note.tax_total,
        "taxes": list(note.taxes or []),
        "issued_at": iso(note.created_at),
        "lines": [
            {
                "credits_line": line.invoice_line,
                "subscription_id": line.subscription_id,
                "plan_id": line.plan_id,
                "plan_version": line.plan_version,
                "kind": line.kind,
                "description": line.description,
                "amount": line.amount,
            }
            for line in view.lines
        ],
    }


def invoice_json(view: InvoiceView) -> dict[str, Any]:
    inv = view.invoice
    return {
        "document": "invoice",
        "id": inv.id,
        "number": inv.number or "",
        "state": inv.state,
        "application_id": inv.application_id,
        "currency": inv.currency,
        "period_start": iso(inv.period_start),
        "period_end": iso(inv.period_end),
        "total": inv.total,
        "subtotal": inv.subtotal,
        "tax_total": inv.tax_total,
        "customer": view.customer or None,
        "taxes": [
            {
                "tax_rate_id": tax.tax_rate_id,
                "name": tax.name,
                "rate": tax.rate,
                "inclusive": tax.inclusive,
                "taxable": tax.taxable,
                "amount": tax.amount,
            }
            for tax in view.taxes
        ],
        "usage_completeness": inv.usage_completeness,
        "finalized_at": iso(inv.finalized_at),
        "voided_at": iso(inv.voided_at),
        "void_reason": inv.void_reason,
        "completeness_override": None
        if view.override is None
        else {
            "by": view.override.by,
            "reason": view.override.reason,
            "at": iso(view.override.at),
            "completeness": view.override.completeness,
            "completeness_note": view.override.completeness_note,
        },
        "lines": [
            {
                "subscription_id": line.subscription_id,
                "plan_id": line.plan_id,
                "plan_version": line.plan_version,
                "kind": line.kind,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": line.amount,
                "details": line.details,
            }
            for line in view.lines
        ],
    }
