"""The invoice store: runs (drafts from the engine, persisted set-based), finalizing with gapless
numbers, voiding, late-usage adjustments, reading.

Every write runs in one transaction that first takes the billing lock (a write to the counter row), so
SQLite's writer lock / PostgreSQL's row lock queue concurrent billing writers and each one's checks see
the writes committed before it."""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from billing import pricing as pr
from billing.completeness import (
    AllowIncomplete,
    CompletenessSource,
    UnknownCompleteness,
    finalize_override,
    read_overrides,
)
from billing.invoice_bulk import BulkWriter, gc_paused, invoice_ids
from billing.invoice_engine import (
    Draft,
    Drafts,
    LineOf,
    Pricers,
    SubscriptionRow,
    Timeline,
    UsageRow,
    adjustment_line,
    price_subscription,
)
from billing.invoice_records import (
    INVOICE_COLUMNS,
    INVOICE_FIELDS,
    INVOICE_STATES,
    LINE_COLUMNS,
    LINE_FIELDS,
    InvoiceRecord,
    InvoiceView,
    LineRecord,
)
from billing.periods import Period, period_starting_in
from billing.usage_queries import aggregate, chunks, require, scope_rows, timelines
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound
from tollway.money import money_text
from tollway.schema import (
    BilledSegment,
    BillingIdempotency,
    BillingSequence,
    Invoice,
    InvoiceLine,
    Plan,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)

INVOICE_SEQUENCE = "invoice"
INVOICE_NUMBER_PREFIX = "INV-"
# Late usage is looked for in finalized periods that ended at most this long before the new period.
ADJUSTMENT_LOOKBACK = timedelta(days=92)
REASON_MAX = 500
REQUEST_ID_MAX = 200
_SEGMENT_FIELDS = [
    "invoice_id", "subscription_id", "api_id", "plan_id", "period_start", "period_end", "share", "pricing",
    "usage", "amount",
]  # fmt: skip


_NO_TIMELINE = Timeline()


