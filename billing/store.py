"""Billing's repository: subscription workflow, invoice runs, finalizing, voiding, usage queries.

Every write runs in one transaction that first takes the billing lock (a write to the counter row), so
SQLite's writer lock / PostgreSQL's row lock queue concurrent billing writers and each one's checks see
the writes committed before it. Usage is read with SQL aggregates (GROUP BY), never row by row."""

from __future__ import annotations

import csv
import functools
import gc
import io
import json
import logging
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from sqlalchemy import JSON, String, bindparam, delete, func, insert, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import pricing as pr
from billing.periods import Period, period_starting_in
from billing.segments import PlanChange, plan_shares
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound
from tollway.money import money_text
from tollway.schema import (
    LIVE_SUBSCRIPTION_STATES,
    Api,
    ApiPlan,
    Application,
    BilledSegment,
    BillingIdempotency,
    BillingSequence,
    Invoice,
    InvoiceLine,
    Plan,
    Subscription,
    SubscriptionEvent,
    UsageWindow,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)

BILLING_GRANULARITY = "minute"
INVOICE_SEQUENCE = "invoice"
INVOICE_NUMBER_PREFIX = "INV-"
# Late usage is looked for in finalized periods that ended at most this long before the new period.
ADJUSTMENT_LOOKBACK = timedelta(days=92)
REASON_MAX = 500
REQUEST_ID_MAX = 200
_CHUNK = 500
INVOICE_STATES = ("DRAFT", "FINALIZED", "VOID")
_USAGE_COLUMNS = [getattr(UsageWindow, name) for name in pr.USAGE_FIELDS]


class CompletenessSource(Protocol):
    async def completeness(self, period: Period) -> tuple[str, str]:
        """(COMPLETE | INCOMPLETE | UNKNOWN, note) for the usage of `period`."""
        ...


class UnknownCompleteness:
    """Used until the usage service reports per-node completeness for a period."""

    async def completeness(self, period: Period) -> tuple[str, str]:
        return "UNKNOWN", "usage completeness is not reported by the usage service yet"


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    """An invoice row as read (or just written): plain values, no ORM identity to keep in sync."""

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


@dataclass(frozen=True, slots=True)
class LineRecord:
    invoice_id: str
    position: int
    subscription_id: str
    api_id: str
    plan_id: str
    kind: str
    description: str
    quantity: str
    unit_price: str
    amount: str
    adjusts_segment_id: int | None
    details: dict[str, Any]


_INVOICE_FIELDS = [f for f in InvoiceRecord.__slots__]  # type: ignore[attr-defined]
_LINE_FIELDS = [f for f in LineRecord.__slots__]  # type: ignore[attr-defined]
_INVOICE_COLUMNS = [getattr(Invoice, name) for name in _INVOICE_FIELDS]
_LINE_COLUMNS = [getattr(InvoiceLine, name) for name in _LINE_FIELDS]


