"""The gateway's in-memory view of keys, subscriptions and blocking rules.

Check never touches the database: it reads an immutable `KeySnapshot`, which `KeyIndex.reload` rebuilds
in one read whenever the change feed reports a committed change, and swaps in atomically.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from tollway import schema
from tollway.db import Database
from tollway.vocabulary import BlockTarget

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A failed snapshot read is retried this often when writes keep landing between its statements
# (SQLite only: PostgreSQL reads under one REPEATABLE READ snapshot).
_LOAD_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ApiEntry:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class PlanEntry:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ApplicationEntry:
    id: str
    name: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class SubscriptionEntry:
    id: str
    application_id: str
    api_id: str
    plan_id: str
    state: str


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key_id: str
    application_id: str
    key_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        # Any revocation time counts, even one ahead of this replica's clock: revocation is immediate.
        return self.revoked_at is not None


def _frozen(mapping: dict[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(mapping)


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    """Everything a Check needs, as of one change revision. Never mutated after construction."""

    revision: int = -1
    # False only for the placeholder a KeyIndex holds before its first load.
    loaded: bool = False
    keys: Mapping[str, KeyEntry] = field(default_factory=lambda: _frozen({}))
    # Published APIs only: an unpublished API is unknown to the gateway.
    apis: Mapping[str, ApiEntry] = field(default_factory=lambda: _frozen({}))
    plans: Mapping[str, PlanEntry] = field(default_factory=lambda: _frozen({}))
    applications: Mapping[str, ApplicationEntry] = field(default_factory=lambda: _frozen({}))
    # Live subscriptions (ACTIVE, PENDING_APPROVAL, BLOCKED, SUSPENDED) by (application_id, api_id).
    subscriptions: Mapping[tuple[str, str], SubscriptionEntry] = field(default_factory=lambda: _frozen({}))
    blocked_api_ids: frozenset[str] = frozenset()
    blocked_application_ids: frozenset[str] = frozenset()
    blocked_key_ids: frozenset[str] = frozenset()
    blocked_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        revision: int = 0,
        keys: list[KeyEntry] | tuple[KeyEntry, ...] = (),
        apis: list[ApiEntry] | tuple[ApiEntry, ...] = (),
        plans: list[PlanEntry] | tuple[PlanEntry, ...] = (),
        applications: list[ApplicationEntry] | tuple[ApplicationEntry, ...] = (),
        subscriptions: list[SubscriptionEntry] | tuple[SubscriptionEntry, ...] = (),
        blocked_api_ids: frozenset[str] | set[str] = frozenset(),
        blocked_application_ids: frozenset[str] | set[str] = frozenset(),
        blocked_key_ids: frozenset[str] | set[str] = frozenset(),
        blocked_networks: tuple[IPNetwork, ...] | list[IPNetwork] = (),
    ) -> KeySnapshot:
        """A loaded snapshot from plain lists (used by load_snapshot and by tests)."""
        return cls(
            revision=revision,
            loaded=True,
            keys=_frozen({k.key_id: k for k in keys}),
            apis=_frozen({a.id: a for a in apis}),
            plans=_frozen({p.id: p for p in plans}),
            applications=_frozen({a.id: a for a in applications}),
            subscriptions=_frozen({(s.application_id, s.api_id): s for s in subscriptions}),
            blocked_api_ids=frozenset(blocked_api_ids),
            blocked_application_ids=frozenset(blocked_application_ids),
            blocked_key_ids=frozenset(blocked_key_ids),
            blocked_networks=tuple(blocked_networks),
        )

    def client_blocked(self, client_ip: str) -> bool:
        if not self.blocked_networks or not client_ip:
            return False
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        # A v4 client seen on a dual-stack socket arrives as ::ffff:a.b.c.d; v4 rules must still match.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.blocked_networks)


EMPTY_SNAPSHOT = KeySnapshot()


async def _revision(session: AsyncSession) -> int:
    result = await session.exec(select(schema.ChangeRevision.value).where(schema.ChangeRevision.id == 1))
    return int(result.one_or_none() or 0)


async def _read(session: AsyncSession, revision: int) -> KeySnapshot:
    K = schema.ApiKey
    # sqlmodel's select() is typed for at most four columns; for more, build the Select it would build.
    key_columns: Select[str, str, str, datetime | None, datetime | None] = Select(
        col(K.key_id), col(K.application_id), col(K.key_hash), col(K.expires_at), col(K.revoked_at)
    )
    keys = [
        KeyEntry(
            key_id=row[0],
            application_id=row[1],
            key_hash=row[2],
            expires_at=schema.as_utc(row[3]),
            revoked_at=schema.as_utc(row[4]),
        )
        for row in await session.exec(key_columns)
    ]
    A = schema.Api
    apis = [
        ApiEntry(id=row[0], name=row[1])
        for row in await session.exec(select(A.id, A.name).where(col(A.published).is_(True)))
    ]
    P = schema.Plan
    plans = [PlanEntry(id=row[0], name=row[1]) for row in await session.exec(select(P.id, P.name))]
    App = schema.Application
    applications = [
        ApplicationEntry(id=row[0], name=row[1], deleted=row[2] is not None)
        for row in await session.exec(select(App.id, App.name, App.deleted_at))
    ]
    S = schema.Subscription
    subscription_columns: Select[str, str, str, str, str] = Select(
        col(S.id), col(S.application_id), col(S.api_id), col(S.plan_id), col(S.state)
    )
    subscriptions = [
        SubscriptionEntry(id=row[0], application_id=row[1], api_id=row[2], plan_id=row[3], state=row[4])
        for row in await session.exec(
            subscription_columns.where(col(S.state).in_(schema.LIVE_SUBSCRIPTION_STATES))
        )
    ]
    # Id targets; CLIENT_CIDR rules become networks below.
    blocked: dict[str, set[str]] = {
        target: set() for target in BlockTarget if target != BlockTarget.CLIENT_CIDR
    }
    networks: list[IPNetwork] = []
    B = schema.BlockRule
    for rule_id, target, value in await session.exec(select(B.id, B.target, B.value)):
        if target == BlockTarget.CLIENT_CIDR:
            try:
                networks.append(ipaddress.ip_network(value.strip(), strict=False))
            except ValueError:
                # The store validates CIDRs; a bad row must not stop the gateway from loading.
                log.warning("ignoring block rule %s: invalid CIDR", rule_id)
        elif target in blocked:
            blocked[target].add(value)
        else:
            log.warning("ignoring block rule %s: unknown target %r", rule_id, target)
    return KeySnapshot.build(
        revision=revision,
        keys=keys,
        apis=apis,
        plans=plans,
        applications=applications,
        subscriptions=subscriptions,
        blocked_api_ids=blocked[BlockTarget.API],
        blocked_application_ids=blocked[BlockTarget.APPLICATION],
        blocked_key_ids=blocked[BlockTarget.API_KEY],
        blocked_networks=networks,
    )


async def load_snapshot(db: Database) -> KeySnapshot:
    """Reads keys, published APIs, plans, applications, live subscriptions and block rules as of one
    committed state of the database."""
    snapshot = EMPTY_SNAPSHOT
    for _ in range(_LOAD_ATTEMPTS):
        async with db.session() as session:
            if db.is_postgres:
                # All statements below then see one MVCC snapshot.
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            before = await _revision(session)
            snapshot = await _read(session, before)
            # SQLite (no BEGIN before SELECT in pysqlite) reads each statement separately: a revision
            # that moved means a write landed in between, so read again.
            after = before if db.is_postgres else await _revision(session)
            await session.rollback()
        if after == before:
            return snapshot
    # Still moving: serve this one; the change feed sees the newer revision and reloads again.
    log.info("key snapshot read raced with writes %d times; using the latest read", _LOAD_ATTEMPTS)
    return snapshot


class KeyIndex:
    """Holds the current snapshot. Pass `reload` to `ChangeFeed.subscribe`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._snapshot: KeySnapshot = EMPTY_SNAPSHOT
        self._lock = asyncio.Lock()

    @property
    def snapshot(self) -> KeySnapshot:
        return self._snapshot

    @property
    def ready(self) -> bool:
        """True once a snapshot was loaded (the health service can report SERVING from then on)."""
        return self._snapshot.loaded

    async def reload(self) -> None:
        """Loads a fresh snapshot and swaps it in. On failure the old snapshot stays and the error is
        re-raised, so the change feed does not advance its revision and retries."""
        async with self._lock:
            try:
                snapshot = await load_snapshot(self._db)
            except Exception as exc:
                log.warning(
                    "key snapshot reload failed (%s); keeping revision %d",
                    type(exc).__name__,
                    self._snapshot.revision,
                )
                raise
            # The lock orders reloads, so the one that finishes last read the latest state.
            self._snapshot = snapshot
            log.debug(
                "key snapshot at revision %d: %d keys, %d APIs, %d subscriptions",
                snapshot.revision,
                len(snapshot.keys),
                len(snapshot.apis),
                len(snapshot.subscriptions),
            )