def reason_text(value: str, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument("reason is required")
    if len(value) > REASON_MAX:
        raise InvalidArgument(f"reason must be at most {REASON_MAX} characters")
    return value


@functools.lru_cache(maxsize=256)
def _pricing_json(pricing: pr.Pricing) -> dict[str, Any]:
    return pricing.to_json()


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
        self.completeness_source: CompletenessSource = completeness or UnknownCompleteness()

    def now(self) -> datetime:
        return self._clock()

    @asynccontextmanager
    async def _billing_write(self) -> AsyncIterator[AsyncSession]:
        async with self._db.session() as session:
            await self._lock(session)
            yield session

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
        if (period is None) == (month is None):
            raise InvalidArgument("give either a period (start and end) or a billing month")
        application_id, subscription_id = application_id.strip(), subscription_id.strip()
        request_id = request_id.strip()
        if len(request_id) > REQUEST_ID_MAX:
            raise InvalidArgument(f"request_id must be at most {REQUEST_ID_MAX} characters")
        with gc_paused():
            return await self._generate(period, month, application_id, subscription_id, request_id)

    async def _generate(
        self,
        period: Period | None,
        month: tuple[int, int] | None,
        application_id: str,
        subscription_id: str,
        request_id: str,
    ) -> list[InvoiceView]:
        async with self._billing_write() as session:
            if request_id:
                done = await session.get(BillingIdempotency, f"generate:{request_id}")
                if done is not None:
                    return await self._views(session, list(done.result.get("invoice_ids", [])))
            subscriptions = await scope_rows(session, application_id, subscription_id)
            by_period: dict[Period, list[SubscriptionRow]] = defaultdict(list)
            for subscription in subscriptions:
                if period is None:
                    assert month is not None  # `generate` takes exactly one of period and month
                    own = period_starting_in(*month, subscription.billing_anchor_day)
                else:
                    own = period
                by_period[own].append(subscription)
            pricers = Pricers({plan.id: plan for plan in (await session.exec(select(Plan))).all()})
            sub_ids = [s.id for s in subscriptions] if (application_id or subscription_id) else None
            times = await timelines(session, sub_ids)

            drafts: Drafts = {}
            for own_period, members in sorted(by_period.items()):
                member_ids = {s.id for s in members}
                usage: dict[str, list[UsageRow]] = defaultdict(list)
                for row in await aggregate(session, own_period, application_id, subscription_id):
                    if row.subscription_id in member_ids:
                        usage[row.subscription_id].append(row)
                for subscription in members:
                    price_subscription(
                        subscription, own_period, pricers, times.get(subscription.id, _NO_TIMELINE),
                        usage.get(subscription.id, []), drafts,
                    )  # fmt: skip
                await self._adjustments(session, own_period, members, drafts)
            views = await self._store_drafts(session, drafts)
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
        return views

    async def _adjustments(
        self, session: AsyncSession, period: Period, members: list[SubscriptionRow], drafts: Drafts
    ) -> None:
        """Late usage: finalized earlier segments whose usage changed since they were billed."""
        member_by_id = {s.id: s for s in members}
        statement = (
            select(BilledSegment)
            .join(Invoice, col(Invoice.id) == col(BilledSegment.invoice_id))
            .where(
                Invoice.state == "FINALIZED",
                col(BilledSegment.period_end) <= period.start,
                col(BilledSegment.period_end) > period.start - ADJUSTMENT_LOOKBACK,
            )
        )
        segments = [s for s in (await session.exec(statement)).all() if s.subscription_id in member_by_id]
        if not segments:
            return
        # Current usage of those periods: one GROUP BY per distinct earlier period (not per segment).
        current: dict[int, pr.Usage] = {}
        by_period: dict[Period, list[BilledSegment]] = defaultdict(list)
        for segment in segments:
            start, end = as_utc(segment.period_start), as_utc(segment.period_end)
            assert start is not None and end is not None
            by_period[Period(start, end)].append(segment)
        for earlier, group in by_period.items():
            usage = {
                (row.subscription_id, row.plan_id): row.usage for row in await aggregate(session, earlier)
            }
            for segment in group:
                current[segment.id] = usage.get((segment.subscription_id, segment.plan_id), pr.Usage())  # type: ignore[index]
        for segment in sorted(segments, key=lambda s: s.id or 0):
            subscription = member_by_id[segment.subscription_id]
            line = adjustment_line(segment, current[segment.id])  # type: ignore[index]
            if line is None:
                continue
            currency = pr.Pricing.from_json(segment.pricing).currency
            draft = drafts.setdefault(
                (subscription.application_id, currency, period),
                Draft(subscription.application_id, currency, period),
            )
            draft.adjustments.append((segment, line))

    async def _store_drafts(self, session: AsyncSession, drafts: Drafts) -> list[InvoiceView]:
        """Writes the run's drafts set-based: a replaced draft keeps its invoice row (one UPDATE for all
        of them) and loses its lines and segments (one DELETE each); new invoices, and every line and
        segment, are inserted in bulk (COPY on PostgreSQL). Finalized invoices are left as they are."""
        if not drafts:
            return []
        periods = {key[2] for key in drafts}
        existing: dict[tuple[str, str, Period], tuple[str, str, datetime]] = {}  # id, state, created_at
        for own in periods:
            # sqlmodel's `select` is typed for at most four columns; given several it returns this Select.
            statement: Select[*tuple[Any, ...]] = Select(
                col(Invoice.id),
                col(Invoice.application_id),
                col(Invoice.currency),
                col(Invoice.state),
                col(Invoice.created_at),
            ).where(Invoice.state != "VOID", Invoice.period_start == own.start, Invoice.period_end == own.end)
            for row in (await session.exec(statement)).all():
                existing[(row[1], row[2], own)] = (row[0], row[3], row[4])
        now = self.now()
        completeness = {own: await self.completeness_source.completeness(own) for own in periods}
        await self._bulk.delete_contents(
            session, [inv[0] for key, inv in existing.items() if key in drafts and inv[1] == "DRAFT"]
        )
        with_lines = len(drafts) <= 1000  # a whole run's lines are read with list_invoices / export
        invoice_rows: list[tuple[Any, ...]] = []
        invoice_updates: list[tuple[str, str, str, str, datetime]] = []
        written: list[tuple[str, Draft, list[LineOf]]] = []
        emptied: list[str] = []
        views: list[InvoiceView | str] = []  # a finalized invoice's id, to read below
        fresh_ids = invoice_ids(len(drafts))
        for key in sorted(drafts, key=lambda k: (k[2], k[0], k[1])):
            draft = drafts[key]
            old = existing.get(key)
            if old is not None and old[1] == "FINALIZED":
                views.append(old[0])  # immutable: late usage lands on the next period's invoice
                continue
            lines = draft.lines()
            if not lines:
                if old is not None:
                    emptied.append(old[0])  # nothing to bill any more: the stale draft goes
                continue
            # Started at the currency's zero, so an invoice with nothing charged totals "0.00", not "0".
            zero = pr.round_amount(Decimal(0), draft.currency)
            total = sum((line[3].amount for line in lines if line[3].charged), zero)
            state, note = completeness[key[2]]
            invoice_id = old[0] if old is not None else next(fresh_ids)
            invoice = (
                invoice_id, None, "DRAFT", draft.application_id, draft.currency, draft.period.start,
                draft.period.end, money_text(total), state, note, old[2] if old is not None else now, now,
                None, None, "",
            )  # fmt: skip
            if old is None:
                invoice_rows.append(invoice)
            else:
                invoice_updates.append((invoice_id, invoice[7], state, note, now))
            written.append((invoice_id, draft, lines))
            views.append(InvoiceView(InvoiceRecord(*invoice)))

        # Line and segment rows are generated while COPY sends them: Python formats the next rows
        # while PostgreSQL inserts the previous ones.
        def line_rows() -> Iterator[tuple[Any, ...]]:
            for invoice_id, _, lines in written:
                for position, (subscription_id, api_id, plan_id, line) in enumerate(lines):
                    yield (
                        invoice_id, position, subscription_id, api_id, plan_id, line.kind,
                        line.description, money_text(line.quantity), money_text(line.unit_price),
                        money_text(line.amount),
                        line.details.get("segment_id") if line.kind == pr.ADJUSTMENT else None,
                        line.details,
                    )  # fmt: skip

        def segment_rows() -> Iterator[tuple[Any, ...]]:
            for invoice_id, draft, _ in written:
                start, end = draft.period.start, draft.period.end
                for segment in draft.segments:
                    yield (
                        invoice_id, segment.subscription_id, segment.api_id, segment.plan_id, start, end,
                        f"{segment.share.numerator}/{segment.share.denominator}",
                        _pricing_json(segment.pricing), segment.usage.to_json(),
                        money_text(pr.charged_total(segment.lines)),
                    )  # fmt: skip

        line_count = sum(len(lines) for _, _, lines in written)
        segment_count = sum(len(draft.segments) for _, draft, _ in written)
        lines_out: Iterable[tuple[Any, ...]] = line_rows()
        if with_lines:
            lines_out = list(lines_out)
            by_invoice: dict[str, list[LineRecord]] = defaultdict(list)
            for row in lines_out:
                by_invoice[row[0]].append(LineRecord(*row))
            for view in views:
                if isinstance(view, InvoiceView):
                    view.lines = by_invoice[view.invoice.id]
        await self._bulk.delete_invoices(session, emptied)
        await self._bulk.update_invoices(session, invoice_updates)
        await self._bulk.insert(session, Invoice, INVOICE_FIELDS, invoice_rows, len(invoice_rows))
        await self._bulk.insert(session, InvoiceLine, LINE_FIELDS, lines_out, line_count)
        await self._bulk.insert(session, BilledSegment, _SEGMENT_FIELDS, segment_rows(), segment_count)
        finalized = [view for view in views if isinstance(view, str)]
        if not finalized:
            return views  # type: ignore[return-value]
        read = {view.invoice.id: view for view in await self._views(session, finalized, with_lines)}
        return [
            read[view] if isinstance(view, str) else view
            for view in views
            if not isinstance(view, str) or view in read
        ]

    async def _views(
        self, session: AsyncSession, invoice_ids: list[str], with_lines: bool = True
    ) -> list[InvoiceView]:
        invoices: dict[str, InvoiceRecord] = {}
        lines: dict[str, list[LineRecord]] = defaultdict(list)
        for chunk in chunks(invoice_ids):
            statement = select(*INVOICE_COLUMNS).where(col(Invoice.id).in_(chunk))
            for row in (await session.exec(statement)).all():
                invoices[row[0]] = InvoiceRecord(*row)
            if with_lines:
                statement = (
                    select(*LINE_COLUMNS)
                    .where(col(InvoiceLine.invoice_id).in_(chunk))
                    .order_by(col(InvoiceLine.invoice_id), col(InvoiceLine.position))
                )
                for row in (await session.exec(statement)).all():
                    lines[row[0]].append(LineRecord(*row))
        overrides = await read_overrides(session, [i for i, inv in invoices.items() if inv.finalized_at])
        return [InvoiceView(invoices[i], lines[i], overrides.get(i)) for i in invoice_ids if i in invoices]

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
