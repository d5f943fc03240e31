"""Credit notes: a finalized invoice is corrected by a credit note, not rewritten.

A credit note credits all or part of the charged lines of one FINALIZED invoice, and says why. It is
numbered in its own gapless sequence ("CN-000001"; the counter moves in the issuing transaction, as
invoice numbers do) and never changes once issued: there is no call that edits or deletes one, and
an invoice with credit notes can no longer be voided (that would correct it twice). A line can be
credited in several notes, never beyond its amount; amounts are in the invoice's currency, at most
its minor unit. Issuing takes the billing lock (billing/invoice_store.py), so concurrent notes on one
invoice see each other's credits.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import pricing as pr
from billing.invoice_store import reason_text
from billing.tax import rates_from_details, tax_lines_json, taxes_of
from billing.usage_queries import chunks, require
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound
from tollway.money import minor_units, money_text, parse_money
from tollway.schema import new_id
from tollway.schema_billing import (
    BillingIdempotency,
    BillingSequence,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
)

log = logging.getLogger(__name__)

CREDIT_NOTE_SEQUENCE = "credit_note"
CREDIT_NOTE_NUMBER_PREFIX = "CN-"
# A request names at most this many lines (an invoice has one per charge of each subscription).
MAX_CREDIT_LINES = 10_000
REQUEST_ID_MAX = 200


@dataclass(frozen=True, slots=True)
class CreditRequest:
    """One line to credit: its position on the invoice, and how much (None: all that is left)."""

    invoice_line: int
    amount: str = ""


@dataclass
class CreditNoteView:
    note: CreditNote
    lines: list[CreditNoteLine] = field(default_factory=list)
    invoice_number: str = ""


def credited_amounts(
    lines: Sequence[InvoiceLine],
    credited: dict[int, Decimal],
    requests: Sequence[CreditRequest],
    currency: str,
) -> list[tuple[InvoiceLine, Decimal]]:
    """What each credited line gets (pure): every charged line's remainder when `requests` is empty,
    else exactly what was asked, each checked against what is left on its line."""
    charged = {line.position: line for line in lines if line.kind in pr.CHARGED_KINDS}

    def left(line: InvoiceLine) -> Decimal:
        return Decimal(line.amount) - credited.get(line.position, Decimal(0))

    if not requests:
        found = [(line, left(line)) for line in sorted(charged.values(), key=lambda x: x.position)]
        found = [(line, amount) for line, amount in found if amount > 0]
        if not found:
            raise FailedPrecondition("nothing is left to credit on this invoice")
        return found
    if len(requests) > MAX_CREDIT_LINES:
        raise InvalidArgument(f"a credit note credits at most {MAX_CREDIT_LINES} lines")
    digits = minor_units(currency)
    seen: set[int] = set()
    found = []
    for i, request in enumerate(requests):
        where = f"lines[{i}]"
        if request.invoice_line in seen:
            raise InvalidArgument(f"{where}: invoice line {request.invoice_line} is named twice")
        seen.add(request.invoice_line)
        line = charged.get(request.invoice_line)
        if line is None:
            raise InvalidArgument(f"{where}: the invoice has no charged line {request.invoice_line}")
        remaining = left(line)
        amount = remaining if request.amount == "" else parse_money(request.amount, f"{where}.amount")
        if amount != amount.quantize(Decimal(1).scaleb(-digits)):
            raise InvalidArgument(f"{where}.amount {request.amount} has more decimals than {currency} allows")
        if amount <= 0:
            raise InvalidArgument(f"{where}.amount must be more than zero (line {line.position})")
        if amount > remaining:
            raise InvalidArgument(
                f"{where}.amount {money_text(amount)} {currency} exceeds what is left to credit on line "
                f"{line.position} ({money_text(remaining)})"
            )
        found.append((line, pr.round_amount(amount, currency)))
    return found


class CreditNoteStore:
    def __init__(
        self,
        db: Database,
        billing_write: Callable[[], AbstractAsyncContextManager[AsyncSession]],
        on_commit: Callable[[], None],
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._billing_write = billing_write
        self._on_commit = on_commit
        self._clock = clock

    async def issue(
        self, invoice_ref: str, reason: str, requests: Sequence[CreditRequest], request_id: str = ""
    ) -> CreditNoteView:
        """Credits `requests` (or everything left) of a FINALIZED invoice, with the next number."""
        invoice_ref = require(invoice_ref, "invoice_id")
        reason = reason_text(reason, True)
        request_id = request_id.strip()
        if len(request_id) > REQUEST_ID_MAX:
            raise InvalidArgument(f"request_id must be at most {REQUEST_ID_MAX} characters")
        async with self._billing_write() as session:
            if request_id:
                done = await session.get(BillingIdempotency, f"credit:{request_id}")
                if done is not None:
                    return (await self._views(session, [str(done.result["credit_note_id"])]))[0]
            invoice = await _invoice(session, invoice_ref)
            if invoice.state != "FINALIZED":
                raise FailedPrecondition(
                    f"invoice {invoice.number or invoice.id} is {invoice.state}: only a finalized invoice is "
                    "corrected by a credit note"
                )
            statement = select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)
            lines = list((await session.exec(statement)).all())
            credited = await self._credited(session, invoice.id)
            amounts = credited_amounts(lines, credited, requests, invoice.currency)
            number = await self._next_number(session)
            # Taxed with the rates its invoice lines carried, whatever they are now (billing/tax.py).
            taxes = taxes_of(
                [(rates_from_details(line.details), True, amount) for line, amount in amounts],
                invoice.currency,
            )
            note = CreditNote(
                id=new_id("cn"),
                number=f"{CREDIT_NOTE_NUMBER_PREFIX}{number:06d}",
                invoice_id=invoice.id,
                application_id=invoice.application_id,
                currency=invoice.currency,
                total=money_text(taxes.total),
                reason=reason,
                created_at=self._clock(),
                subtotal=money_text(taxes.subtotal),
                tax_total=money_text(taxes.tax_total),
                taxes=tax_lines_json(taxes),
            )
            session.add(note)
            await session.flush()  # the lines reference it
            for position, (line, amount) in enumerate(amounts):
                credit = CreditNoteLine(
                    credit_note_id=note.id, position=position, invoice_line=line.position,
                    subscription_id=line.subscription_id, plan_id=line.plan_id,
                    plan_version=line.plan_version, kind=line.kind, description=f"credit: {line.description}",
                    amount=money_text(amount),
                )  # fmt: skip
                session.add(credit)
            if request_id:
                session.add(
                    BillingIdempotency(
                        key=f"credit:{request_id}", operation="credit", result={"credit_note_id": note.id}
                    )
                )
            await session.flush()
            view = (await self._views(session, [note.id]))[0]
            await session.commit()
        self._on_commit()
        log.info("credit note %s issued for invoice %s", view.note.number, view.invoice_number)
        return view

    async def _credited(self, session: AsyncSession, invoice_id: str) -> dict[int, Decimal]:
        statement = (
            select(CreditNoteLine.invoice_line, CreditNoteLine.amount)
            .join(CreditNote, col(CreditNote.id) == col(CreditNoteLine.credit_note_id))
            .where(CreditNote.invoice_id == invoice_id)
        )
        credited: dict[int, Decimal] = defaultdict(Decimal)
        for position, amount in (await session.exec(statement)).all():
            credited[position] += Decimal(amount)
        return credited

    async def _next_number(self, session: AsyncSession) -> int:
        """The next credit-note number; gapless, as the counter moves in the issuing transaction."""
        bump = (
            update(BillingSequence)
            .where(col(BillingSequence.name) == CREDIT_NOTE_SEQUENCE)
            .values(value=BillingSequence.value + 1)
        )
        if (await session.exec(bump)).rowcount == 0:
            dialect_insert = pg_insert if self._db.is_postgres else sqlite_insert
            create = dialect_insert(BillingSequence).values(name=CREDIT_NOTE_SEQUENCE, value=0)
            await session.exec(create.on_conflict_do_nothing())
            await session.exec(bump)
        current = select(BillingSequence.value).where(BillingSequence.name == CREDIT_NOTE_SEQUENCE)
        return int((await session.exec(current)).one())

    async def get(self, ref: str) -> CreditNoteView:
        ref = require(ref, "id")
        async with self._db.session() as session:
            by_ref = (col(CreditNote.id) == ref) | (col(CreditNote.number) == ref)
            found = (await session.exec(select(CreditNote.id).where(by_ref))).first()
            if found is None:
                raise NotFound(f"credit note {ref!r} not found")
            return (await self._views(session, [found]))[0]

    async def list_notes(
        self, invoice_ref: str = "", invoice_ids: Sequence[str] | None = None
    ) -> list[CreditNoteView]:
        """Credit notes of one invoice (by id or number), of the given invoices, or all; by number."""
        async with self._db.session() as session:
            statement = select(CreditNote.id)
            if invoice_ref.strip():
                invoice = await _invoice(session, invoice_ref.strip())
                statement = statement.where(CreditNote.invoice_id == invoice.id)
            ids: list[str] = []
            if invoice_ids is None:
                ids = list((await session.exec(statement)).all())
            else:
                for chunk in chunks(list(invoice_ids)):
                    ids += (await session.exec(statement.where(col(CreditNote.invoice_id).in_(chunk)))).all()
            views = await self._views(session, ids)
            return sorted(views, key=lambda view: view.note.number)

    async def _views(self, session: AsyncSession, ids: list[str]) -> list[CreditNoteView]:
        views: dict[str, CreditNoteView] = {}
        for chunk in chunks(ids):
            for note in (await session.exec(select(CreditNote).where(col(CreditNote.id).in_(chunk)))).all():
                views[note.id] = CreditNoteView(note)
            of_notes = (
                select(CreditNoteLine)
                .where(col(CreditNoteLine.credit_note_id).in_(chunk))
                .order_by(col(CreditNoteLine.credit_note_id), col(CreditNoteLine.position))
            )
            for line in (await session.exec(of_notes)).all():
                views[line.credit_note_id].lines.append(line)
        invoice_ids = sorted({v.note.invoice_id for v in views.values()})
        numbers: dict[str, str] = {}
        for chunk in chunks(invoice_ids):
            of_invoices = select(Invoice.id, Invoice.number).where(col(Invoice.id).in_(chunk))
            for invoice_id, number in (await session.exec(of_invoices)).all():
                numbers[invoice_id] = number or ""
        for view in views.values():
            view.invoice_number = numbers.get(view.note.invoice_id, "")
        return [views[i] for i in ids if i in views]


async def _invoice(session: AsyncSession, ref: str) -> Invoice:
    statement = select(Invoice).where((col(Invoice.id) == ref) | (col(Invoice.number) == ref))
    invoice = (await session.exec(statement)).first()
    if invoice is None:
        raise NotFound(f"invoice {ref!r} not found")
    return invoice
