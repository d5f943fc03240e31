"""What billing reads: usage aggregates per (subscription, plan) and period, the subscriptions in a
billing scope, and the lifecycle event times proration needs. Usage is read with SQL aggregates
(GROUP BY), never row by row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import pricing as pr
from billing.invoice_engine import BILLING_EVENT_KINDS, SubscriptionRow, Timeline, UsageRow
from billing.periods import Period
from tollway.db import Database
from tollway.errors import InvalidArgument, NotFound
from tollway.lifecycle import SubscriptionState, load_subscription
from tollway.schema import Application, Subscription, SubscriptionEvent
from tollway.schema_usage import UsageWindow

BILLING_GRANULARITY = "minute"
CHUNK = 500
_USAGE_COLUMNS = [getattr(UsageWindow, name) for name in pr.USAGE_FIELDS]
_SUBSCRIPTION_COLUMNS = [getattr(Subscription, name) for name in SubscriptionRow.__slots__]
# Never billed: nothing was ever admitted under them.
_UNBILLED_STATES = (SubscriptionState.REJECTED, SubscriptionState.PENDING_APPROVAL)


def require(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > 200:
        raise InvalidArgument(f"{name} is too long")
    return value


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _usage_sums() -> list[Any]:
    """Sums of the usage classes, with `success` meaning *within quota*: UsageWindow.success counts
    every successful request, including the overage admitted beyond a soft quota, which is priced
    on its own line at the overage price (so it must not bill twice)."""
    sums: dict[str, ColumnElement[Any]] = dict(
        zip(pr.USAGE_FIELDS, (func.coalesce(func.sum(c), 0) for c in _USAGE_COLUMNS), strict=True)
    )
    sums["success"] = sums["success"] - sums["overage"]
    return [sums[name] for name in pr.USAGE_FIELDS]


async def aggregate(
    session: AsyncSession, period: Period, application_id: str = "", subscription_id: str = ""
) -> list[UsageRow]:
    """One SQL aggregate: usage per (subscription, plan) in `period`."""
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


async def usage_before(
    session: AsyncSession, start: datetime, cuts: Mapping[datetime, Collection[str]]
) -> dict[str, dict[tuple[str, datetime], pr.Usage]]:
    """For each instant in `cuts` and each subscription listed under it, its usage per plan from
    `start` until that instant: by subscription, then (plan, instant). One aggregate per instant (and
    chunk of subscriptions)."""
    found: dict[str, dict[tuple[str, datetime], pr.Usage]] = defaultdict(dict)
    for instant, subscription_ids in sorted(cuts.items()):
        for chunk in chunks(sorted(subscription_ids)):
            statement = (
                select(UsageWindow.subscription_id, UsageWindow.plan_id, *_usage_sums())
                .where(
                    UsageWindow.granularity == BILLING_GRANULARITY,
                    col(UsageWindow.window_start) >= start,
                    col(UsageWindow.window_start) < instant,
                    col(UsageWindow.subscription_id).in_(chunk),
                )
                .group_by(col(UsageWindow.subscription_id), col(UsageWindow.plan_id))
            )
            for row in (await session.exec(statement)).all():
                found[row[0]][(row[1], instant)] = pr.Usage(*(int(v) for v in row[2:]))
    return dict(found)


async def _scope_statement(
    session: AsyncSession, statement: Any, application_id: str, subscription_id: str
) -> Any:
    """Subscriptions in a billing scope (all, one application's, or one), rejected/pending excluded;
    an unknown application or subscription is NOT_FOUND."""
    statement = statement.where(col(Subscription.state).not_in(_UNBILLED_STATES))
    if subscription_id:
        await load_subscription(session, subscription_id)
        statement = statement.where(Subscription.id == subscription_id)
    if application_id:
        if await session.get(Application, application_id) is None:
            raise NotFound(f"application {application_id!r} not found")
        statement = statement.where(Subscription.application_id == application_id)
    return statement.order_by(col(Subscription.id))


async def scope_rows(
    session: AsyncSession, application_id: str, subscription_id: str
) -> list[SubscriptionRow]:
    statement = await _scope_statement(
        session, select(*_SUBSCRIPTION_COLUMNS), application_id, subscription_id
    )
    return [SubscriptionRow(*row) for row in (await session.exec(statement)).all()]


async def timelines(session: AsyncSession, subscription_ids: list[str] | None) -> dict[str, Timeline]:
    """Approval, cancellation and plan-change times per subscription (of `subscription_ids`, or all)."""
    statement = select(SubscriptionEvent).where(col(SubscriptionEvent.kind).in_(BILLING_EVENT_KINDS))
    found: dict[str, list[SubscriptionEvent]] = defaultdict(list)
    if subscription_ids is None:
        for event in (await session.exec(statement)).all():
            found[event.subscription_id].append(event)
    else:
        for chunk in chunks(subscription_ids):
            rows = await session.exec(statement.where(col(SubscriptionEvent.subscription_id).in_(chunk)))
            for event in rows.all():
                found[event.subscription_id].append(event)
    return {subscription_id: Timeline.from_events(events) for subscription_id, events in found.items()}


class UsageQueries:
    """Billing's read-only usage RPCs (usage summary, reconciliation inputs)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def usage_summary(self, subscription_id: str, period: Period) -> list[UsageRow]:
        """The subscription's usage in `period`, per plan it was admitted under."""
        subscription_id = require(subscription_id, "subscription_id")
        async with self._db.session() as session:
            await load_subscription(session, subscription_id)
            return await aggregate(session, period, subscription_id=subscription_id)

    async def subscriptions(self, application_id: str = "", subscription_id: str = "") -> list[Subscription]:
        """Subscriptions in a billing scope (all, one application's, or one), rejected/pending excluded."""
        async with self._db.session() as session:
            statement = await _scope_statement(
                session, select(Subscription), application_id.strip(), subscription_id.strip()
            )
            return list((await session.exec(statement)).all())

    async def period_usage(
        self, period: Period, application_id: str = "", subscription_id: str = ""
    ) -> list[UsageRow]:
        """One SQL aggregate: usage per (subscription, plan) in `period`."""
        async with self._db.session() as session:
            return await aggregate(session, period, application_id.strip(), subscription_id.strip())
