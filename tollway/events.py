"""The event outbox: `emit_event` writes what happened in the caller's transaction, beside the change
that caused it, so an event is recorded exactly when its change commits and a crash loses neither.
billing/ delivers the outbox to webhook endpoints and streams it over BillingService.StreamEvents.

It lives in the core because the subscription lifecycle (tollway/lifecycle.py) emits events and the
core imports no component; every component that reports something calls the same function."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from tollway import change_log
from tollway.schema import as_utc, new_id, utcnow
from tollway.schema_billing import EventOutbox
from tollway.vocabulary import EventType

__all__ = ["EventType", "emit_event", "event_json"]


async def emit_event(
    session: AsyncSession, type: EventType, data: Mapping[str, Any], at: datetime | None = None
) -> EventOutbox:
    """Adds one event to the outbox in `session`'s transaction (the caller commits). `data` must be
    JSON-ready (strings, numbers, lists, dicts). The change-revision lock is taken first, so events get
    their sequence numbers in commit order and a reader that follows the sequence misses none."""
    if not isinstance(type, EventType):
        raise ValueError(f"unknown event type {type!r}")
    await session.run_sync(change_log.bump_revision)
    event = EventOutbox(id=new_id("evt", 20), type=type.value, created_at=at or utcnow(), data=dict(data))
    session.add(event)
    await session.flush()  # the sequence number
    return event


def event_json(event: EventOutbox) -> dict[str, Any]:
    """The event as receivers get it: {id, type, created_at, data} (created_at: RFC 3339, UTC)."""
    created = as_utc(event.created_at) or event.created_at
    stamp = created.isoformat().replace("+00:00", "Z")
    return {"id": event.id, "type": event.type, "created_at": stamp, "data": event.data}
