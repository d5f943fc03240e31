"""The throttle's in-memory view of plans and subscriptions. ShouldRateLimit never touches the database:
it reads an immutable ThrottleSnapshot, rebuilt on every change the ChangeFeed reports and swapped in
atomically, so a plan change applies from the next request on every replica."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlmodel import col, select
from sqlmodel.sql.expression import Select

from throttle.limits import SharedLimits
from tollway import schema
from tollway.catalog.limits import PlanLimits
from tollway.db import Database
from tollway.vocabulary import LimitScope

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    id: str
    plan_id: str
    application_id: str
    api_id: str
    state: str
    billing_anchor_day: int = 0


@dataclass(frozen=True, slots=True)
class ThrottleSnapshot:
    loaded: bool = False
    # By plan id.
    plans: Mapping[str, PlanLimits] = field(default_factory=lambda: MappingProxyType({}))
    # Every subscription, cancelled ones included (the quota RPC answers for them too).
    subscriptions: Mapping[str, SubscriptionInfo] = field(default_factory=lambda: MappingProxyType({}))
    # Limits shared by an API's subscribers / an application's subscriptions, by API / application id.
    api_limits: Mapping[str, SharedLimits] = field(default_factory=lambda: MappingProxyType({}))
    application_limits: Mapping[str, SharedLimits] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls,
        plans: Mapping[str, PlanLimits] | None = None,
        subscriptions: Iterable[SubscriptionInfo] = (),
        shared: Iterable[SharedLimits] = (),
    ) -> ThrottleSnapshot:
        shared = list(shared)
        return cls(
            loaded=True,
            plans=MappingProxyType(dict(plans or {})),
            subscriptions=MappingProxyType({s.id: s for s in subscriptions}),
            api_limits=MappingProxyType({s.target_id: s for s in shared if s.scope == LimitScope.API}),
            application_limits=MappingProxyType(
                {s.target_id: s for s in shared if s.scope == LimitScope.APPLICATION}
            ),
        )

    def shared_for(self, api_id: str, application_id: str) -> tuple[SharedLimits, ...]:
        found = (self.api_limits.get(api_id), self.application_limits.get(application_id))
        return tuple(limits for limits in found if limits is not None)


async def load_snapshot(db: Database) -> ThrottleSnapshot:
    async with db.session() as session:
        plans = {row.id: PlanLimits.from_row(row) for row in await session.exec(select(schema.Plan))}
        S = schema.Subscription
        # sqlmodel's select() is typed for at most four columns; for more, build the Select it would build.
        columns: Select[str, str, str, str, str, int] = Select(
            col(S.id),
            col(S.plan_id),
            col(S.application_id),
            col(S.api_id),
            col(S.state),
            col(S.billing_anchor_day),
        )
        subscriptions = [
            SubscriptionInfo(
                id=row[0],
                plan_id=row[1],
                application_id=row[2],
                api_id=row[3],
                state=row[4],
                billing_anchor_day=int(row[5] or 0),
            )
            for row in await session.exec(columns)
        ]
        shared = [shared_limits(row) for row in await session.exec(select(schema.TrafficLimit))]
    return ThrottleSnapshot.build(plans, subscriptions, shared)


def shared_limits(row: schema.TrafficLimit) -> SharedLimits:
    return SharedLimits(
        scope=LimitScope.from_stored(row.scope),
        target_id=row.target_id,
        per_second=row.requests_per_second,
        per_minute=row.requests_per_minute,
        per_hour=row.requests_per_hour,
        per_day=row.requests_per_day,
    )


class ThrottleIndex:
    """Holds the current snapshot. Pass `reload` to `ChangeFeed.subscribe`."""

    def __init__(self, db: Database | None = None, snapshot: ThrottleSnapshot | None = None) -> None:
        self._db = db
        self.snapshot = snapshot or ThrottleSnapshot()
        self._lock = asyncio.Lock()

    async def reload(self) -> None:
        """On failure the old snapshot stays and the error propagates, so the change feed retries."""
        if self._db is None:
            return
        async with self._lock:
            try:
                snapshot = await load_snapshot(self._db)
            except Exception as exc:
                log.warning("throttle snapshot reload failed (%s); keeping the last one", type(exc).__name__)
                raise
            self.snapshot = snapshot
            log.debug(
                "throttle snapshot: %d plans, %d subscriptions",
                len(snapshot.plans),
                len(snapshot.subscriptions),
            )
