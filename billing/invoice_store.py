"""The invoice store: runs (drafts from the engine, persisted set-based), finalizing with gapless
numbers, voiding, late-usage adjustments, reading.

Every write runs in one transaction that first takes the billing lock (a write to the counter row), so
SQLite's writer lock / PostgreSQL's row lock queue concurrent billing writers and each one's checks see
the writes committed before it."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import pricing as pr
from billing.completeness import (
    AllowIncomplete,
    CompletenessSource,
    UnknownCompleteness,
    finalize_override,
    read_overrides,
)
from billing.credit_store import fix_paid_from_credit
from billing.event_payloads import finalized_event
from billing.invoice_bulk import BulkWriter, gc_paused
from billing.invoice_customer import fix_at_finalization, taxes_and_customers, with_subtotal
from billing.invoice_records import (
    INVOICE_COLUMNS,
    INVOICE_STATES,
    LINE_COLUMNS,
    InvoiceRecord,
    InvoiceView,
    LineRecord,
)
from billing.invoice_run import InvoiceRun
from billing.metrics import BillingMetrics
from billing.periods import Period
from billing.usage_queries import chunks, require
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound
from tollway.events import EventType, emit_event
from tollway.schema import as_utc, utcnow
from tollway.schema_billing import (
    BilledSegment,
    BillingIdempotency,
    BillingSequence,
    CreditNote,
    Invoice,
    InvoiceLine,
)

log = logging.getLogger(__name__)

INVOICE_SEQUENCE = "invoice"
INVOICE_NUMBER_PREFIX = "INV-"
REASON_MAX = 500
REQUEST_ID_MAX = 200


def reason_text(value: str, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument("reason is required")
    if len(value) > REASON_MAX:
        raise InvalidArgument(f"reason must be at most {REASON_MAX} characters")
    return value


class InvoiceStore:
    def __init__(
        self,
        db: Database,
        on_commit: Callable[[], None],
        clock: Callable[[], datetime] = utcnow,
        completeness: CompletenessSource | None = None,
    ) -> None:
        self._db = db
        self._on_commit = on_commit
        self._clock = clock
        self._bulk = BulkWriter(db)
        self._run = InvoiceRun(self._bulk, clock)
        self.completeness_source: CompletenessSource = completeness or UnknownCompleteness()
        self.metrics = BillingMetrics()

    def now(self) -> datetime:
        return self._clock()

    @asynccontextmanager
    async def _billing_write(self) -> AsyncIterator[AsyncSession]:
        async with self._db.session() as session:
            await self._lock(session)
            yield session

    def billing_write(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A transaction holding the billing lock (credit notes take it too)."""
        return self._billing_write()

    async def _lock(self, session: AsyncSession) -> None:
        statement = (
            update(BillingSequence)
            .where(col(BillingSequence.name) == INVOICE_SEQUENCE)
            .values(value=BillingSequence.value)
        )
        result = await session.exec(statement)
        if result.rowcount == 0:
            dialect_insert = pg_insert if self._db.is_postgres else sqlite_insert
            await session.exec(
                dialect_insert(BillingSequence)
                .values(name=INVOICE_SEQUENCE, value=0)
                .on_conflict_do_nothing()
            )
            await session.exec(statement)

    async def _commit(self, session: AsyncSession) -> None:
        await session.commit()
        self._on_commit()

    # --- invoice runs -------------------------------------------------------------------------------

    async def generate(
        self,
        period: Period | None = None,
        month: tuple[int, int] | None = None,
        application_id: str = "",
        subscription_id: str = "",
        request_id: str = "",
    ) -> list[InvoiceView]:
        """Draft invoices for a period: an explicit `period` for every subscription, or each
        subscription's own period starting in `month` (anchor days respected). Regenerating replaces
        drafts; finalized invoices are left alone (late usage goes on the next invoice as adjustments)."""
        started = time.perf_counter()
        result = "failed"
        try:
            if (period is None) == (month is None):
                raise InvalidArgument("give either a period (start and end) or a billing month")
            application_id, subscription_id = application_id.strip(), subscription_id.strip()
            request_id = request_id.strip()
            if len(request_id) > REQUEST_ID_MAX:
                raise InvalidArgument(f"request_id must be at most {REQUEST_ID_MAX} characters")
            with gc_paused():
                views, replayed = await self._generate(
                    period, month, application_id, subscription_id, request_id
                )
            result = "replayed" if replayed else "ok"
            if not replayed:
                self.metrics.invoices.inc(len(views))
            return views
        except InvalidArgument:
            result = "refused"
            raise
        finally:
            self.metrics.runs.labels(result).inc()
            self.metrics.run_seconds.observe(time.perf_counter() - started)

    async def _generate(
        self,
        period: Period | None,
        month: tuple[int, int] | None,
        application_id: str,
        subscription_id: str,
        request_id: str,
    ) -> tuple[list[InvoiceView], bool]:
        """The run's invoices, and whether they are an earlier run's (an idempotent repeat)."""
        async with self._billing_write() as session:
            if request_id:
                done = await session.get(BillingIdempotency, f"generate:{request_id}")
                if done is not None:
                    return await self._views(session, list(done.result.get("invoice_ids", []))), True
            drafts = await self._run.drafts(session, period, month, application_id, subscription_id)
            completeness = self.completeness_source.completeness
            views = await self._run.store(session, drafts, self._views, completeness)
            if request_id:
                session.add(
                    BillingIdempotency(
                        key=f"generate:{request_id}",
                        operation="generate",
                        result={"invoice_ids": [view.invoice.id for view in views]},
                    )
                )
            await self._commit(session)
        log.info("invoice run: %d invoices in scope", len(views))
        return views, False

    async def _views(
        self, session: AsyncSession, invoice_ids: list[str], with_lines: bool = True
    ) -> list[InvoiceView]:
        invoices: dict[str, InvoiceRecord] = {}
        lines: dict[str, list[LineRecord]] = defaultdict(list)
        for chunk in chunks(invoice_ids):
            statement = select(*INVOICE_COLUMNS).where(col(Invoice.id).in_(chunk))
            for row in (await session.exec(statement)).all():
                invoices[row[0]] = with_subtotal(InvoiceRecord(*row))
            if with_lines:
                statement = (
                    select(*LINE_COLUMNS)
                    .where(col(InvoiceLine.invoice_id).in_(chunk))
                    .order_by(col(InvoiceLine.invoice_id), col(InvoiceLine.position))
                )
                for row in (await session.exec(statement)).all():
                    lines[row[0]].append(LineRecord(*row))
        overrides = await read_overrides(session, [i for i, inv in invoices.items() if inv.finalized_at])
        taxes, customers = await taxes_and_customers(session, invoices)
        return [
            InvoiceView(invoices[i], lines[i], overrides.get(i), taxes.get(i, []), customers.get(i, {}))
            for i in invoice_ids
            if i in invoices
        ]

    # --- reading, finalizing, voiding ----------------------------------------------------------------

    async def get_invoice(self, invoice_id: str) -> InvoiceView:
        invoice_id = require(invoice_id, "invoice_id")
        async with self._db.session() as session:
            views = await self._views(session, [await self._invoice_id(session, invoice_id)])
            return views[0]

    async def _invoice_id(self, session: AsyncSession, ref: str) -> str:
        """An invoice by id or by number."""
        statement = select(Invoice.id).where((col(Invoice.id) == ref) | (col(Invoice.number) == ref))
        found = (await session.exec(statement)).first()
        if found is None:
            raise NotFound(f"invoice {ref!r} not found")
        return found

    async def list_invoices(
        self,
        state: str = "",
        application_id: str = "",
        period: Period | None = None,
        with_lines: bool = False,
    ) -> list[InvoiceView]:
        """Invoices matching every filter; `period` selects invoices whose period starts within it."""
        if state and state not in INVOICE_STATES:
            raise InvalidArgument(
                f"unknown invoice state {state!r}; expected one of {', '.join(INVOICE_STATES)}"
            )
        statement = select(Invoice.id)
        if state:
            statement = statement.where(Invoice.state == state)
        if application_id:
            statement = statement.where(Invoice.application_id == application_id.strip())
        if period is not None:
            statement = statement.where(
                col(Invoice.period_start) >= period.start, col(Invoice.period_start) < period.end
            )
        statement = statement.order_by(col(Invoice.period_start), col(Invoice.number), col(Invoice.id))
        async with self._db.session() as session:
            ids = list((await session.exec(statement)).all())
            return await self._views(session, ids, with_lines=with_lines)

    async def finalize(self, invoice_id: str, allow_incomplete: AllowIncomplete | None = None) -> InvoiceView:
        """DRAFT → FINALIZED with the next number (gapless: the counter moves in this transaction).
        The period's usage completeness is asked again first (before the billing lock: it is an RPC)
        and written on the invoice; INCOMPLETE usage needs `allow_incomplete`, which is recorded with
        it. Finalizing a finalized invoice returns it unchanged."""
        invoice_id = require(invoice_id, "invoice_id")
        allow = allow_incomplete.validated() if allow_incomplete is not None else None
        async with self._db.session() as session:
            invoice_id = await self._invoice_id(session, invoice_id)
            found = await session.get(Invoice, invoice_id)
            assert found is not None
            period = Period(
                as_utc(found.period_start) or found.period_start, as_utc(found.period_end) or found.period_end
            )
            draft = found.state == "DRAFT"
        verdict = await self.completeness_source.verdict(period) if draft else None
        async with self._billing_write() as session:
            invoice = await session.get(Invoice, invoice_id)
            assert invoice is not None
            if invoice.state == "FINALIZED":
                return (await self._views(session, [invoice_id]))[0]
            if invoice.state == "VOID" or verdict is None:
                raise FailedPrecondition(f"invoice {invoice_id!r} is VOID and cannot be finalized")
            now = self.now()
            override = finalize_override(invoice_id, verdict, allow, now)
            await self._apply_adjustments(session, invoice_id, forward=True)
            await fix_at_finalization(session, invoice)
            await fix_paid_from_credit(session, invoice)
            sequence = await session.get(BillingSequence, INVOICE_SEQUENCE)
            assert sequence is not None  # created by the lock
            sequence.value += 1
            session.add(sequence)
            invoice.state = "FINALIZED"
            invoice.usage_completeness, invoice.completeness_note = verdict.state, verdict.note
            invoice.number = f"{INVOICE_NUMBER_PREFIX}{sequence.value:06d}"
            invoice.finalized_at = now
            invoice.updated_at = now
            session.add(invoice)
            if override is not None:
                session.add(override)
                log.warning(
                    "invoice %s finalized with incomplete usage (%.2f%%), allowed by %s",
                    invoice_id, 100 * verdict.completeness, override.decided_by,
                )  # fmt: skip
            await session.flush()
            view = (await self._views(session, [invoice_id]))[0]
            await emit_event(session, EventType.INVOICE_FINALIZED, finalized_event(invoice), at=now)
            await self._commit(session)
        log.info("invoice %s finalized as %s", invoice_id, view.invoice.number)
        return view

    async def _apply_adjustments(self, session: AsyncSession, invoice_id: str, forward: bool) -> None:
        """Moves the corrected segments' billed usage to what the adjustment lines charged (or back)."""
        statement = select(InvoiceLine).where(
            InvoiceLine.invoice_id == invoice_id, InvoiceLine.kind == pr.ADJUSTMENT
        )
        for line in (await session.exec(statement)).all():
            segment = await session.get(BilledSegment, line.adjusts_segment_id)
            if segment is None:
                continue
            before, after = ("from", "to") if forward else ("to", "from")
            if segment.usage != line.details[f"{before}_usage"]:
                raise FailedPrecondition(
                    f"invoice {invoice_id!r} carries an adjustment that another invoice already billed;"
                    " regenerate the draft"
                )
            segment.usage = dict(line.details[f"{after}_usage"])
            segment.amount = line.details[f"{after}_amount"]
            session.add(segment)

    async def void(self, invoice_id: str, reason: str) -> InvoiceView:
        """DRAFT or FINALIZED → VOID. The record, its number and its lines stay; its usage counts as
        unbilled again, so the period can be invoiced anew."""
        invoice_id = require(invoice_id, "invoice_id")
        reason = reason_text(reason, True)
        async with self._billing_write() as session:
            invoice_id = await self._invoice_id(session, invoice_id)
            invoice = await session.get(Invoice, invoice_id)
            assert invoice is not None
            if invoice.state == "VOID":
                return (await self._views(session, [invoice_id]))[0]
            if invoice.state == "FINALIZED":
                credited = select(CreditNote.number).where(CreditNote.invoice_id == invoice_id).limit(1)
                note = (await session.exec(credited)).first()
                if note is not None:
                    raise FailedPrecondition(
                        f"invoice {invoice.number} was corrected by credit note {note}: a corrected invoice "
                        "is not voided (credit what is left instead)"
                    )
                await self._apply_adjustments(session, invoice_id, forward=False)
            now = self.now()
            invoice.state = "VOID"
            invoice.void_reason = reason
            invoice.voided_at = now
            invoice.updated_at = now
            session.add(invoice)
            await session.flush()
            view = (await self._views(session, [invoice_id]))[0]
            await self._commit(session)
        log.info("invoice %s voided", invoice_id)
        return view
