"""The change log: every committed write says, in its own transaction, which entities it changed.

Replicas keep in-memory indexes (keymgr's keys, the throttle's plans, xds's catalog) and follow the log
by sequence number, applying only the entities that changed: the cost of a change is proportional to
what it touched, never to the number of keys. Writers do nothing special: a session hook turns every
ORM insert, update and delete of a tracked table into a `change_log` row (topic, entity id, operation)
in the same flush, so no write path can forget to record itself. Sequence numbers follow commit order
because every such transaction first bumps the `change_revision` row (`Database.record_change`),
whose lock orders the writers until they commit.

Listeners re-read an entity's current row when they apply its change, so applying a change twice, or
one already reflected by a full load, is harmless; the operation is informational.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import event, text, update
from sqlalchemy.orm import Session, UOWTransaction

from tollway import schema, schema_billing


class Topic(StrEnum):
    """What changed; each component follows the topics its index is built from."""

    APIS = "apis"
    PLANS = "plans"
    APPLICATIONS = "applications"
    SUBSCRIPTIONS = "subscriptions"
    KEYS = "keys"
    BLOCK_RULES = "block_rules"
    TRAFFIC_LIMITS = "traffic_limits"
    # billing/'s word to the gateway: credit standing and spend caps (schema_billing.BillingGate).
    BILLING_GATES = "billing_gates"


class Op(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    topic: Topic
    entity_id: str
    op: Op
    # When the writer logged it (its transaction's time, UTC): the change-propagation lag's start.
    at: datetime | None = None


def traffic_limit_id(scope: str, target_id: str) -> str:
    """A traffic limit's entity id in the log (its key is two columns)."""
    return f"{scope}:{target_id}"


# Tracked tables: their topic and how to name the changed entity.
_TRACKED: dict[type[Any], tuple[Topic, Callable[[Any], str]]] = {
    schema.Api: (Topic.APIS, lambda row: row.id),
    # An API's offered plans are part of the API.
    schema.ApiPlan: (Topic.APIS, lambda row: row.api_id),
    schema.Plan: (Topic.PLANS, lambda row: row.id),
    schema.Application: (Topic.APPLICATIONS, lambda row: row.id),
    schema.Subscription: (Topic.SUBSCRIPTIONS, lambda row: row.id),
    schema.ApiKey: (Topic.KEYS, lambda row: row.key_id),
    schema.BlockRule: (Topic.BLOCK_RULES, lambda row: row.id),
    schema.TrafficLimit: (Topic.TRAFFIC_LIMITS, lambda row: traffic_limit_id(row.scope, row.target_id)),
    schema_billing.BillingGate: (Topic.BILLING_GATES, lambda row: row.id),
}

# session.info keys: the (topic, entity, op) already logged in this transaction, the rows added by the
# current flush (for NOTIFY), and the channel to notify on (PostgreSQL only).
_LOGGED = "tollway_change_log_logged"
_BUMPED = "tollway_change_log_bumped"
_FLUSHED = "tollway_change_log_flushed"
NOTIFY_CHANNEL_INFO = "tollway_notify_channel"


def _changed_rows(session: Session) -> list[tuple[Any, Op]]:
    rows: list[tuple[Any, Op]] = [(row, Op.UPSERT) for row in session.new]
    rows += [(row, Op.UPSERT) for row in session.dirty if session.is_modified(row)]
    rows += [(row, Op.DELETE) for row in session.deleted]
    return rows


def bump_revision(session: Session) -> None:
    """Bumps the change revision once per transaction. Its row lock (SQLite: the write lock) is then
    held until commit, so writers that change tracked rows are ordered and their change-log sequence
    numbers follow commit order."""
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(_BUMPED) is transaction:
        return
    # No autoflush: a flush now would log its changes (and come back here) before the lock is taken.
    with session.no_autoflush:
        session.execute(
            update(schema.ChangeRevision)
            .where(schema.ChangeRevision.id == 1)  # type: ignore[arg-type]
            .values(value=schema.ChangeRevision.value + 1)
        )
    session.info[_BUMPED] = session.get_transaction()


def _before_flush(session: Session, _context: UOWTransaction, _instances: object) -> None:
    transaction = session.get_transaction()
    logged: tuple[object, set[tuple[str, str, str]]] | None = session.info.get(_LOGGED)
    if logged is None or logged[0] is not transaction:
        logged = (transaction, set())
        session.info[_LOGGED] = logged
    added: list[schema.ChangeLogEntry] = []
    for row, op in _changed_rows(session):
        tracked = _TRACKED.get(type(row))
        if tracked is None:
            continue
        topic, entity_of = tracked
        key = (topic.value, entity_of(row), op.value)
        if key in logged[1]:
            continue
        logged[1].add(key)
        # A writer that did not take the lock first takes it now, before any sequence number is drawn.
        bump_revision(session)
        entry = schema.ChangeLogEntry(topic=key[0], entity_id=key[1], op=key[2])
        session.add(entry)
        added.append(entry)
    if added:
        session.info[_FLUSHED] = added


def _after_flush(session: Session, _context: UOWTransaction) -> None:
    added: list[schema.ChangeLogEntry] | None = session.info.pop(_FLUSHED, None)
    channel = session.info.get(NOTIFY_CHANNEL_INFO)
    if not added or not channel:
        return
    # Delivered at commit (and dropped on rollback), carrying the newest sequence number.
    newest = max(entry.seq or 0 for entry in added)
    session.execute(text("SELECT pg_notify(:channel, :seq)"), {"channel": channel, "seq": str(newest)})


def install(session_class: type[Session]) -> None:
    """Records changes for every session of `session_class` (idempotent)."""
    if not event.contains(session_class, "before_flush", _before_flush):
        event.listen(session_class, "before_flush", _before_flush)
        event.listen(session_class, "after_flush_postexec", _after_flush)


def change_of(row: schema.ChangeLogEntry) -> Change:
    assert row.seq is not None
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)  # SQLite: naive UTC
    return Change(row.seq, Topic(row.topic), row.entity_id, Op(row.op), at)
