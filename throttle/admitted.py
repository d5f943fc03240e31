"""What the rate limiter admitted per subscription in a billing period, as usage/ metered it: the source
a lost billing-period counter is rebuilt from (throttle/rebuild.py). Read only during a rebuild, never
on the request path.

"Admitted" is every request the limiter let through: success (overage included), client_error and
upstream_fault, the classes billing's reconciliation compares with the limiter's own count. Periods
start at 00:00 UTC on some day, so a period's usage up to now is tiled by whole days (day windows),
today's whole hours (hour windows) and this hour's minutes (minute windows): three small aggregates,
the day one per distinct period start, whatever the number of subscriptions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, func, select

from tollway.db import Database
from tollway.schema_usage import UsageWindow

# Counted against the quota: every class the limiter admitted (not throttled, refused or fail-open).
ADMITTED_CLASSES = ("success", "client_error", "upstream_fault")


class AdmittedUsage(Protocol):
    async def admitted(
        self, period_starts: Iterable[datetime], now: datetime
    ) -> dict[datetime, dict[str, int]]:
        """Per period start (a UTC midnight not after `now`): admitted requests per subscription from
        that start on."""
        ...


class UsageWindowCounts:
    """AdmittedUsage from the usage summaries in the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def admitted(
        self, period_starts: Iterable[datetime], now: datetime
    ) -> dict[datetime, dict[str, int]]:
        table: Any = UsageWindow.__table__  # type: ignore[attr-defined]  # set by SQLModel
        admitted = sum((table.c[name] for name in ADMITTED_CLASSES[1:]), table.c[ADMITTED_CLASSES[0]])
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        hour = now.replace(minute=0, second=0, microsecond=0)

        async def per_subscription(granularity: str, start: datetime, end: datetime | None) -> dict[str, int]:
            conditions = [
                table.c.granularity == granularity,
                table.c.window_start >= start,
                table.c.subscription_id != "",
            ]
            if end is not None:
                conditions.append(table.c.window_start < end)
            statement = (
                select(table.c.subscription_id, func.sum(admitted))
                .where(and_(*conditions))
                .group_by(table.c.subscription_id)
            )
            async with self._db.engine.connect() as conn:
                rows = await conn.execute(statement)
                return {subscription_id: int(total or 0) for subscription_id, total in rows}

        # Today's whole hours and this hour's minutes (to the end: an entry may start a little ahead).
        recent: dict[str, int] = defaultdict(int)
        for counts in (
            await per_subscription("hour", today, hour),
            await per_subscription("minute", hour, None),
        ):
            for subscription_id, count in counts.items():
                recent[subscription_id] += count
        result: dict[datetime, dict[str, int]] = {}
        for start in set(period_starts):
            if start > today:
                raise ValueError(f"a billing period cannot start after today: {start.isoformat()}")
            totals = dict(recent)
            if start < today:
                for subscription_id, count in (await per_subscription("day", start, today)).items():
                    totals[subscription_id] = totals.get(subscription_id, 0) + count
            result[start] = totals
        return result
