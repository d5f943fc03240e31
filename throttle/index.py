"""The throttle's in-memory view of plans, subscriptions and shared traffic limits. ShouldRateLimit never
touches the database: it reads the current ThrottleSnapshot.

The index follows the change log (tollway/changes.py) for its topics. A full load (at start, or after
the log was pruned past its position) streams subscriptions in chunks, yielding to the event loop
between them, and swaps a complete snapshot in. A change re-reads only the rows it names (batched
`IN (...)` queries), then applies them all at once without an await in between and publishes a new
snapshot object, so a request sees an entity's old or new state, never half of one, and the service's
per-snapshot window cache starts afresh. The cost of a change is proportional to the rows it touched,
not to the number of subscriptions.

Memory: one plain tuple per subscription (about 290 bytes with its id strings and dict entry, measured
at 100,000), which the garbage collector stops tracking; the ids repeated across subscriptions (plan,
API, application, state) are interned, so a million subscriptions share a handful of plan id strings."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, overload

from sqlmodel import col, select
from sqlmodel.sql.expression import Select

from throttle.limits import SharedLimits
from tollway import schema
from tollway.catalog.limits import PlanLimits
from tollway.change_log import Change, Topic
from tollway.db import Database
from tollway.vocabulary import SHARED_LIMIT_SCOPES, LimitScope

log = logging.getLogger(__name__)

# Subscriptions per query during a full load; the loop runs other work between chunks.
LOAD_CHUNK = 2000
# Ids per `IN (...)` when re-reading changed rows (well under SQLite's bound on parameters).
IN_BATCH = 500


class SubscriptionInfo(NamedTuple):
    """One subscription as the throttle needs it."""

    id: str
    plan_id: str
    application_id: str
    api_id: str
    state: str
    billing_anchor_day: int = 0


_T = TypeVar("_T")
# A SubscriptionInfo's fields as a plain tuple.
SubscriptionRow = tuple[str, str, str, str, str, int]


class SubscriptionTable(Mapping[str, SubscriptionInfo]):
    """Subscriptions by id, held as plain tuples of strings and an int, made into a SubscriptionInfo
    when read. The garbage collector stops tracking such tuples, so a million of them cost its full
    collections nothing; as slotted records (or named tuples) they made each full collection take
    160-200 ms at 100,000 subscriptions, a pause every request waits out."""

    __slots__ = ("_rows",)

    def __init__(self, rows: dict[str, SubscriptionRow] | None = None) -> None:
        self._rows: dict[str, SubscriptionRow] = rows if rows is not None else {}

    def __getitem__(self, subscription_id: str) -> SubscriptionInfo:
        return SubscriptionInfo._make(self._rows[subscription_id])

    @overload
    def get(self, subscription_id: str, /) -> SubscriptionInfo | None: ...
    @overload
    def get(self, subscription_id: str, default: SubscriptionInfo | _T, /) -> SubscriptionInfo | _T: ...
    def get(self, subscription_id: str, default: object = None, /) -> object:
        # Without the KeyError the inherited get raises and catches for an unknown id.
        row = self._rows.get(subscription_id)
        return default if row is None else SubscriptionInfo._make(row)

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self) -> Mapping[str, SubscriptionRow]:
        """The stored tuples (compare two tables with it)."""
        return self._rows

    def put(self, row: SubscriptionRow) -> None:
        self._rows[row[0]] = row

    def discard(self, subscription_id: str) -> None:
        self._rows.pop(subscription_id, None)


class ThrottleSnapshot:
    """What ShouldRateLimit reads. The index publishes a new snapshot object for every change it applies
    (a full load: new mappings; a change: the same mappings, updated between two awaits), so readers
    can tell by identity that something changed."""

    __slots__ = ("api_limits", "application_limits", "loaded", "plans", "subscriptions")

    def __init__(
        self,
        loaded: bool = False,
        plans: dict[str, PlanLimits] | None = None,
        subscriptions: SubscriptionTable | None = None,
        api_limits: dict[str, SharedLimits] | None = None,
        application_limits: dict[str, SharedLimits] | None = None,
    ) -> None:
        self.loaded = loaded
        # By plan id.
        self.plans: dict[str, PlanLimits] = plans if plans is not None else {}
        # Every subscription, cancelled ones included (the quota RPC answers for them too).
        self.subscriptions = subscriptions if subscriptions is not None else SubscriptionTable()
        # Limits shared by an API's subscribers / an application's subscriptions, by API / application id.
        self.api_limits: dict[str, SharedLimits] = api_limits if api_limits is not None else {}
        self.application_limits: dict[str, SharedLimits] = (
            application_limits if application_limits is not None else {}
        )

    @classmethod
    def build(
        cls,
        plans: Mapping[str, PlanLimits] | None = None,
        subscriptions: Iterable[SubscriptionInfo] = (),
        shared: Iterable[SharedLimits] = (),
    ) -> ThrottleSnapshot:
        snapshot = cls(loaded=True, plans=dict(plans or {}))
        for info in subscriptions:
            snapshot.subscriptions.put(subscription_row(info))
        for limits in shared:
            snapshot.shared_by_scope(limits.scope)[limits.target_id] = limits
        return snapshot

    def republished(self) -> ThrottleSnapshot:
        """A new snapshot object over the same mappings."""
        return ThrottleSnapshot(
            self.loaded, self.plans, self.subscriptions, self.api_limits, self.application_limits
        )

    def shared_by_scope(self, scope: LimitScope) -> dict[str, SharedLimits]:
        return self.api_limits if scope == LimitScope.API else self.application_limits

    def shared_for(self, api_id: str, application_id: str) -> tuple[SharedLimits, ...]:
        found = (self.api_limits.get(api_id), self.application_limits.get(application_id))
        return tuple(limits for limits in found if limits is not None)

    def contents(self) -> tuple[object, ...]:
        """Everything the snapshot holds, comparable with `==` (two indexes agree)."""
        return (self.loaded, self.plans, self.subscriptions.rows(), self.api_limits, self.application_limits)


def subscription_row(fields: Sequence[Any]) -> SubscriptionRow:
    """A stored subscription from (id, plan, application, API, state, anchor day), the ids that many
    subscriptions share interned."""
    sub_id, plan_id, application_id, api_id, state, anchor = fields
    return (
        str(sub_id),
        sys.intern(str(plan_id)),
        sys.intern(str(application_id)),
        sys.intern(str(api_id)),
        sys.intern(str(state)),
        int(anchor or 0),
    )


def shared_limits(row: schema.TrafficLimit) -> SharedLimits:
    return SharedLimits(
        scope=LimitScope.from_stored(row.scope),
        target_id=sys.intern(row.target_id),
        per_second=row.requests_per_second,
        per_minute=row.requests_per_minute,
        per_hour=row.requests_per_hour,
        per_day=row.requests_per_day,
    )


def _subscription_columns() -> Select[str, str, str, str, str, int]:
    S = schema.Subscription
    # sqlmodel's select() is typed for at most four columns; for more, build the Select it would build.
    return Select(
        col(S.id),
        col(S.plan_id),
        col(S.application_id),
        col(S.api_id),
        col(S.state),
        col(S.billing_anchor_day),
    )


def _batches(ids: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), IN_BATCH):
        yield ordered[start : start + IN_BATCH]


async def load_snapshot(db: Database) -> ThrottleSnapshot:
    """A full snapshot, read in chunks with a yield to the event loop after each."""
    async with db.session() as session:
        plans = {
            sys.intern(row.id): PlanLimits.from_row(row) for row in await session.exec(select(schema.Plan))
        }
    snapshot = ThrottleSnapshot(loaded=True, plans=plans, subscriptions=await _load_subscriptions(db))
    for scope in SHARED_LIMIT_SCOPES:
        by_target = snapshot.shared_by_scope(LimitScope.from_stored(scope))
        by_target.update(await _load_shared_limits(db, scope))
    return snapshot


async def _load_subscriptions(db: Database) -> SubscriptionTable:
    S = schema.Subscription
    subscriptions = SubscriptionTable()
    after = ""
    while True:
        # Core rows, not ORM entities: a chunk is converted in a few milliseconds.
        async with db.engine.connect() as connection:
            statement = _subscription_columns().where(col(S.id) > after).order_by(col(S.id)).limit(LOAD_CHUNK)
            rows = (await connection.execute(statement)).all()
        for row in rows:
            subscriptions.put(subscription_row(row))
        if len(rows) < LOAD_CHUNK:
            return subscriptions
        after = rows[-1][0]
        await asyncio.sleep(0)


async def _load_shared_limits(db: Database, scope: str) -> dict[str, SharedLimits]:
    """One scope's traffic limits (there can be one per application), by target id, in chunks."""
    T = schema.TrafficLimit
    by_target: dict[str, SharedLimits] = {}
    after = ""
    while True:
        async with db.session() as session:
            statement = (
                select(T)
                .where(col(T.scope) == scope, col(T.target_id) > after)
                .order_by(col(T.target_id))
                .limit(LOAD_CHUNK)
            )
            rows = (await session.exec(statement)).all()
        for row in rows:
            limits = shared_limits(row)
            by_target[limits.target_id] = limits
        if len(rows) < LOAD_CHUNK:
            return by_target
        after = rows[-1].target_id
        await asyncio.sleep(0)


