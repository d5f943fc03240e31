"""Event outbox retention: without it the outbox grows by every event ever emitted. The billing process
prunes, every PRUNE_INTERVAL_SECONDS, events older than TOLLWAY_EVENT_RETENTION_DAYS whose webhook
deliveries are all settled (DELIVERED or FAILED, or there were none), in batches of PRUNE_BATCH.

Only a prefix of the outbox (by sequence) is removed: pruning stops at the first event that must stay
(too recent, not fanned out yet, or still being delivered), so the events kept are every event after a
watermark. The watermark (the highest sequence removed) is stored, and StreamEvents refuses a replay
from before it instead of silently skipping events (billing/webhook_servicer.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tollway.background import cancel_task
from tollway.db import Database
from tollway.errors import FailedPrecondition
from tollway.schema import as_utc, utcnow
from tollway.schema_billing import BillingSequence, EventOutbox, WebhookDelivery

log = logging.getLogger(__name__)

PRUNE_BATCH = 500
# Batches per round at most, so a first pass over a large outbox does not hold the loop for long.
PRUNE_BATCHES_PER_ROUND = 20
PRUNE_INTERVAL_SECONDS = 300.0
WATERMARK = "event_outbox_pruned_through"


async def pruned_through(session: AsyncSession) -> int:
    """The highest sequence removed by retention (0: none)."""
    row = await session.get(BillingSequence, WATERMARK)
    return row.value if row is not None else 0


class EventRetention:
    def __init__(self, db: Database, retention_days: int, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self.retention = timedelta(days=retention_days)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-retention")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: try again next round
                log.warning("event outbox pruning failed: %s", type(exc).__name__)
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)

    async def prune(self) -> int:
        """Removes the prunable prefix of the outbox, PRUNE_BATCH events per transaction; returns how
        many events were removed."""
        removed = 0
        for _ in range(PRUNE_BATCHES_PER_ROUND):
            count, more = await self._prune_batch()
            removed += count
            if not more:
                break
        if removed:
            log.info("event outbox: removed %d events older than %s", removed, self.retention)
        return removed

    async def _prune_batch(self) -> tuple[int, bool]:
        cutoff = self._clock() - self.retention
        async with self._db.session() as session:
            rows = (
                await session.exec(
                    select(EventOutbox.sequence, EventOutbox.created_at, EventOutbox.fanned_out)
                    .order_by(col(EventOutbox.sequence))
                    .limit(PRUNE_BATCH)
                )
            ).all()
            sequences = [seq for seq, _, _ in rows if seq is not None]
            if not sequences:
                return 0, False
            pending = set(
                (
                    await session.exec(
                        select(WebhookDelivery.event_sequence).where(
                            col(WebhookDelivery.event_sequence).in_(sequences),
                            WebhookDelivery.state == "PENDING",
                        )
                    )
                ).all()
            )
            prunable: list[int] = []
            for sequence, created_at, fanned_out in rows:
                created = as_utc(created_at) or created_at
                if sequence is None or not fanned_out or created >= cutoff or sequence in pending:
                    break
                prunable.append(sequence)
            if not prunable:
                return 0, False
            await session.exec(delete(EventOutbox).where(col(EventOutbox.sequence).in_(prunable)))
            mark = await session.get(BillingSequence, WATERMARK)
            if mark is None:
                mark = BillingSequence(name=WATERMARK, value=0)
            mark.value = max(mark.value, prunable[-1])
            session.add(mark)
            await session.commit()
        return len(prunable), len(prunable) == len(rows)


async def check_replay(db: Database, from_sequence: int, retention_days: int | None = None) -> None:
    """Refuses a replay from before what retention kept (FAILED_PRECONDITION naming the oldest kept)."""
    async with db.session() as session:
        through = await pruned_through(session)
        if from_sequence >= through:
            return
        oldest = (await session.exec(select(func.min(EventOutbox.sequence)))).first()
    kept = f" (events are kept {retention_days} days)" if retention_days else ""
    available = f"the oldest available is sequence {oldest}" if oldest else "no older event is kept"
    raise FailedPrecondition(
        f"events up to sequence {through} were removed{kept}; {available}:"
        f" stream from_sequence {through} or later"
    )