@dataclass
class InvoiceView:
    invoice: InvoiceRecord
    lines: list[LineRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Sub:
    """The subscription columns an invoice run reads (tens of thousands: no ORM objects)."""

    id: str
    application_id: str
    api_id: str
    plan_id: str
    state: str
    billing_anchor_day: int
    created_at: datetime
    updated_at: datetime


_SUB_COLUMNS = [getattr(Subscription, name) for name in _Sub.__slots__]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class UsageRow:
    subscription_id: str
    plan_id: str
    usage: pr.Usage


def _require(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > 200:
        raise InvalidArgument(f"{name} is too long")
    return value


def _reason(value: str, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidArgument("reason is required")
    if len(value) > REASON_MAX:
        raise InvalidArgument(f"reason must be at most {REASON_MAX} characters")
    return value


def _usage_sums() -> list[Any]:
    """Sums of the usage classes, with `success` meaning *within quota*: UsageWindow.success counts
    every successful request, including the overage admitted beyond a soft quota, which is priced
    on its own line at the overage price (so it must not bill twice)."""
    sums = dict(zip(pr.USAGE_FIELDS, (func.coalesce(func.sum(c), 0) for c in _USAGE_COLUMNS), strict=True))
    sums["success"] = sums["success"] - sums["overage"]
    return [sums[name] for name in pr.USAGE_FIELDS]


_ID_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"


def _invoice_ids(count: int) -> Iterator[str]:
    """Ids like schema.new_id("inv"), drawn in one go: a run may create tens of thousands."""
    raw = secrets.token_bytes(12 * count)
    for i in range(count):
        yield "inv_" + "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in raw[12 * i : 12 * i + 12])


@functools.lru_cache(maxsize=256)
def _pricing_json(pricing: pr.Pricing) -> dict[str, Any]:
    return pricing.to_json()


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during an invoice run: it allocates hundreds of thousands of
    short-lived objects (lines, rows), none in cycles, and collections over them cost ~15% of the run.
    Reference counting still frees them; the collector resumes (if it was on) when the run ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class BillingRepository:
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
        self.completeness_source: CompletenessSource = completeness or UnknownCompleteness()

    def now(self) -> datetime:
        return self._clock()

    # --- transactions -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _gateway_write(self) -> AsyncIterator[AsyncSession]:
        """A write gateway replicas must see (subscription state, plan): bumps the change revision."""
        async with self._db.session() as session:
            await self._db.record_change(session)
            yield session

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
        result = await session.exec(statement)  # type: ignore[call-overload]
        if result.rowcount == 0:
            dialect_insert = pg_insert if self._db.is_postgres else sqlite_insert
            await session.exec(
                dialect_insert(BillingSequence)  # type: ignore[call-overload]
                .values(name=INVOICE_SEQUENCE, value=0)
                .on_conflict_do_nothing()
            )
            await session.exec(statement)  # type: ignore[call-overload]

    async def _commit(self, session: AsyncSession) -> None:
        await session.commit()
        self._on_commit()

    # --- subscription workflow ----------------------------------------------------------------------

    async def get_subscription(self, subscription_id: str) -> Subscription:
        subscription_id = _require(subscription_id, "subscription_id")
        async with self._db.session() as session:
            return await self._subscription(session, subscription_id)

    async def list_pending(self) -> list[Subscription]:
        statement = (
            select(Subscription)
            .where(Subscription.state == "PENDING_APPROVAL")
            .order_by(col(Subscription.created_at), col(Subscription.id))
        )
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def approve(self, subscription_id: str, reason: str = "") -> Subscription:
        """PENDING_APPROVAL → ACTIVE: the gateway admits the subscription's keys within a second."""
        return await self._transition(subscription_id, ("PENDING_APPROVAL",), "ACTIVE", "APPROVED", reason)

    async def reject(self, subscription_id: str, reason: str) -> Subscription:
        return await self._transition(
            subscription_id, ("PENDING_APPROVAL",), "REJECTED", "REJECTED", _reason(reason, True)
        )

    async def suspend(self, subscription_id: str, reason: str) -> Subscription:
        """ACTIVE → SUSPENDED (e.g. non-payment): the gateway answers 403 until it is resumed."""
        return await self._transition(
            subscription_id, ("ACTIVE",), "SUSPENDED", "SUSPENDED", _reason(reason, True)
        )

    async def resume(self, subscription_id: str, reason: str = "") -> Subscription:
        return await self._transition(subscription_id, ("SUSPENDED",), "ACTIVE", "RESUMED", reason)

    async def _transition(
        self, subscription_id: str, allowed_from: Sequence[str], to_state: str, kind: str, reason: str
    ) -> Subscription:
        subscription_id = _require(subscription_id, "subscription_id")
        reason = _reason(reason, False)
        async with self._gateway_write() as session:
            subscription = await self._subscription(session, subscription_id, for_update=True)
            if subscription.state not in allowed_from:
                raise FailedPrecondition(
                    f"subscription {subscription_id!r} is {subscription.state}; only"
                    f" {' or '.join(allowed_from)} subscriptions can become {to_state}"
                )
            now = self.now()
            session.add(
                SubscriptionEvent(
                    subscription_id=subscription_id,
                    at=now,
                    kind=kind,
                    from_state=subscription.state,
                    to_state=to_state,
                    from_plan_id=subscription.plan_id,
                    to_plan_id=subscription.plan_id,
                    reason=reason,
                )
            )
            subscription.state = to_state
            subscription.state_reason = reason
            subscription.updated_at = now
            session.add(subscription)
            await self._commit(session)
        log.info("subscription %s: %s → %s", subscription_id, kind, to_state)
        return subscription

    async def change_plan(self, subscription_id: str, plan: str) -> Subscription:
        """Moves a live subscription to another plan its API offers, from now on: usage admitted from
        now is attributed to the new plan, and the period's fee is prorated (billing/segments.py)."""
        subscription_id = _require(subscription_id, "subscription_id")
        plan = _require(plan, "plan_id")
        async with self._gateway_write() as session:
            subscription = await self._subscription(session, subscription_id, for_update=True)
            if subscription.state not in LIVE_SUBSCRIPTION_STATES:
                raise FailedPrecondition(
                    f"subscription {subscription_id!r} is {subscription.state}; its plan cannot change"
                )
            offered = (
                await session.exec(
                    select(Plan)
                    .join(ApiPlan, col(ApiPlan.plan_id) == col(Plan.id))
                    .where(ApiPlan.api_id == subscription.api_id)
                )
            ).all()
            matches = [row for row in offered if row.id == plan] or [
                row for row in offered if row.name == plan
            ]
            if not matches:
                names = ", ".join(sorted(row.name for row in offered)) or "none"
                raise InvalidArgument(
                    f"plan {plan!r} is not offered by the subscription's API (offered: {names})"
                )
            new_plan = matches[0]
            if new_plan.id == subscription.plan_id:
                raise FailedPrecondition(
                    f"subscription {subscription_id!r} is already on plan {new_plan.name!r}"
                )
            now = self.now()
            session.add(
                SubscriptionEvent(
                    subscription_id=subscription_id,
                    at=now,
                    kind="PLAN_CHANGED",
                    from_state=subscription.state,
                    to_state=subscription.state,
                    from_plan_id=subscription.plan_id,
                    to_plan_id=new_plan.id,
                )
            )
            subscription.plan_id = new_plan.id
            subscription.updated_at = now
            session.add(subscription)
            await self._commit(session)
        log.info("subscription %s moved to plan %s", subscription_id, new_plan.id)
        return subscription

    async def events(self, subscription_id: str) -> list[SubscriptionEvent]:
        subscription_id = _require(subscription_id, "subscription_id")
        async with self._db.session() as session:
            await self._subscription(session, subscription_id)
            statement = (
                select(SubscriptionEvent)
                .where(SubscriptionEvent.subscription_id == subscription_id)
                .order_by(col(SubscriptionEvent.at), col(SubscriptionEvent.id))
            )
            return list((await session.exec(statement)).all())

    @staticmethod
    async def _subscription(
        session: AsyncSession, subscription_id: str, for_update: bool = False
    ) -> Subscription:
        statement = select(Subscription).where(Subscription.id == subscription_id)
        if for_update:
            statement = statement.with_for_update()
        subscription = (await session.exec(statement)).first()
        if subscription is None:
            raise NotFound(f"subscription {subscription_id!r} not found")
        return subscription

    # --- usage ------------------------------------------------------------------------------------------

    async def usage_summary(self, subscription_id: str, period: Period) -> list[UsageRow]:
        """The subscription's usage in `period`, per plan it was admitted under."""
        subscription_id = _require(subscription_id, "subscription_id")
        async with self._db.session() as session:
            await self._subscription(session, subscription_id)
            return await self._aggregate(session, period, subscription_id=subscription_id)

    async def subscriptions(self, application_id: str = "", subscription_id: str = "") -> list[Subscription]:
        """Subscriptions in a billing scope (all, one application's, or one), rejected/pending excluded."""
        async with self._db.session() as session:
            return await self._scope(session, application_id.strip(), subscription_id.strip())

    async def period_usage(
        self, period: Period, application_id: str = "", subscription_id: str = ""
    ) -> list[UsageRow]:
        """One SQL aggregate: usage per (subscription, plan) in `period`."""
        async with self._db.session() as session:
            return await self._aggregate(session, period, application_id.strip(), subscription_id.strip())

    async def _aggregate(
        self, session: AsyncSession, period: Period, application_id: str = "", subscription_id: str = ""
    ) -> list[UsageRow]:
        statement = select(UsageWindow.subscription_id, UsageWindow.plan_id, *_usage_sums()).where(
            UsageWindow.granularity == BILLING_GRANULARITY,
            col(UsageWindow.window_start) >= period.start,
            col(UsageWindow.window_start) < period.end,
            UsageWindow.subscription_id != "",
        )
        if application_id:
            statement = statement.where(UsageWindow.application_id == application_id)
        if subscription_id:
            statement = statement.where(UsageWindow.subscription_id == subscription_id)
        statement = statement.group_by(col(UsageWindow.subscription_id), col(UsageWindow.plan_id))
        rows = (await session.exec(statement)).all()
        return [UsageRow(row[0], row[1], pr.Usage(*(int(v) for v in row[2:]))) for row in rows]

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
        with _gc_paused():
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
            subscriptions = await self._scope_rows(session, application_id, subscription_id)
            by_period: dict[Period, list[_Sub]] = defaultdict(list)
            for subscription in subscriptions:
                own = period or period_starting_in(*month, subscription.billing_anchor_day)  # type: ignore[misc]
                by_period[own].append(subscription)
            pricers = _Pricers({plan.id: plan for plan in (await session.exec(select(Plan))).all()})
            sub_ids = [s.id for s in subscriptions] if (application_id or subscription_id) else None
            events = await self._billing_events(session, sub_ids)

            drafts: dict[tuple[str, str, Period], _Draft] = {}
            for own_period, members in sorted(by_period.items()):
                member_ids = {s.id for s in members}
                usage: dict[str, list[UsageRow]] = defaultdict(list)
                for row in await self._aggregate(session, own_period, application_id, subscription_id):
                    if row.subscription_id in member_ids:
                        usage[row.subscription_id].append(row)
                for subscription in members:
                    self._price_subscription(
                        subscription, own_period, pricers, events.get(subscription.id, []),
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

    async def _scope(
        self, session: AsyncSession, application_id: str, subscription_id: str
    ) -> list[Subscription]:
        statement = await self._scope_statement(
            session, select(Subscription), application_id, subscription_id
        )
        return list((await session.exec(statement)).all())

    async def _scope_rows(
        self, session: AsyncSession, application_id: str, subscription_id: str
    ) -> list[_Sub]:
        statement = await self._scope_statement(
            session, select(*_SUB_COLUMNS), application_id, subscription_id
        )
        return [_Sub(*row) for row in (await session.exec(statement)).all()]

    async def _scope_statement(
        self, session: AsyncSession, statement: Any, application_id: str, subscription_id: str
    ) -> Any:
        """Subscriptions in a billing scope (all, one application's, or one), rejected/pending excluded;
        an unknown application or subscription is NOT_FOUND."""
        statement = statement.where(col(Subscription.state).not_in(("REJECTED", "PENDING_APPROVAL")))
        if subscription_id:
            await self._subscription(session, subscription_id)
            statement = statement.where(Subscription.id == subscription_id)
        if application_id:
            if await session.get(Application, application_id) is None:
                raise NotFound(f"application {application_id!r} not found")
            statement = statement.where(Subscription.application_id == application_id)
        return statement.order_by(col(Subscription.id))

    async def _billing_events(
        self, session: AsyncSession, subscription_ids: list[str] | None
    ) -> dict[str, list[SubscriptionEvent]]:
        statement = select(SubscriptionEvent).where(
            col(SubscriptionEvent.kind).in_(("APPROVED", "PLAN_CHANGED"))
        )
        found: dict[str, list[SubscriptionEvent]] = defaultdict(list)
        if subscription_ids is not None:
            for chunk in _chunks(subscription_ids):
                rows = await session.exec(statement.where(col(SubscriptionEvent.subscription_id).in_(chunk)))
                for event in rows.all():
                    found[event.subscription_id].append(event)
            return found
        for event in (await session.exec(statement)).all():
            found[event.subscription_id].append(event)
        return found

    def _price_subscription(
        self,
        subscription: _Sub,
        period: Period,
        pricers: _Pricers,
        events: list[SubscriptionEvent],
        usage: list[UsageRow],
        drafts: dict[tuple[str, str, Period], _Draft],
    ) -> None:
        approvals = [as_utc(e.at) for e in events if e.kind == "APPROVED"]
        active_from = min(approvals) if approvals else as_utc(subscription.created_at)
        active_until = as_utc(subscription.updated_at) if subscription.state == "CANCELLED" else None
        changes = [
            PlanChange(as_utc(e.at), e.from_plan_id, e.to_plan_id)  # type: ignore[arg-type]
            for e in events
            if e.kind == "PLAN_CHANGED"
        ]
        shares = plan_shares(period, active_from, active_until, subscription.plan_id, changes)  # type: ignore[arg-type]
        by_plan = {row.plan_id: row.usage for row in usage}
        for plan_id in by_plan:
            shares.setdefault(plan_id, _NO_SHARE)
        several = len(shares) > 1
        for plan_id, share in shares.items():
            pricer = pricers.get(plan_id, share, several)
            if pricer is None:
                continue  # free plans without a currency are not invoiced (their usage is still reported)
            counts = by_plan.get(plan_id, _NO_USAGE)
            lines = pricer.price(counts)
            key = (subscription.application_id, pricer.pricing.currency, period)
            draft = drafts.get(key)
            if draft is None:
                draft = drafts[key] = _Draft(subscription.application_id, pricer.pricing.currency, period)
            draft.segments.append(
                _Segment(subscription.id, subscription.api_id, plan_id, share, pricer.pricing, counts, lines)
            )

    async def _adjustments(
        self,
        session: AsyncSession,
        period: Period,
        members: list[Subscription],
        drafts: dict[tuple[str, str, Period], _Draft],
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
                (row.subscription_id, row.plan_id): row.usage
                for row in await self._aggregate(session, earlier)
            }
            for segment in group:
                current[segment.id] = usage.get((segment.subscription_id, segment.plan_id), pr.Usage())  # type: ignore[index]
        for segment in sorted(segments, key=lambda s: s.id or 0):
            subscription = member_by_id.get(segment.subscription_id)
            if subscription is None:
                continue
            billed = pr.Usage.from_json(segment.usage)
            now_usage = current[segment.id]  # type: ignore[index]
            if now_usage == billed:
                continue
            pricing = pr.Pricing.from_json(segment.pricing)
            share = Fraction(segment.share)
            new_amount = pr.charged_total(pr.price_segment(pricing, now_usage, share))
            delta = now_usage - billed
            amount = new_amount - Decimal(segment.amount)
            start = as_utc(segment.period_start)
            end = as_utc(segment.period_end)
            assert start is not None and end is not None
            line = pr.Line(
                pr.ADJUSTMENT,
                f"late usage for {start.date().isoformat()}-{end.date().isoformat()}"
                f" ({delta.success:+,} successful, {delta.overage:+,} overage)",
                Decimal(1),
                amount,
                amount,
                {
                    "segment_id": segment.id,
                    "from_usage": billed.to_json(),
                    "to_usage": now_usage.to_json(),
                    "from_amount": segment.amount,
                    "to_amount": money_text(new_amount),
                },
            )
            draft = drafts.setdefault(
                (subscription.application_id, pricing.currency, period),
                _Draft(subscription.application_id, pricing.currency, period),
            )
            draft.adjustments.append((segment, line))

    async def _store_drafts(
        self, session: AsyncSession, drafts: dict[tuple[str, str, Period], _Draft]
    ) -> list[InvoiceView]:
        """Writes the run's drafts set-based: a replaced draft keeps its invoice row (one UPDATE for all
        of them) and loses its lines and segments (one DELETE each); new invoices, and every line and
        segment, are inserted in bulk (COPY on PostgreSQL). Finalized invoices are left as they are."""
        if not drafts:
            return []
        periods = {key[2] for key in drafts}
        existing: dict[tuple[str, str, Period], tuple[str, str, datetime]] = {}  # id, state, created_at
        for own in periods:
            statement = select(
                Invoice.id, Invoice.application_id, Invoice.currency, Invoice.state, Invoice.created_at
            ).where(Invoice.state != "VOID", Invoice.period_start == own.start, Invoice.period_end == own.end)
            for row in (await session.exec(statement)).all():
                existing[(row[1], row[2], own)] = (row[0], row[3], row[4])
        now = self.now()
        completeness = {own: await self.completeness_source.completeness(own) for own in periods}
        await self._delete_contents(
            session, [inv[0] for key, inv in existing.items() if key in drafts and inv[1] == "DRAFT"]
        )
        with_lines = len(drafts) <= 1000  # a whole run's lines are read with list_invoices / export
        invoice_rows: list[tuple[Any, ...]] = []
        invoice_updates: list[tuple[str, str, str, str, datetime]] = []
        written: list[tuple[str, _Draft, list[_LineOf]]] = []
        emptied: list[str] = []
        views: list[InvoiceView | str] = []  # a finalized invoice's id, to read below
        fresh_ids = _invoice_ids(len(drafts))
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
        for chunk in _chunks(emptied):
            await session.exec(delete(Invoice.__table__).where(Invoice.__table__.c.id.in_(chunk)))  # type: ignore[attr-defined, call-overload]
        await self._update_invoices(session, invoice_updates)
        await self._bulk_insert(session, Invoice, _INVOICE_FIELDS, invoice_rows, len(invoice_rows))
        await self._bulk_insert(session, InvoiceLine, _LINE_FIELDS, lines_out, line_count)
        await self._bulk_insert(session, BilledSegment, _SEGMENT_FIELDS, segment_rows(), segment_count)
        finalized = [view for view in views if isinstance(view, str)]
        if not finalized:
            return views  # type: ignore[return-value]
        read = {view.invoice.id: view for view in await self._views(session, finalized, with_lines)}
        return [
            read[view] if isinstance(view, str) else view
            for view in views
            if not isinstance(view, str) or view in read
        ]

    async def _delete_contents(self, session: AsyncSession, invoice_ids: list[str]) -> None:
        """Deletes the lines and billed segments of invoices, one statement per table on PostgreSQL."""
        if not invoice_ids:
            return
        tables = [InvoiceLine.__table__, BilledSegment.__table__]  # type: ignore[attr-defined]
        if self._db.is_postgres:
            # IN (SELECT unnest(...)) lets the planner hash the ids; `= ANY(array)` probes per element.
            ids = select(func.unnest(bindparam("ids", value=invoice_ids, type_=ARRAY(String))))
            for table in tables:
                await session.exec(delete(table).where(table.c.invoice_id.in_(ids.scalar_subquery())))  # type: ignore[call-overload]
            return
        for chunk in _chunks(invoice_ids):
            for table in tables:
                await session.exec(delete(table).where(table.c.invoice_id.in_(chunk)))  # type: ignore[call-overload]

    async def _update_invoices(
        self, session: AsyncSession, updates: list[tuple[str, str, str, str, datetime]]
    ) -> None:
        """(id, total, usage_completeness, completeness_note, updated_at) of replaced drafts: one
        UPDATE ... FROM unnest(...) on PostgreSQL, one executemany elsewhere."""
        if not updates:
            return
        table = Invoice.__table__  # type: ignore[attr-defined]
        names = ["id", "total", "usage_completeness", "completeness_note", "updated_at"]
        if self._db.is_postgres and len(updates) >= 100:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            columns = list(zip(*updates, strict=True))
            await raw.driver_connection.execute(  # type: ignore[union-attr]
                f"UPDATE {table.name} AS i SET total = v.total, usage_completeness = v.usage_completeness,"
                " completeness_note = v.completeness_note, updated_at = v.updated_at"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])"
                " AS v(id, total, usage_completeness, completeness_note, updated_at) WHERE i.id = v.id",
                *(list(c) for c in columns),
            )
            return
        statement = (
            update(table)
            .where(table.c.id == bindparam("invoice_id"))
            .values({name: bindparam(f"new_{name}") for name in names[1:]})
        )
        params = [
            {"invoice_id": row[0], **{f"new_{n}": v for n, v in zip(names[1:], row[1:], strict=True)}}
            for row in updates
        ]
        await session.exec(statement, params=params)  # type: ignore[call-overload]

    async def _bulk_insert(
        self,
        session: AsyncSession,
        model: Any,
        columns: list[str],
        rows: Iterable[tuple[Any, ...]],
        count: int,
    ) -> None:
        """`count` rows in the session's transaction: COPY on PostgreSQL (streamed from `rows`), one
        executemany elsewhere."""
        if not count:
            return
        table = model.__table__
        if not self._db.is_postgres or count < 100:
            params = [dict(zip(columns, row, strict=True)) for row in rows]
            await session.exec(insert(table), params=params)  # type: ignore[call-overload]
            return
        json_at = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
        records: Iterable[tuple[Any, ...]] = rows
        if json_at:
            encode = _JsonTexts()

            def encoded() -> Iterator[tuple[Any, ...]]:
                for row in rows:
                    values = list(row)
                    for i in json_at:
                        values[i] = encode(values[i])
                    yield tuple(values)

            records = encoded()
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=records, columns=columns, schema_name=self._db.schema_name or None
        )

    async def _views(
        self, session: AsyncSession, invoice_ids: list[str], with_lines: bool = True
    ) -> list[InvoiceView]:
        invoices: dict[str, InvoiceRecord] = {}
        lines: dict[str, list[LineRecord]] = defaultdict(list)
        for chunk in _chunks(invoice_ids):
            statement = select(*_INVOICE_COLUMNS).where(col(Invoice.id).in_(chunk))
            for row in (await session.exec(statement)).all():  # type: ignore[call-overload]
                invoices[row[0]] = InvoiceRecord(*row)
            if with_lines:
                statement = (
                    select(*_LINE_COLUMNS)
                    .where(col(InvoiceLine.invoice_id).in_(chunk))
                    .order_by(col(InvoiceLine.invoice_id), col(InvoiceLine.position))
                )
                for row in (await session.exec(statement)).all():  # type: ignore[call-overload]
                    lines[row[0]].append(LineRecord(*row))
        return [InvoiceView(invoices[i], lines[i]) for i in invoice_ids if i in invoices]

    # --- reading, finalizing, voiding ----------------------------------------------------------------

    async def get_invoice(self, invoice_id: str) -> InvoiceView:
        invoice_id = _require(invoice_id, "invoice_id")
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

    async def finalize(self, invoice_id: str) -> InvoiceView:
        """DRAFT → FINALIZED with the next number (gapless: the counter moves in this transaction).
        Finalizing a finalized invoice returns it unchanged."""
        invoice_id = _require(invoice_id, "invoice_id")
        async with self._billing_write() as session:
            invoice_id = await self._invoice_id(session, invoice_id)
            invoice = await session.get(Invoice, invoice_id)
            assert invoice is not None
            if invoice.state == "FINALIZED":
                return (await self._views(session, [invoice_id]))[0]
            if invoice.state == "VOID":
                raise FailedPrecondition(f"invoice {invoice_id!r} is VOID and cannot be finalized")
            await self._apply_adjustments(session, invoice_id, forward=True)
            sequence = await session.get(BillingSequence, INVOICE_SEQUENCE)
            assert sequence is not None  # created by the lock
            sequence.value += 1
            session.add(sequence)
            now = self.now()
            invoice.state = "FINALIZED"
            invoice.number = f"{INVOICE_NUMBER_PREFIX}{sequence.value:06d}"
            invoice.finalized_at = now
            invoice.updated_at = now
            session.add(invoice)
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
        invoice_id = _require(invoice_id, "invoice_id")
        reason = _reason(reason, True)
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

    # --- export ---------------------------------------------------------------------------------------

    async def export(self, period: Period, fmt: str, state: str = "") -> str:
        """A period's invoices, one row per line: CSV (header first) or JSON lines (one per invoice)."""
        views = await self.list_invoices(state=state, period=period, with_lines=True)
        if fmt == "jsonl":
            return "".join(json.dumps(invoice_json(view), sort_keys=True) + "\n" for view in views)
        if fmt != "csv":
            raise InvalidArgument(f"unknown export format {fmt!r}; expected csv or jsonl")
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
                        _iso(inv.period_start),
                        _iso(inv.period_end),
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


def _iso(value: datetime | None) -> str:
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
        "period_start": _iso(inv.period_start),
        "period_end": _iso(inv.period_end),
        "total": inv.total,
        "usage_completeness": inv.usage_completeness,
        "finalized_at": _iso(inv.finalized_at),
        "voided_at": _iso(inv.voided_at),
        "void_reason": inv.void_reason,
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


@dataclass
class _Segment:
    subscription_id: str
    api_id: str
    plan_id: str
    share: Fraction
    pricing: pr.Pricing
    usage: pr.Usage
    lines: list[pr.Line]


@dataclass
class _Draft:
    application_id: str
    currency: str
    period: Period
    segments: list[_Segment] = field(default_factory=list)
    adjustments: list[tuple[BilledSegment, pr.Line]] = field(default_factory=list)

    def lines(self) -> list[_LineOf]:
        result: list[_LineOf] = []
        for segment in self.segments:
            ids = (segment.subscription_id, segment.api_id, segment.plan_id)
            result += [(*ids, line) for line in segment.lines]
        for billed, line in self.adjustments:
            result.append((billed.subscription_id, billed.api_id, billed.plan_id, line))
        return result


# (subscription_id, api_id, plan_id, line): an invoice line and the segment it belongs to.
_LineOf = tuple[str, str, str, pr.Line]


_NO_USAGE = pr.Usage()
_NO_SHARE = Fraction(0)
_SEGMENT_FIELDS = [
    "invoice_id", "subscription_id", "api_id", "plan_id", "period_start", "period_end", "share", "pricing",
    "usage", "amount",
]  # fmt: skip


class _Pricers:
    """One Pricing per plan and one SegmentPricer per (plan, share, label) for the length of a run:
    plans are read in the run's transaction, and thousands of subscriptions share a few of them."""

    def __init__(self, plans: dict[str, Plan]) -> None:
        self._plans = plans
        self._pricers: dict[tuple[str, Fraction, bool], pr.SegmentPricer | None] = {}

    def get(self, plan_id: str, share: Fraction, labelled: bool) -> pr.SegmentPricer | None:
        key = (plan_id, share, labelled)
        try:
            return self._pricers[key]
        except KeyError:
            pass
        plan = self._plans.get(plan_id)
        pricer = None
        if plan is not None and plan.currency:
            pricer = pr.SegmentPricer(pr.Pricing.from_plan(plan), share, plan.name if labelled else "")
        self._pricers[key] = pricer
        return pricer


class _JsonTexts:
    """json.dumps with a cache by identity: most lines share their details dict (SegmentPricer)."""

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Any, str]] = {}

    def __call__(self, value: Any) -> str:
        if not value and isinstance(value, dict):
            return "{}"  # most informational lines: no details
        hit = self._texts.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        text = json.dumps(value)
        self._texts[id(value)] = (value, text)  # keeps `value` alive, so its id is not reused
        return text


__all__ = ["Api", "BillingRepository", "InvoiceRecord", "InvoiceView", "LineRecord", "UsageRow"]