@dataclass
class _Reread:
    """The current rows of the entities a batch of changes names; an id without a row was deleted."""

    plans: dict[str, PlanLimits | None]
    subscriptions: dict[str, SubscriptionRow | None]
    # (stored scope, target id) → limits
    traffic_limits: dict[tuple[str, str], SharedLimits | None]


async def _reread(db: Database, changes: Sequence[Change]) -> _Reread:
    plan_ids = {c.entity_id for c in changes if c.topic == Topic.PLANS}
    subscription_ids = {c.entity_id for c in changes if c.topic == Topic.SUBSCRIPTIONS}
    limit_keys: set[tuple[str, str]] = set()
    for change in changes:
        if change.topic == Topic.TRAFFIC_LIMITS:
            scope, _, target_id = change.entity_id.partition(":")
            limit_keys.add((scope, target_id))
    found = _Reread(
        plans=dict.fromkeys(plan_ids),
        subscriptions=dict.fromkeys(subscription_ids),
        traffic_limits=dict.fromkeys(limit_keys),
    )
    P, S, T = schema.Plan, schema.Subscription, schema.TrafficLimit
    async with db.session() as session:
        for ids in _batches(plan_ids):
            for plan in await session.exec(select(P).where(col(P.id).in_(ids))):
                found.plans[plan.id] = PlanLimits.from_row(plan)
        for ids in _batches(subscription_ids):
            for fields in await session.exec(_subscription_columns().where(col(S.id).in_(ids))):
                row = subscription_row(fields)
                found.subscriptions[row[0]] = row
        for scope in {scope for scope, _ in limit_keys}:
            targets = [target for stored, target in limit_keys if stored == scope]
            for ids in _batches(targets):
                statement = select(T).where(col(T.scope) == scope, col(T.target_id).in_(ids))
                for limit in await session.exec(statement):
                    found.traffic_limits[(limit.scope, limit.target_id)] = shared_limits(limit)
    return found


