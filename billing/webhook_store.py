"""Webhook endpoints, their deliveries and the delivery log in the database; and the two steps of
the deliverer that touch it: fan-out (an outbox event becomes one delivery per endpoint that wants it)
and the claim/record cycle of a delivery attempt.

Several billing replicas may deliver at once. A claim sets a lease (owner and expiry) on due rows in
one short transaction, picked with FOR UPDATE SKIP LOCKED on PostgreSQL and under SQLite's write lock
(taken first), so one replica at a time attempts a delivery; the HTTP call runs outside any
transaction; its result is recorded only by the lease's owner. A replica that dies mid-attempt leaves a
lease that expires, and the delivery is attempted again: delivery is at least once, and receivers
deduplicate by the event id."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.event_retention import check_replay
from billing.usage_queries import require
from billing.webhook_secrets import SecretBox
from billing.webhook_signing import (
    DESCRIPTION_MAX,
    new_secret,
    validate_event_types,
    validate_url,
    wants,
)
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound
from tollway.lifecycle import shown_ref
from tollway.schema import new_id, utcnow
from tollway.schema_billing import EventOutbox, WebhookAttempt, WebhookDelivery, WebhookEndpoint

ENDPOINTS_MAX = 100
PAGE_MAX = 100
FANOUT_BATCH = 200
ERROR_MAX = 300
DELIVERY_STATES = ("PENDING", "DELIVERED", "FAILED")
UNSIGNABLE = "signing secret cannot be decrypted (TOLLWAY_WEBHOOK_SECRET_KEY changed); recreate the endpoint"
log = logging.getLogger(__name__)


@dataclass
class DeliveryView:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt] = field(default_factory=list)


@dataclass(frozen=True)
class Claimed:
    """A delivery this replica holds the lease of, with what it needs to send it."""

    delivery_id: str
    attempt: int  # the number of the attempt about to be made
    endpoint_id: str
    url: str
    secret: str = field(repr=False)
    event: EventOutbox


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int  # 0: no HTTP answer
    error: str = ""
    response_prefix: str = ""

    @property
    def delivered(self) -> bool:
        return 200 <= self.status_code < 300


class WebhookStore:
    def __init__(self, db: Database, box: SecretBox, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._box = box
        self._clock = clock

    # --- endpoints (BillingService) ------------------------------------------------------------------

    async def create(
        self, url: str, event_types: Sequence[str], description: str
    ) -> tuple[WebhookEndpoint, str]:
        """A new ENABLED endpoint and its signing secret (returned this once, stored encrypted)."""
        url = validate_url(url)
        types = validate_event_types(event_types)
        description = description.strip()
        if len(description) > DESCRIPTION_MAX:
            raise InvalidArgument(f"description must be at most {DESCRIPTION_MAX} characters")
        secret = new_secret()
        async with self._db.session() as session:
            await self._write_lock(session)
            count = (await session.exec(select(func.count()).select_from(WebhookEndpoint))).one()
            if count >= ENDPOINTS_MAX:
                raise FailedPrecondition(f"at most {ENDPOINTS_MAX} webhook endpoints; delete one first")
            last = (await session.exec(select(func.max(EventOutbox.sequence)))).one()
            endpoint = WebhookEndpoint(
                id=new_id("whep"),
                url=url,
                description=description,
                event_types=types,
                secret_encrypted=self._box.seal(secret),
                from_sequence=int(last or 0),
                created_at=self._clock(),
            )
            session.add(endpoint)
            await session.commit()
        return endpoint, secret

    async def list_endpoints(self) -> list[WebhookEndpoint]:
        async with self._db.session() as session:
            statement = select(WebhookEndpoint).order_by(
                col(WebhookEndpoint.created_at), col(WebhookEndpoint.id)
            )
            return list((await session.exec(statement)).all())

    async def set_enabled(self, endpoint_id: str, enabled: bool) -> WebhookEndpoint:
        async with self._db.session() as session:
            endpoint = await self._endpoint(session, endpoint_id)
            endpoint.state = "ENABLED" if enabled else "DISABLED"
            endpoint.disabled_at = None if enabled else self._clock()
            session.add(endpoint)
            await session.commit()
            return endpoint

    async def delete(self, endpoint_id: str) -> None:
        async with self._db.session() as session:
            endpoint = await self._endpoint(session, endpoint_id)
            of_endpoint = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
            await session.exec(delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(of_endpoint)))
            await session.exec(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint.id))
            await session.delete(endpoint)
            await session.commit()

    async def deliveries(
        self, endpoint_id: str, limit: int = PAGE_MAX, state: str = ""
    ) -> list[DeliveryView]:
        """The endpoint's deliveries, newest event first, each with its attempts in order."""
        limit = min(limit or PAGE_MAX, PAGE_MAX)
        async with self._db.session() as session:
            endpoint = await self._endpoint(session, endpoint_id)
            statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
            if state:
                statement = statement.where(WebhookDelivery.state == state)
            statement = statement.order_by(col(WebhookDelivery.event_sequence).desc()).limit(limit)
            views = {row.id: DeliveryView(row) for row in (await session.exec(statement)).all()}
            if views:
                attempts = (
                    select(WebhookAttempt)
                    .where(col(WebhookAttempt.delivery_id).in_(list(views)))
                    .order_by(col(WebhookAttempt.delivery_id), col(WebhookAttempt.attempt))
                )
                for attempt in (await session.exec(attempts)).all():
                    views[attempt.delivery_id].attempts.append(attempt)
            return list(views.values())

    async def _endpoint(self, session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
        endpoint_id = require(endpoint_id, "id")
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            raise NotFound(f"webhook endpoint {shown_ref(endpoint_id)} not found")
        return endpoint

    # --- the deliverer ---------------------------------------------------------------------------------

    async def _write_lock(self, session: AsyncSession) -> None:
        """SQLite: take the database's write lock now, so the reads that follow see what no other
        writer can change before this transaction commits (PostgreSQL locks rows instead)."""
        if self._db.is_sqlite:
            await session.exec(text("UPDATE change_revision SET value = value WHERE id = 0"))  # type: ignore[call-overload]

    async def _any(self, session: AsyncSession, statement: Any) -> bool:
        """Whether `statement` finds a row, read without a lock; the caller then ends the read
        transaction (SQLite: a read cannot be upgraded to the write lock once another writer moved on)."""
        found = (await session.exec(statement.limit(1))).first() is not None
        await session.rollback()
        return found

    async def fan_out(self) -> int:
        """Turns outbox events not yet fanned out (oldest first, a batch) into deliveries, one per
        ENABLED endpoint that wants the type and was created before the event; returns how many events."""
        async with self._db.session() as session:
            statement = (
                select(EventOutbox)
                .where(col(EventOutbox.fanned_out) == False)  # noqa: E712
                .order_by(col(EventOutbox.sequence))
                .limit(FANOUT_BATCH)
            )
            if not await self._any(session, statement):
                return 0  # nothing to do: no lock taken (the usual idle round)
            await self._write_lock(session)
            if self._db.is_postgres:
                statement = statement.with_for_update(skip_locked=True)
            events = list((await session.exec(statement)).all())
            if not events:
                return 0
            enabled = select(WebhookEndpoint).where(WebhookEndpoint.state == "ENABLED")
            endpoints = list((await session.exec(enabled)).all())
            now = self._clock()
            for event in events:
                assert event.sequence is not None
                for endpoint in endpoints:
                    if event.sequence > endpoint.from_sequence and wants(endpoint.event_types, event.type):
                        session.add(
                            WebhookDelivery(
                                id=new_id("whdl", 16), endpoint_id=endpoint.id, event_sequence=event.sequence,
                                event_id=event.id, event_type=event.type, next_attempt_at=now,
                                created_at=now, updated_at=now,
                            )
                        )  # fmt: skip
                event.fanned_out = True
                session.add(event)
            await session.commit()
            return len(events)

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        """Leases up to `limit` due deliveries of enabled endpoints to `owner` and returns them."""
        now = self._clock()
        async with self._db.session() as session:
            lease_free = col(WebhookDelivery.lease_until).is_(None) | (col(WebhookDelivery.lease_until) < now)
            statement = (
                select(WebhookDelivery)
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
                .where(WebhookDelivery.state == "PENDING", col(WebhookDelivery.next_attempt_at) <= now)
                .where(lease_free, WebhookEndpoint.state == "ENABLED")
                .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.event_sequence))
                .limit(limit)
            )
            if not await self._any(session, statement):
                return []
            await self._write_lock(session)
            if self._db.is_postgres:
                statement = statement.with_for_update(of=WebhookDelivery, skip_locked=True)
            rows = list((await session.exec(statement)).all())
            if not rows:
                return []
            endpoint_ids = sorted({row.endpoint_id for row in rows})
            of_rows = select(WebhookEndpoint).where(col(WebhookEndpoint.id).in_(endpoint_ids))
            secrets: dict[str, str] = {}
            endpoints: dict[str, WebhookEndpoint] = {}
            for endpoint in (await session.exec(of_rows)).all():
                endpoints[endpoint.id] = endpoint
                try:
                    secrets[endpoint.id] = self._box.open(endpoint.secret_encrypted)
                except ValueError as exc:  # the key changed: these cannot be signed, ever
                    log.error("webhook endpoint %s: %s", endpoint.id, exc)
            until = now + timedelta(seconds=lease_seconds)
            for row in rows:
                if row.endpoint_id in secrets:
                    row.lease_owner, row.lease_until = owner, until
                else:
                    row.state, row.last_error, row.updated_at = "FAILED", UNSIGNABLE, now
                session.add(row)
            rows = [row for row in rows if row.endpoint_id in secrets]
            sequences = [row.event_sequence for row in rows]
            events = {
                e.sequence: e
                for e in (
                    await session.exec(select(EventOutbox).where(col(EventOutbox.sequence).in_(sequences)))
                )
            }
            await session.commit()
        return [
            Claimed(
                delivery_id=row.id,
                attempt=row.attempts + 1,
                endpoint_id=row.endpoint_id,
                url=endpoints[row.endpoint_id].url,
                secret=secrets[row.endpoint_id],
                event=events[row.event_sequence],
            )
            for row in rows
        ]

    async def record(
        self, owner: str, results: Sequence[tuple[Claimed, AttemptResult, float]], max_attempts: int
    ) -> list[str]:
        """Logs a batch of attempts (each with the retry delay to use if it failed) in one transaction
        and moves each delivery on: DELIVERED on 2xx, FAILED after the last attempt, else due again
        after its delay. Returns each delivery's state."""
        states: list[str] = []
        async with self._db.session() as session:
            now = self._clock()
            for claimed, result, retry_in in results:
                state = await self._record_one(session, owner, claimed, result, max_attempts, retry_in, now)
                states.append(state)
            await session.commit()
        return states

    async def _record_one(
        self, session: AsyncSession, owner: str, claimed: Claimed, result: AttemptResult,
        max_attempts: int, retry_in: float, now: datetime,
    ) -> str:  # fmt: skip
        row = await session.get(WebhookDelivery, claimed.delivery_id)
        if row is None:  # its endpoint was deleted meanwhile
            return "DELETED"
        session.add(
            WebhookAttempt(
                delivery_id=row.id, attempt=claimed.attempt, started_at=result.started_at,
                duration_ms=result.duration_ms, status_code=result.status_code,
                error=result.error[:ERROR_MAX], response_prefix=result.response_prefix,
            )
        )  # fmt: skip
        if row.state != "PENDING" or row.lease_owner != owner:
            # Another replica took the delivery over after this lease ended; it decides the state.
            return row.state
        row.attempts = claimed.attempt
        row.last_status_code = result.status_code
        row.last_error = result.error[:ERROR_MAX]
        row.lease_owner, row.lease_until = "", None
        row.updated_at = now
        if result.delivered:
            row.state, row.delivered_at = "DELIVERED", now
        elif row.attempts >= max_attempts:
            row.state = "FAILED"
        else:
            row.next_attempt_at = now + timedelta(seconds=retry_in)
        session.add(row)
        return row.state

    async def backlog(self) -> int:
        """Deliveries pending plus events not fanned out yet (both read through their indexes)."""
        async with self._db.session() as session:
            pending = (
                await session.exec(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(WebhookDelivery.state == "PENDING")
                )
            ).one()
            unfanned = (
                await session.exec(
                    select(func.count()).select_from(EventOutbox).where(col(EventOutbox.fanned_out) == False)  # noqa: E712
                )
            ).one()
        return int(pending) + int(unfanned)

    async def check_replay(self, from_sequence: int) -> None:
        """FAILED_PRECONDITION when events after `from_sequence` were removed by retention."""
        await check_replay(self._db, from_sequence)

    async def events_after(self, sequence: int, types: Sequence[str], limit: int) -> list[EventOutbox]:
        """Outbox events with a larger sequence, in order (StreamEvents)."""
        async with self._db.session() as session:
            statement = select(EventOutbox).where(col(EventOutbox.sequence) > sequence)
            if types:
                statement = statement.where(col(EventOutbox.type).in_(list(types)))
            statement = statement.order_by(col(EventOutbox.sequence)).limit(limit)
            return list((await session.exec(statement)).all())
