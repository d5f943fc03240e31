"""The `data` of billing's events (tollway/events.py), one builder per event type: what a receiver
needs to act without calling back (ids, numbers, money as exact decimal text, UTC instants)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tollway.schema import as_utc
from tollway.schema_billing import CreditNote, Invoice


def instant(value: datetime | None) -> str:
    """RFC 3339 in UTC ("2026-12-01T00:00:00Z"); "" for none."""
    if value is None:
        return ""
    return (as_utc(value) or value).isoformat().replace("+00:00", "Z")


def finalized_event(invoice: Invoice) -> dict[str, Any]:
    return {
        "invoice_id": invoice.id,
        "number": invoice.number or "",
        "application_id": invoice.application_id,
        "currency": invoice.currency,
        "total": invoice.total,
        "period_start": instant(invoice.period_start),
        "period_end": instant(invoice.period_end),
        "finalized_at": instant(invoice.finalized_at),
        "usage_completeness": invoice.usage_completeness,
    }


def credit_note_event(note: CreditNote, invoice_number: str) -> dict[str, Any]:
    return {
        "credit_note_id": note.id,
        "number": note.number,
        "invoice_id": note.invoice_id,
        "invoice_number": invoice_number,
        "application_id": note.application_id,
        "currency": note.currency,
        "total": note.total,
        "reason": note.reason,
        "issued_at": instant(note.created_at),
    }
