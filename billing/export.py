"""A period's invoices as text for accounting: CSV (one row per line, header first) or JSON lines (one
object per invoice)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
    "kind",
    "description",
    "quantity",
    "unit_price",
    "amount",
    "invoice_total",
    "usage_completeness",
]


def check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise InvalidArgument(f"unknown export format {fmt!r}; expected csv or jsonl")


def export_text(views: Sequence[InvoiceView], fmt: str) -> str:
    check_format(fmt)
    if fmt == "jsonl":
        return "".join(json.dumps(invoice_json(view), sort_keys=True) + "\n" for view in views)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for view in views:
        inv = view.invoice
        for line in view.lines:
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
                    line.kind,
                    line.description,
                    line.quantity,
                    line.unit_price,
                    line.amount,
                    inv.total,
                    inv.usage_completeness,
                ]
            )
    return out.getvalue()


def iso(value: datetime | None) -> str:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else ""


def invoice_json(view: InvoiceView) -> dict[str, Any]:
    inv = view.invoice
    return {
        "id": inv.id,
        "number": inv.number or "",
        "state": inv.state,
        "application_id": inv.application_id,
        "currency": inv.currency,
        "period_start": iso(inv.period_start),
        "period_end": iso(inv.period_end),
        "total": inv.total,
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
                "kind": line.kind,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": line.amount,
            }
            for line in view.lines
        ],
    }
