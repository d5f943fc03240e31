"""The gateway's in-memory view of keys, subscriptions and blocking rules, kept current change by change.

Check never touches the database: it reads the `KeySnapshot` (keymgr/snapshot.py) a `KeyIndex` holds.
The index follows the change log as a `ChangeListener` (tollway/changes.py):

- `apply(changes)` re-reads only the changed entities' current rows (one `WHERE id IN (...)` query per
  topic and chunk), then applies them all synchronously, with no await in between, so a Check sees
  each entity either before or after a batch, never half of it. A missing row is a deletion. The work
  is proportional to the rows touched, never to the number of keys.
- `load_all()` streams every table in keyset-paginated chunks (`_CHUNK` rows per query), yielding to
  the event loop between chunks, builds a new snapshot off to the side and swaps it in whole. Before the
  first load Check answers UNAVAILABLE (503), never a 401 for a valid key; `ready` tells the health
  service when to report SERVING.

Consistency of a full load: on PostgreSQL every chunk is read under one REPEATABLE READ transaction,
so the load is one committed state. On SQLite each statement sees the latest commit, so a load that
races with writers may mix states of different entities; the change feed reads the log's head before
it calls `load_all` and then applies every change after that head, and applying re-reads current rows
(idempotent), so each raced entity is corrected within one feed round.

Memory: keymgr/snapshot.py's docstring has the measured bytes per key. A full load streams, so the rows
read are never all held at once; while a reload after a gap builds, old and new snapshots coexist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keymgr.entries import ApiEntry as ApiEntry
from keymgr.entries import ApplicationEntry as ApplicationEntry
from keymgr.entries import KeyEntry as KeyEntry
from keymgr.entries import PlanEntry as PlanEntry
from keymgr.entries import SubscriptionEntry as SubscriptionEntry
from keymgr.entries import micros
from keymgr.snapshot import EMPTY_SNAPSHOT as EMPTY_SNAPSHOT
from keymgr.snapshot import KeySnapshot as KeySnapshot
from tollway import schema
from tollway.change_log import Change, Topic
from tollway.db import Database
from tollway.schema_billing import BillingGate as _G

log = logging.getLogger(__name__)

# Rows per query of a full load; the hot path runs between chunks.
_CHUNK = 5000
# Ids per `IN (...)` when applying changes.
_IN_CHUNK = 500

TOPICS = frozenset(
    {
        Topic.KEYS,
        Topic.APPLICATIONS,
        Topic.SUBSCRIPTIONS,
        Topic.BLOCK_RULES,
        Topic.APIS,
        Topic.PLANS,
        Topic.BILLING_GATES,
    }
)
_LIVE_STATES = frozenset(schema.LIVE_SUBSCRIPTION_STATES)

# One table's columns for the index, its id column, and how a row changes a snapshot (None: row gone).
_Row = Any
_Apply = Callable[[KeySnapshot, str, _Row | None, dict[str, str]], None]


def _canonical(strings: dict[str, str], value: str) -> str:
    """One string object per distinct id or state, shared by every map that holds it."""
    return strings.setdefault(value, value)


def _apply_key(snapshot: KeySnapshot, key_id: str, row: _Row | None, strings: dict[str, str]) -> None:
    if row is None:
        snapshot.set_key(key_id, None)
        return
    key_id, application_id, key_hash, expires_at, revoked_at = row
    expires, revoked = micros(schema.as_utc(expires_at)), micros(schema.as_utc(revoked_at))
    snapshot.set_key(key_id, (application_id, key_hash, expires, revoked))


def _apply_application(snapshot: KeySnapshot, app_id: str, row: _Row | None, strings: dict[str, str]) -> None:
    snapshot.set_application(app_id if row is None else row[0], None if row is None else row[1] is not None)


def _apply_subscription(
    snapshot: KeySnapshot, sub_id: str, row: _Row | None, strings: dict[str, str]
) -> None:
    if row is None:
        snapshot.remove_subscription_by_id(sub_id)
        return
    sub_id, application_id, api_id, plan_id, state = row
    live = (sub_id, plan_id, state) if state in _LIVE_STATES else None
    snapshot.set_subscription(sub_id, (application_id, api_id), live)


def _apply_api(snapshot: KeySnapshot, api_id: str, row: _Row | None, strings: dict[str, str]) -> None:
    if row is None or not row[2]:
        snapshot.api_entries.pop(api_id, None)
        return
    snapshot.api_entries[row[0]] = ApiEntry(id=_canonical(strings, row[0]), name=row[1])


def _apply_plan(snapshot: KeySnapshot, plan_id: str, row: _Row | None, strings: dict[str, str]) -> None:
    if row is None:
        snapshot.plan_entries.pop(plan_id, None)
        return
    snapshot.plan_entries[row[0]] = PlanEntry(
        id=_canonical(strings, row[0]), name=row[1], prepaid=bool(row[2]), currency=row[3] or ""
    )


def _apply_gate(snapshot: KeySnapshot, gate_id: str, row: _Row | None, strings: dict[str, str]) -> None:
    if row is None:
        snapshot.set_gate(gate_id, None)
        return
    gate_id, reason, scope, target_id, currency, refused = row
    snapshot.set_gate(gate_id, (reason, scope, target_id, currency or "", bool(refused)))


def _apply_rule(snapshot: KeySnapshot, rule_id: str, row: _Row | None, strings: dict[str, str]) -> None:
    snapshot.set_rule(rule_id, None if row is None else (_canonical(strings, row[1]), row[2]))


_K, _App, _S, _A, _P, _B = (
    schema.ApiKey,
    schema.Application,
    schema.Subscription,
    schema.Api,
    schema.Plan,
    schema.BlockRule,
)
# Per topic: the id column, the columns read (the id first), and how a row is applied.
_TABLES: dict[Topic, tuple[Any, tuple[Any, ...], _Apply]] = {
    Topic.APIS: (col(_A.id), (col(_A.id), col(_A.name), col(_A.published)), _apply_api),
    Topic.PLANS: (col(_P.id), (col(_P.id), col(_P.name), col(_P.prepaid), col(_P.currency)), _apply_plan),
    Topic.APPLICATIONS: (col(_App.id), (col(_App.id), col(_App.deleted_at)), _apply_application),
    Topic.KEYS: (
        col(_K.key_id),
        (col(_K.key_id), col(_K.application_id), col(_K.key_hash), col(_K.expires_at), col(_K.revoked_at)),
        _apply_key,
    ),
    Topic.SUBSCRIPTIONS: (
        col(_S.id),
        (col(_S.id), col(_S.application_id), col(_S.api_id), col(_S.plan_id), col(_S.state)),
        _apply_subscription,
    ),
    Topic.BLOCK_RULES: (col(_B.id), (col(_B.id), col(_B.target), col(_B.value)), _apply_rule),
    Topic.BILLING_GATES: (
        col(_G.id),
        (col(_G.id), col(_G.reason), col(_G.scope), col(_G.target_id), col(_G.currency), col(_G.refused)),
        _apply_gate,
    ),
}
# Rows a full load skips (the index holds live subscriptions only).
_LOAD_FILTERS: dict[Topic, ColumnElement[bool]] = {
    Topic.SUBSCRIPTIONS: col(_S.state).in_(schema.LIVE_SUBSCRIPTION_STATES),
}


async def _chunks(session: AsyncSession, topic: Topic) -> AsyncIterator[Sequence[_Row]]:
    """Every row of a topic's table, `_CHUNK` at a time, by keyset pagination on its id."""
    id_column, columns, _ = _TABLES[topic]
    after: str | None = None
    while True:
        statement = select(*columns).order_by(id_column).limit(_CHUNK)
        if topic in _LOAD_FILTERS:
            statement = statement.where(_LOAD_FILTERS[topic])
        if after is not None:
            statement = statement.where(id_column > after)
        rows = (await session.exec(statement)).all()
        if rows:
            yield rows
        if len(rows) < _CHUNK:
            return
        after = rows[-1][0]


