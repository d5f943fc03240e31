"""One invoice run, between reading its scope and committing: the drafts (usage aggregates, each
subscription's pieces, billing/regimes.py, priced by billing/invoice_engine.py, plus late-usage
adjustments), then writing them set-based (billing/invoice_bulk.py). billing/invoice_store.py holds
the run's transaction, its idempotency key and the lock."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from billing import pricing as pr
from billing.accounts import current_customers, tax_context
from billing.invoice_bulk import BulkWriter, invoice_ids
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
    segment_source,
    subscription_pieces,
)
from billing.invoice_records import (
    INVOICE_FIELDS,
    LINE_FIELDS,
    TAX_FIELDS,
    InvoiceRecord,
    InvoiceView,
    LineRecord,
    TaxRecord,
)
from billing.periods import Period, period_starting_in
from billing.plan_versions import stored_versions
from billing.tax import InvoiceTaxes, invoice_taxes, per_line_json, tax_rows
from billing.usage_queries import aggregate, scope_rows, timelines, usage_before
from tollway.money import money_text
from tollway.schema import Plan, as_utc
from tollway.schema_billing import BilledSegment, Invoice, InvoiceLine, InvoiceTax

# Late usage is looked for in finalized periods that ended at most this long before the new period.
ADJUSTMENT_LOOKBACK = timedelta(days=92)
_SEGMENT_FIELDS = [
    "invoice_id", "subscription_id", "api_id", "plan_id", "period_start", "period_end", "share",
    "plan_version", "usage_start", "usage_end", "trial_until", "pricing", "usage", "amount",
]  # fmt: skip
_NO_TIMELINE = Timeline()

# Reads invoices (with their lines, unless told not to) in the run's session.
ViewReader = Callable[[AsyncSession, list[str], bool], Awaitable[list[InvoiceView]]]


# (COMPLETE | INCOMPLETE | UNKNOWN, note) for the usage of a period.
Completeness = Callable[[Period], Awaitable[tuple[str, str]]]


@functools.lru_cache(maxsize=256)
def _pricing_json(pricing: pr.Pricing) -> dict[str, Any]:
    return pricing.to_json()


class InvoiceRun:
    def __init__(self, bulk: BulkWriter, clock: Callable[[], datetime]) -> None:
        self._bulk = bulk
        self._clock = clock

    async def drafts(
        self,
        session: AsyncSession,
        period: Period | None,
        month: tuple[int, int] | None,
        application_id: str,
        subscription_id: str,
    ) -> Drafts:
        """The drafts of a run: every subscription in scope over its period (an explicit `period`, or
        its own period starting in `month`), and the late usage of earlier finalized periods."""
        subscriptions = await scope_rows(session, application_id, subscription_id)
        by_period: dict[Period, list[SubscriptionRow]] = defaultdict(list)
        for subscription in subscriptions:
            if period is None:
                assert month is not None  # `generate` takes exactly one of period and month
                own = period_starting_in(*month, subscription.billing_anchor_day)
            else:
                own = period
            by_period[own].append(subscription)
        plans = {plan.id: plan for plan in (await session.exec(select(Plan))).all()}
        pricers = Pricers(plans, await stored_versions(session))
        sub_ids = [s.id for s in subscriptions] if (application_id or subscription_id) else None
        times = await timelines(session, sub_ids)

        drafts: Drafts = {}
        for own_period, members in sorted(by_period.items()):
            member_ids = {s.id for s in members}
            usage: dict[str, list[UsageRow]] = defaultdict(list)
            for row in await aggregate(session, own_period, application_id, subscription_id):
                if row.subscription_id in member_ids:
                    usage[row.subscription_id].append(row)
            pieces = {
                s.id: subscription_pieces(
                    s, own_period, pricers, times.get(s.id, _NO_TIMELINE), usage.get(s.id, [])
                )
                for s in members
            }
            # Where terms change inside the period, the usage before each change (one aggregate per
            # distinct instant, over the subscriptions it cuts); nothing when no plan changes terms.
            cuts: dict[datetime, set[str]] = defaultdict(set)
            for sub_id, subscription_pieces_ in pieces.items():
                for piece in subscription_pieces_:
                    for instant in (piece.usage_start, piece.usage_end):
                        if own_period.start < instant < own_period.end:
                            cuts[instant].add(sub_id)
            before = await usage_before(session, own_period.start, cuts) if cuts else {}
            for subscription in members:
                prefixes = before.get(subscription.id, {})
                mine = usage.get(subscription.id, [])
                price_subscription(
                    subscription, own_period, pricers, pieces[subscription.id], mine, prefixes, drafts
                )
            await self._adjustments(session, own_period, members, drafts)
        return drafts

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
        # Current usage of what those segments priced: one GROUP BY per distinct earlier stretch (a
        # period, or part of one where a version or a trial cut it), not per segment.
        current: dict[int, pr.Usage] = {}
        by_period: dict[Period, list[BilledSegment]] = defaultdict(list)
        for segment in segments:
            start = as_utc(segment.usage_start or segment.period_start)
            end = as_utc(segment.usage_end or segment.period_end)
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
            currency = pr.Pricing.from_json(segment.pricing, segment_source(segment)).currency
            draft = drafts.setdefault(
                (subscription.application_id, currency, period),
                Draft(subscription.application_id, currency, period),
            )
            draft.adjustments.append((segment, line))

    async def store(
        self,
        session: AsyncSession,
        drafts: Drafts,
        read_views: ViewReader,
        completeness_of: Completeness,
    ) -> list[InvoiceView]:
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
        now = self._clock()
        completeness = {own: await completeness_of(own) for own in periods}
        taxing = await tax_context(session, {key[0] for key in drafts})
        await self._bulk.delete_contents(
            session, [inv[0] for key, inv in existing.items() if key in drafts and inv[1] == "DRAFT"]
        )
        with_lines = len(drafts) <= 1000  # a whole run's lines are read with list_invoices / export
        invoice_rows: list[tuple[Any, ...]] = []
        invoice_updates: list[tuple[str, str, str, str, str, str, datetime]] = []
        written: list[tuple[str, Draft, list[LineOf], InvoiceTaxes | None]] = []
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
            taxes = None
            if taxing.empty:
                total = pr.exact_sum((line[4].amount for line in lines if line[4].charged), zero)
                subtotal, tax_total = total, zero
            else:
                taxes = invoice_taxes(
                    [(line[2], line[4].charged, line[4].amount) for line in lines], draft.currency,
                    taxing.plan_rates, taxing.rates_of_application(draft.application_id),
                )  # fmt: skip
                subtotal, tax_total, total = taxes.subtotal, taxes.tax_total, taxes.total
            state, note = completeness[key[2]]
            invoice_id = old[0] if old is not None else next(fresh_ids)
            invoice: tuple[Any, ...] = (
                invoice_id, None, "DRAFT", draft.application_id, draft.currency, draft.period.start,
                draft.period.end, money_text(total), state, note, old[2] if old is not None else now, now,
                None, None, "", money_text(subtotal), money_text(tax_total), {}, None, None,
            )  # fmt: skip
            if old is None:
                invoice_rows.append(invoice)
            else:
                invoice_updates.append((invoice_id, invoice[7], invoice[15], invoice[16], state, note, now))
            written.append((invoice_id, draft, lines, taxes))
            views.append(InvoiceView(InvoiceRecord(*invoice)))

        # Line and segment rows are generated while COPY sends them: Python formats the next rows
        # while PostgreSQL inserts the previous ones.
        def line_rows() -> Iterator[tuple[Any, ...]]:
            for invoice_id, _, lines, taxes in written:
                for position, (subscription_id, api_id, plan_id, version, line) in enumerate(lines):
                    details = line.details
                    if taxes is not None and taxes.per_line[position]:
                        details = {**details, "taxes": per_line_json(taxes.per_line[position])}
                    yield (
                        invoice_id, position, subscription_id, api_id, plan_id, version, line.kind,
                        line.description, money_text(line.quantity), money_text(line.unit_price),
                        money_text(line.amount),
                        line.details.get("segment_id") if line.kind == pr.ADJUSTMENT else None,
                        details,
                    )  # fmt: skip

        def segment_rows() -> Iterator[tuple[Any, ...]]:
            for invoice_id, draft, _, _ in written:
                start, end = draft.period.start, draft.period.end
                for segment in draft.segments:
                    yield (
                        invoice_id, segment.subscription_id, segment.api_id, segment.plan_id, start, end,
                        f"{segment.share.numerator}/{segment.share.denominator}", segment.version,
                        segment.usage_start, segment.usage_end, segment.trial_until,
                        _pricing_json(segment.pricing), segment.usage.to_json(),
                        money_text(pr.charged_total(segment.lines)),
                    )  # fmt: skip

        line_count = sum(len(lines) for _, _, lines, _ in written)
        segment_count = sum(len(draft.segments) for _, draft, _, _ in written)
        taxes_out = [row for invoice_id, _, _, taxes in written for row in tax_rows(invoice_id, taxes)]
        customers = await current_customers(session, {draft.application_id for _, draft, _, _ in written})
        taxes_of: dict[str, list[TaxRecord]] = defaultdict(list)
        for row in taxes_out:
            taxes_of[row[0]].append(TaxRecord(*row[1:]))
        for view in views:
            if isinstance(view, InvoiceView):
                view.taxes = taxes_of[view.invoice.id]
                view.customer = customers.get(view.invoice.application_id, {})
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
        await self._bulk.insert(session, InvoiceTax, TAX_FIELDS, taxes_out, len(taxes_out))
        finalized = [view for view in views if isinstance(view, str)]
        if not finalized:
            return views  # type: ignore[return-value]
        read = {view.invoice.id: view for view in await read_views(session, finalized, with_lines)}
        return [
            read[view] if isinstance(view, str) else view
            for view in views
            if not isinstance(view, str) or view in read
        ]