class ThrottleIndex:
    """Holds the current snapshot; a ChangeListener (tollway/changes.py) of plans, subscriptions and
    traffic limits."""

    name = "throttle"
    topics = frozenset({Topic.PLANS, Topic.SUBSCRIPTIONS, Topic.TRAFFIC_LIMITS})

    def __init__(self, db: Database | None = None, snapshot: ThrottleSnapshot | None = None) -> None:
        self._db = db
        self.snapshot = snapshot or ThrottleSnapshot()
        # A full load and a change never interleave their swaps.
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        """True once a full load completed (health says SERVING from then on)."""
        return self.snapshot.loaded

    @property
    def db(self) -> Database | None:
        """The database the index loads from (None: a snapshot given by hand)."""
        return self._db

    async def load_all(self) -> None:
        """On failure the old snapshot stays and the error propagates, so the change feed retries."""
        if self._db is None:
            return
        async with self._lock:
            try:
                snapshot = await load_snapshot(self._db)
            except Exception as exc:
                log.warning("throttle snapshot load failed (%s); keeping the last one", type(exc).__name__)
                raise
            self.snapshot = snapshot
        log.debug(
            "throttle snapshot: %d plans, %d subscriptions", len(snapshot.plans), len(snapshot.subscriptions)
        )

    # Loads in full (tests and tools call it by this name).
    reload = load_all

    async def apply(self, changes: Sequence[Change]) -> None:
        """Re-reads the changed rows, then applies them together between two awaits."""
        if self._db is None or not changes:
            return
        async with self._lock:
            found = await _reread(self._db, changes)
            current = self.snapshot
            # From here to the swap: no await, so no request runs in between.
            for plan_id, plan in found.plans.items():
                if plan is None:
                    current.plans.pop(plan_id, None)
                else:
                    current.plans[sys.intern(plan_id)] = plan
            for subscription_id, row in found.subscriptions.items():
                if row is None:
                    current.subscriptions.discard(subscription_id)
                else:
                    current.subscriptions.put(row)
            for (scope, target_id), limits in found.traffic_limits.items():
                try:
                    by_target = current.shared_by_scope(LimitScope.from_stored(scope))
                except ValueError:
                    continue  # not a scope this index holds
                if limits is None:
                    by_target.pop(target_id, None)
                else:
                    by_target[limits.target_id] = limits
            self.snapshot = current.republished()