async def _revision(session: AsyncSession) -> int:
    result = await session.exec(select(schema.ChangeRevision.value).where(schema.ChangeRevision.id == 1))
    return int(result.one_or_none() or 0)


async def load_snapshot(db: Database) -> KeySnapshot:
    """Reads keys, published APIs, plans, applications, live subscriptions and block rules into a new
    snapshot, in chunks, yielding to the event loop between them."""
    strings: dict[str, str] = {}
    async with db.session() as session:
        if db.is_postgres:
            # Every chunk below then sees one MVCC snapshot.
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        snapshot = KeySnapshot(loaded=True, revision=await _revision(session))
        for topic, (_, _, apply_row) in _TABLES.items():
            async for rows in _chunks(session, topic):
                for row in rows:
                    apply_row(snapshot, row[0], row, strings)
                await asyncio.sleep(0)  # let Checks run between chunks
        await session.rollback()
    return snapshot


async def read_changed(db: Database, changes: Sequence[Change]) -> dict[Topic, dict[str, _Row | None]]:
    """The current row (None: gone) of every entity named in `changes`, per topic."""
    wanted: dict[Topic, dict[str, None]] = {}
    for change in changes:
        if change.topic in _TABLES:
            wanted.setdefault(change.topic, {})[change.entity_id] = None
    found: dict[Topic, dict[str, _Row | None]] = {}
    async with db.session() as session:
        if db.is_postgres:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        for topic, ids in wanted.items():
            id_column, columns, _ = _TABLES[topic]
            rows: dict[str, _Row | None] = dict.fromkeys(ids)
            id_list = list(ids)
            for start in range(0, len(id_list), _IN_CHUNK):
                statement = select(*columns).where(id_column.in_(id_list[start : start + _IN_CHUNK]))
                for row in (await session.exec(statement)).all():
                    rows[row[0]] = row
            found[topic] = rows
        await session.rollback()
    return found


