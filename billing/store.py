"""Billing's repository: subscription workflow, invoice runs, finalizing, voiding, usage queries.

Every write runs in one transaction that first takes the billing lock (a write to the counter row), so
SQLite's writer lock / PostgreSQL's row lock queue concurrent billing writers and each one's checks see
the writes committed before it. Usage is read with SQL aggregates (GROUP BY), never row by row."""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from sqlalchemy import JSON, bindparam, delete, func, insert, update
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


@dataclass
class InvoiceView:
    invoice: Invoice
    lines: list[InvoiceLine] = field(default_factory=list)


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
        self._pricing_cache: dict[str, pr.Pricing] = {}

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
        async with self._billing_write() as session:
            if request_id:
                done = await session.get(BillingIdempotency, f"generate:{request_id}")
                if done is not None:
                    return await self._views(session, list(done.result.get("invoice_ids", [])))
            subscriptions = await self._scope(session, application_id, subscription_id)
            by_period: dict[Period, list[Subscription]] = defaultdict(list)
            for subscription in subscriptions:
                own = period or period_starting_in(*month, subscription.billing_anchor_day)  # type: ignore[misc]
                by_period[own].append(subscription)
            plans = {plan.id: plan for plan in (await session.exec(select(Plan))).all()}
            self._pricing_cache = {}  # one Pricing per plan and run (plans are read in this transaction)
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
                        subscription, own_period, plans, events.get(subscription.id, []),
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
        statement = select(Subscription).where(
            col(Subscription.state).not_in(("REJECTED", "PENDING_APPROVAL"))
        )
        if subscription_id:
            await self._subscription(session, subscription_id)
            statement = statement.where(Subscription.id == subscription_id)
        if application_id:
            if await session.get(Application, application_id) is None:
                raise NotFound(f"application {application_id!r} not found")
            statement = statement.where(Subscription.application_id == application_id)
        return list((await session.exec(statement.order_by(col(Subscription.id)))).all())

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
        subscription: Subscription,
        period: Period,
        plans: dict[str, Plan],
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
            shares.setdefault(plan_id, Fraction(0))
        several = len(shares) > 1
        for plan_id, share in shares.items():
            plan = plans.get(plan_id)
            if plan is None or not plan.currency:
                continue  # free plans without a currency are not invoiced (their usage is still reported)
            pricing = self._pricing_cache.get(plan_id) or pr.Pricing.from_plan(plan)
            self._pricing_cache[plan_id] = pricing
            counts = by_plan.get(plan_id, pr.Usage())
            lines = pr.price_segment(pricing, counts, share, label=plan.name if several else "")
            draft = drafts.setdefault(
                (subscription.application_id, pricing.currency, period),
                _Draft(subscription.application_id, pricing.currency, period),
            )
            draft.segments.append(
                _Segment(subscription.id, subscription.api_id, plan_id, share, pricing, counts, lines)
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
        if not drafts:
            return []
        periods = {key[2] for key in drafts}
        existing: dict[tuple[str, str, Period], Invoice] = {}
        for own in periods:
            statement = select(Invoice).where(
                Invoice.state != "VOID", Invoice.period_start == own.start, Invoice.period_end == own.end
            )
            for invoice in (await session.exec(statement)).all():
                existing[(invoice.application_id, invoice.currency, own)] = invoice
        now = self.now()
        completeness = {own: await self.completeness_source.completeness(own) for own in periods}
        replaced = [inv.id for key, inv in existing.items() if key in drafts and inv.state == "DRAFT"]
        for chunk in _chunks(replaced):
            await session.exec(delete(InvoiceLine).where(col(InvoiceLine.invoice_id).in_(chunk)))  # type: ignore[call-overload]
            await session.exec(delete(BilledSegment).where(col(BilledSegment.invoice_id).in_(chunk)))  # type: ignore[call-overload]
        invoice_rows: list[dict[str, Any]] = []
        invoice_updates: list[dict[str, Any]] = []
        line_rows: list[dict[str, Any]] = []
        segment_rows: list[dict[str, Any]] = []
        invoice_ids: list[str] = []
        fresh_ids = _invoice_ids(len(drafts))
        for key in sorted(drafts, key=lambda k: (k[2], k[0], k[1])):
            draft = drafts[key]
            old = existing.get(key)
            if old is not None and old.state == "FINALIZED":
                invoice_ids.append(old.id)  # immutable: late usage lands on the next period's invoice
                continue
            lines = draft.lines()
            if not lines:
                continue
            total = sum((line.amount for _, line in lines if line.charged), Decimal(0))
            state, note = completeness[key[2]]
            invoice_id = old.id if old is not None else next(fresh_ids)
            values = {
                "total": money_text(total),
                "usage_completeness": state,
                "completeness_note": note,
                "updated_at": now,
            }
            if old is None:
                invoice_rows.append(
                    {
                        "id": invoice_id,
                        "state": "DRAFT",
                        "application_id": draft.application_id,
                        "currency": draft.currency,
                        "period_start": draft.period.start,
                        "period_end": draft.period.end,
                        "created_at": now,
                        "void_reason": "",
                        **values,
                    }
                )
            else:
                invoice_updates.append({"invoice_id": invoice_id, **values})
            invoice_ids.append(invoice_id)
            for position, (segment, line) in enumerate(lines):
                line_rows.append(
                    {
                        "invoice_id": invoice_id,
                        "position": position,
                        "subscription_id": segment.subscription_id,
                        "api_id": segment.api_id,
                        "plan_id": segment.plan_id,
                        "kind": line.kind,
                        "description": line.description,
                        "quantity": money_text(line.quantity),
                        "unit_price": money_text(line.unit_price),
                        "amount": money_text(line.amount),
                        "adjusts_segment_id": line.details.get("segment_id")
                        if line.kind == pr.ADJUSTMENT
                        else None,
                        "details": line.details,
                    }
                )
            for segment in draft.segments:
                segment_rows.append(
                    {
                        "invoice_id": invoice_id,
                        "subscription_id": segment.subscription_id,
                        "api_id": segment.api_id,
                        "plan_id": segment.plan_id,
                        "period_start": draft.period.start,
                        "period_end": draft.period.end,
                        "share": f"{segment.share.numerator}/{segment.share.denominator}",
                        "pricing": _pricing_json(segment.pricing),
                        "usage": segment.usage.to_json(),
                        "amount": money_text(pr.charged_total(segment.lines)),
                    }
                )
        if invoice_rows:
            await self._bulk_insert(session, Invoice, invoice_rows)
        if invoice_updates:
            # Core executemany (no ORM session synchronisation: nothing of these rows is loaded).
            table = Invoice.__table__  # type: ignore[attr-defined]
            statement = (
                update(table)
                .where(table.c.id == bindparam("invoice_id"))
                .values(
                    {name: bindparam(f"new_{name}") for name in invoice_updates[0] if name != "invoice_id"}
                )
            )
            params = [
                {f"new_{k}" if k != "invoice_id" else k: v for k, v in row.items()} for row in invoice_updates
            ]
            await session.exec(statement, params=params)  # type: ignore[call-overload]
        if line_rows:
            await self._bulk_insert(session, InvoiceLine, line_rows)
        if segment_rows:
            await self._bulk_insert(session, BilledSegment, segment_rows)
        await session.flush()
        return await self._views(session, invoice_ids, with_lines=len(invoice_ids) <= 1000)

    async def _bulk_insert(self, session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
        """Many rows in the session's transaction: COPY on PostgreSQL, one executemany elsewhere."""
        table = model.__table__
        if not self._db.is_postgres or len(rows) < 100:
            await session.exec(insert(table), params=rows)  # type: ignore[call-overload]
            return
        columns = list(rows[0])
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        records = [
            tuple(json.dumps(row[c]) if c in json_columns else row[c] for c in columns) for row in rows
        ]
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=records, columns=columns, schema_name=self._db.schema_name or None
        )

    async def _views(
        self, session: AsyncSession, invoice_ids: list[str], with_lines: bool = True
    ) -> list[InvoiceView]:
        invoices: dict[str, Invoice] = {}
        lines: dict[str, list[InvoiceLine]] = defaultdict(list)
        for chunk in _chunks(invoice_ids):
            # populate_existing: rows updated by Core statements in this transaction are read afresh.
            statement = (
                select(Invoice).where(col(Invoice.id).in_(chunk)).execution_options(populate_existing=True)
            )
            for invoice in (await session.exec(statement)).all():
                invoices[invoice.id] = invoice
            if with_lines:
                statement = (
                    select(InvoiceLine)
                    .where(col(InvoiceLine.invoice_id).in_(chunk))
                    .order_by(col(InvoiceLine.invoice_id), col(InvoiceLine.position))
                )
                for line in (await session.exec(statement)).all():
                    lines[line.invoice_id].append(line)
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

    def lines(self) -> list[tuple[_SegmentRef, pr.Line]]:
        result: list[tuple[_SegmentRef, pr.Line]] = []
        for segment in self.segments:
            ref = _SegmentRef(segment.subscription_id, segment.api_id, segment.plan_id)
            result.extend((ref, line) for line in segment.lines)
        for billed, line in self.adjustments:
            result.append((_SegmentRef(billed.subscription_id, billed.api_id, billed.plan_id), line))
        return result


@dataclass(frozen=True)
class _SegmentRef:
    subscription_id: str
    api_id: str
    plan_id: str


__all__ = ["Api", "BillingRepository", "InvoiceView", "UsageRow"]
