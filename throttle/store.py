"""Traffic limits shared by an API's subscribers or an application's subscriptions (the rows behind
QuotaService's Set/List/DeleteTrafficLimit). Every write bumps the change revision in the same
transaction, so each throttle replica reloads and applies it from its next request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import select

from tollway import schema
from tollway.db import Database
from tollway.errors import InvalidArgument, NotFound
from tollway.vocabulary import SHARED_LIMIT_SCOPES, LimitScope

# Stored spellings (LimitScope.stored).
SCOPES = SHARED_LIMIT_SCOPES
# Same bound as plan limits get from the catalog: a count, not a float, and far from overflow.
MAX_COUNT = 10**12


@dataclass(frozen=True, slots=True)
class TrafficLimitDraft:
    scope: str  # stored spelling: API | APPLICATION
    target_id: str
    requests_per_second: int = 0
    requests_per_minute: int = 0
    requests_per_hour: int = 0
    requests_per_day: int = 0


def validate(draft: TrafficLimitDraft) -> TrafficLimitDraft:
    if draft.scope not in SCOPES:
        raise InvalidArgument("limit.scope must be LIMIT_SCOPE_API or LIMIT_SCOPE_APPLICATION")
    if not draft.target_id or not draft.target_id.strip():
        raise InvalidArgument("limit.target_id is required")
    for name in ("requests_per_second", "requests_per_minute", "requests_per_hour", "requests_per_day"):
        value = getattr(draft, name)
        if not 0 <= value <= MAX_COUNT:
            raise InvalidArgument(f"limit.{name} must be between 0 and {MAX_COUNT}, got {value}")
    return draft


class TrafficLimitStore:
    def __init__(self, db: Database, on_commit: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._on_commit = on_commit

    async def set(self, draft: TrafficLimitDraft) -> schema.TrafficLimit:
        draft = validate(draft)
        target = schema.Api if draft.scope == LimitScope.API.stored else schema.Application
        async with self._db.session() as session:
            await self._db.record_change(session)
            if await session.get(target, draft.target_id) is None:
                raise NotFound(f"{draft.scope.lower()} {draft.target_id} not found")
            row = await session.get(schema.TrafficLimit, (draft.scope, draft.target_id))
            if row is None:
                row = schema.TrafficLimit(scope=draft.scope, target_id=draft.target_id)
            row.requests_per_second = draft.requests_per_second
            row.requests_per_minute = draft.requests_per_minute
            row.requests_per_hour = draft.requests_per_hour
            row.requests_per_day = draft.requests_per_day
            row.updated_at = schema.utcnow()
            session.add(row)
            await session.commit()
            await session.refresh(row)
        self._on_commit()
        return row

    async def list(self) -> list[schema.TrafficLimit]:
        async with self._db.session() as session:
            rows = await session.exec(
                select(schema.TrafficLimit).order_by(schema.TrafficLimit.scope, schema.TrafficLimit.target_id)
            )
            return list(rows)

    async def delete(self, scope: str, target_id: str) -> None:
        if scope not in SCOPES:
            raise InvalidArgument("scope must be LIMIT_SCOPE_API or LIMIT_SCOPE_APPLICATION")
        async with self._db.session() as session:
            await self._db.record_change(session)
            row = await session.get(schema.TrafficLimit, (scope, target_id))
            if row is None:
                raise NotFound(f"no traffic limit for {scope.lower()} {target_id}")
            await session.delete(row)
            await session.commit()
        self._on_commit()
