"""Plan versions in the catalog: a change of a plan's limits or pricing adds a version (tollway/catalog/
versions.py says when each applies); the plan row keeps the newest one's values, and no version is
ever rewritten. A plan stored before versions existed gets its version 1 from the row, as it was, on
its first versioned change.

When a new version starts: NEXT_PERIOD (the default) at each subscription's next period start;
INSTANT at a stated whole minute, not in the past (at most a year ahead), or at the next whole minute
when none is stated. Name, description and approval_required are not versioned: they change at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tollway import schema
from tollway.catalog.limits import PlanLimits
from tollway.catalog.pricing import PricingDraft
from tollway.catalog.versions import next_whole_minute
from tollway.errors import InvalidArgument
from tollway.vocabulary import VersionEffect

# How far ahead an INSTANT version may be scheduled.
MAX_SCHEDULE_AHEAD = timedelta(days=366)


def effective_instant(effect: VersionEffect, requested: datetime | None, now: datetime) -> datetime:
    """What a new version's `effective_at` is: the instant an INSTANT version starts, or (NEXT_PERIOD)
    the change's own time. Never in the past: a version does not apply retroactively."""
    if effect == VersionEffect.NEXT_PERIOD:
        if requested is not None:
            raise InvalidArgument(
                "effective_time is only for VERSION_EFFECT_INSTANT; a NEXT_PERIOD version starts at each "
                "subscription's next period"
            )
        return now
    earliest = next_whole_minute(now)
    if requested is None:
        return earliest
    requested = requested.astimezone(UTC) if requested.tzinfo else requested.replace(tzinfo=UTC)
    if requested.second or requested.microsecond:
        raise InvalidArgument(
            f"effective_time must be a whole minute (usage is metered per minute): {requested.isoformat()}"
        )
    if requested < earliest:
        raise InvalidArgument(
            f"effective_time {requested.isoformat()} is in the past: a plan version never applies "
            f"retroactively (the earliest is {earliest.isoformat()})"
        )
    if requested > now + MAX_SCHEDULE_AHEAD:
        raise InvalidArgument(f"effective_time may be at most {MAX_SCHEDULE_AHEAD.days} days ahead")
    return requested


def first_version(row: schema.Plan) -> schema.PlanVersion:
    """Version 1 of a plan as its row is now (in effect from the beginning)."""
    created = schema.as_utc(row.created_at) or schema.utcnow()
    return schema.PlanVersion(
        plan_id=row.id,
        version=1,
        effect=VersionEffect.INSTANT,
        effective_at=created,
        created_at=created,
        limits=PlanLimits.from_row(row).columns(),
        pricing=PricingDraft.from_columns(row).columns(),
    )


async def versions_of(session: AsyncSession, plan_id: str) -> list[schema.PlanVersion]:
    statement = (
        select(schema.PlanVersion)
        .where(schema.PlanVersion.plan_id == plan_id)
        .order_by(col(schema.PlanVersion.version))
    )
    return list((await session.exec(statement)).all())


async def add_version(
    session: AsyncSession,
    row: schema.Plan,
    limits: PlanLimits,
    pricing: PricingDraft,
    effect: VersionEffect,
    effective_at: datetime,
    now: datetime,
) -> schema.PlanVersion:
    """Adds the next version of the plan in `row` (still holding the current values) in the caller's
    transaction; the caller then writes the new values into the row."""
    current = max(row.version or 1, 1)
    if not await versions_of(session, row.id):
        first = first_version(row)
        first.version = current
        session.add(first)
    version = schema.PlanVersion(
        plan_id=row.id,
        version=current + 1,
        effect=effect,
        effective_at=effective_at,
        created_at=now,
        limits=limits.columns(),
        pricing=pricing.columns(),
    )
    session.add(version)
    row.version = current + 1
    return version