class KeyIndex:
    """Holds the current snapshot; subscribe it to a `ChangeFeed` to keep it current."""

    name = "keymgr"
    topics = TOPICS

    def __init__(self, db: Database) -> None:
        self._db = db
        self._snapshot: KeySnapshot = EMPTY_SNAPSHOT
        # Orders loads and applies: an apply never lands on a snapshot a load is about to replace.
        self._lock = asyncio.Lock()

    @property
    def snapshot(self) -> KeySnapshot:
        return self._snapshot

    @property
    def ready(self) -> bool:
        """True once a full load completed (the health service can report SERVING from then on)."""
        return self._snapshot.loaded

    async def load_all(self) -> None:
        """Loads a fresh snapshot and swaps it in. On failure the old snapshot stays and the error is
        re-raised, so the change feed retries."""
        async with self._lock:
            started = asyncio.get_running_loop().time()
            try:
                snapshot = await load_snapshot(self._db)
            except Exception as exc:
                log.warning("key index load failed (%s); keeping the current one", type(exc).__name__)
                raise
            self._snapshot = snapshot
            log.info(
                "key index loaded in %.2fs: %d keys, %d applications, %d subscriptions, %d APIs",
                asyncio.get_running_loop().time() - started,
                len(snapshot.keys),
                len(snapshot.applications),
                len(snapshot.subscriptions),
                len(snapshot.api_entries),
            )

    async def reload(self) -> None:
        """The same as `load_all` (for callers that load once without a feed)."""
        await self.load_all()

    async def apply(self, changes: Sequence[Change]) -> None:
        """Re-reads the changed entities and applies them in one synchronous step."""
        async with self._lock:
            if not self._snapshot.loaded:
                return  # nothing to change yet: the first full load reads everything
            rows = await read_changed(self._db, changes)
            snapshot = self._snapshot
            strings: dict[str, str] = {}
            # No await from here on: Checks see the whole batch or none of it.
            for topic, entities in rows.items():
                apply_row = _TABLES[topic][2]
                for entity_id, row in entities.items():
                    apply_row(snapshot, entity_id, row, strings)
            snapshot.version += 1
