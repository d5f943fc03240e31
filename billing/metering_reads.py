"""What a metering round reads, in grouped queries: usage per (subscription, plan) for many
subscriptions at once (GROUP BY, as the invoice run reads it), the subscriptions to meter, their burn
marks and the QUOTA alerts already raised. Every list of ids is sent in chunks of `CHUNK`, so a round
over 100k subscriptions is a few dozen queries, never one per subscription (billing/metering.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, and_, literal, union_all
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import pricing as pr
from billing.alerts import QUOTA
from billing.credit import SUBSCRIPTION
from billing.invoice_engine import UsageRow
from billing.periods import Period
from billing.usage_queries import _UNBILLED_STATES, BILLING_GRANULARITY, _usage_sums, aggregate, chunks
from tollway.schema import Subscription, as_utc
from tollway.schema_billing import Alert, CreditBurnMark
from tollway.schema_usage import UsageWindow

CHUNK = 5000
# A trial cut sends three values per subscription: SQLite allows 32,766 per statement.
CUT_CHUNK = 1000
_STAMP = DateTime(timezone=True)

BurnKey = tuple[str, str, datetime]


async def live_subscriptions(
    session: AsyncSession, column: Any, values: Collection[str]
) -> list[Subscription]:
    """The billed (not rejected or pending) subscriptions whose `column` is one of `values`."""
    found: list[Subscription] = []
    live = col(Subscription.state).not_in(_UNBILLED_STATES)
    for chunk in chunks(sorted(values), CHUNK):
        found.extend((await session.exec(select(Subscription).where(live, col(column).in_(chunk)))).all())
    return found


async def usage_in(session: AsyncSession, period: Period, subscription_ids: Iterable[str]) -> list[UsageRow]:
    """Usage per (subscription, plan) in `period` of the given subscriptions: the invoice run's one
    grouped aggregate over the period, kept for the wanted subscriptions. Not filtered by id in SQL:
    usage_window's key leads with the window, so PostgreSQL (before 17) walks the period's index range
    once per listed id; a 5,000-id list took over the 5 s statement timeout on 960,000 rows."""
    wanted = set(subscription_ids)
    return [row for row in await aggregate(session, period) if row.subscription_id in wanted]


async def usage_after(
    session: AsyncSession, cuts: dict[tuple[str, Period], datetime]
) -> dict[tuple[str, Period], dict[str, pr.Usage]]:
    """For each (subscription, period) its usage per plan from its own cut instant to the period's end
    (what is charged after a free trial that ended mid-period). Each subscription has its own instant,
    so the instants travel as a derived table joined to the usage: one aggregate per chunk."""
    found: dict[tuple[str, Period], dict[str, pr.Usage]] = defaultdict(dict)
    items = sorted(cuts.items(), key=lambda item: (item[0][0], item[0][1].start))
    for chunk in chunks(items, CUT_CHUNK):
        cut = union_all(
            *(
                select(
                    literal(sub_id, String).label("subscription_id"),
                    literal(instant, _STAMP).label("cut_from"),
                    literal(period.end, _STAMP).label("cut_to"),
                )
                for (sub_id, period), instant in chunk
            )
        ).subquery("cut")
        statement = (
            select(UsageWindow.subscription_id, cut.c.cut_to, UsageWindow.plan_id, *_usage_sums())
            .join(
                cut,
                and_(
                    col(UsageWindow.subscription_id) == cut.c.subscription_id,
                    col(UsageWindow.window_start) >= cut.c.cut_from,
                    col(UsageWindow.window_start) < cut.c.cut_to,
                ),
            )
            .where(UsageWindow.granularity == BILLING_GRANULARITY)
            .group_by(col(UsageWindow.subscription_id), cut.c.cut_to, col(UsageWindow.plan_id))
        )
        periods = {(sub_id, period.end): period for (sub_id, period), _ in chunk}
        result: Any = await session.exec(statement)
        for row in result.all():
            period = periods[(row[0], as_utc(row[1]))]
            found[(row[0], period)][row[2]] = pr.Usage(*(int(v) for v in row[3:]))
    return dict(found)


async def burn_marks(session: AsyncSession, keys: Collection[BurnKey]) -> dict[BurnKey, CreditBurnMark]:
    """The burn marks of (subscription, plan, period start) keys, by key."""
    found: dict[BurnKey, CreditBurnMark] = {}
    wanted = set(keys)
    if not wanted:
        return found
    since = min(k[2] for k in wanted)
    for chunk in chunks(sorted({k[0] for k in wanted}), CHUNK):
        statement = select(CreditBurnMark).where(
            col(CreditBurnMark.subscription_id).in_(chunk), col(CreditBurnMark.period_start) >= since
        )
        for mark in (await session.exec(statement)).all():
            key = (mark.subscription_id, mark.plan_id, as_utc(mark.period_start))
            if key in wanted:
                found[key] = mark
    return found


async def quota_alerts_raised(session: AsyncSession, periods: Collection[str]) -> set[tuple[str, str, int]]:
    """(subscription id, period, threshold) of the QUOTA alerts already raised for these periods."""
    found: set[tuple[str, str, int]] = set()
    for chunk in chunks(sorted(periods), CHUNK):
        statement = select(Alert.target_id, Alert.period, Alert.threshold).where(
            Alert.scope == SUBSCRIPTION, Alert.kind == QUOTA, col(Alert.period).in_(chunk)
        )
        found.update((t, p, h) for t, p, h in (await session.exec(statement)).all())
    return found
