"""API keys in the store: issue, read, list, rotate and revoke, and a key's state.

Kept apart because it is the one area that handles secrets: a full key exists only in the IssuedKey /
RotatedKey returned by `create_api_key` / `rotate_api_key` (the database keeps its keyed hash, made
with the secret this repository alone holds), and no log line or error message here contains one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keymgr import keys
from keymgr.applications import live_application
from keymgr.validation import check_length, require, require_key_id
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound
from tollway.lifecycle import SubscriptionLifecycle
from tollway.schema import ApiKey, as_utc

log = logging.getLogger(__name__)

API_KEY_NAME_MAX = 100
# Ten years, leap days included; also bounds rotation grace periods.
MAX_KEY_LIFETIME = timedelta(days=3653)

KEY_ACTIVE = "ACTIVE"
KEY_EXPIRED = "EXPIRED"
KEY_REVOKED = "REVOKED"


def key_state(api_key: ApiKey, now: datetime) -> str:
    """REVOKED once revoked, EXPIRED from its expiry instant on, else ACTIVE."""
    if api_key.revoked_at is not None:
        return KEY_REVOKED
    expires_at = as_utc(api_key.expires_at)
    if expires_at is not None and now >= expires_at:
        return KEY_EXPIRED
    return KEY_ACTIVE


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: ApiKey
    # The full key, returned once; kept out of repr so logging this object cannot leak it.
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class RotatedKey:
    api_key: ApiKey
    key: str = field(repr=False)
    previous: ApiKey


def check_lifetime(value: timedelta | None, field_name: str, allow_zero: bool) -> None:
    if value is None:
        return
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        raise InvalidArgument(f"{field_name} must be {'zero or ' if allow_zero else ''}positive")
    if value > MAX_KEY_LIFETIME:
        raise InvalidArgument(f"{field_name} must be at most 10 years ({MAX_KEY_LIFETIME.days} days)")


class ApiKeyRepository:
    """API keys; writes run in `lifecycle`'s transaction (change record first, `on_commit` after)."""

    def __init__(
        self,
        db: Database,
        lifecycle: SubscriptionLifecycle,
        key_hash_secret: str,
        default_grace: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        if not key_hash_secret:
            raise ValueError("a key hash secret is required")
        if not timedelta(0) <= default_grace <= MAX_KEY_LIFETIME:
            raise ValueError("the default rotation grace period must be between zero and 10 years")
        self._db = db
        self._lifecycle = lifecycle
        self._key_hash_secret = key_hash_secret
        self._default_grace = default_grace
        self._clock = clock

    async def create_api_key(
        self, application_id: str, name: str = "", ttl: timedelta | None = None
    ) -> IssuedKey:
        """Issues a key for a live application; no expiry when `ttl` is None. The full key is only in
        the returned value."""
        application_id = require(application_id, "application_id")
        name = name.strip()
        check_length(name, "name", API_KEY_NAME_MAX)
        check_lifetime(ttl, "ttl", allow_zero=False)
        async with self._lifecycle.write() as session:
            await live_application(session, application_id)
            issued = self._issue(session, application_id, name, ttl, rotated_from=None)
            await self._lifecycle.commit(session)
        log.info("issued API key %s for application %s", issued.api_key.key_id, application_id)
        return issued

    async def get_api_key(self, key_id: str) -> ApiKey:
        key_id = require_key_id(key_id)
        async with self._db.session() as session:
            return await _load_api_key(session, key_id)

    async def list_api_keys(self, application_id: str = "") -> list[ApiKey]:
        """The keys of one application, or every key when `application_id` is empty; never secrets."""
        statement = select(ApiKey)
        if application_id:
            statement = statement.where(ApiKey.application_id == application_id)
        statement = statement.order_by(col(ApiKey.created_at), col(ApiKey.key_id))
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def rotate_api_key(
        self, key_id: str, grace: timedelta | None = None, ttl: timedelta | None = None
    ) -> RotatedKey:
        """Issues a replacement for an ACTIVE key, for the same application and with the same name.

        The old key keeps working for `grace` (the server default when None, not at all when zero) but
        never longer than it would have anyway. A key can be rotated once; rotate its replacement next."""
        key_id = require_key_id(key_id)
        check_lifetime(grace, "grace_period", allow_zero=True)
        check_lifetime(ttl, "ttl", allow_zero=False)
        grace = self._default_grace if grace is None else grace
        async with self._lifecycle.write() as session:
            previous = await _load_api_key(session, key_id, for_update=True)
            now = self._clock()
            state = key_state(previous, now)
            if state != KEY_ACTIVE:
                raise FailedPrecondition(f"API key {key_id!r} is {state} and cannot be rotated")
            replacement = (
                await session.exec(select(ApiKey.key_id).where(ApiKey.rotated_from == key_id))
            ).first()
            if replacement is not None:
                raise FailedPrecondition(
                    f"API key {key_id!r} was already rotated to {replacement!r}; rotate that key instead"
                )
            await live_application(session, previous.application_id)
            grace_end = now + grace
            expires_at = as_utc(previous.expires_at)
            previous.expires_at = grace_end if expires_at is None else min(expires_at, grace_end)
            session.add(previous)
            issued = self._issue(session, previous.application_id, previous.name, ttl, rotated_from=key_id)
            await self._lifecycle.commit(session)
        log.info("rotated API key %s to %s", key_id, issued.api_key.key_id)
        return RotatedKey(api_key=issued.api_key, key=issued.key, previous=previous)

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revokes a key at once. Idempotent: revoking a revoked key succeeds, changes nothing and
        keeps the original revocation time, so a retried call is harmless."""
        key_id = require_key_id(key_id)
        async with self._lifecycle.write() as session:
            api_key = await _load_api_key(session, key_id, for_update=True)
            if api_key.revoked_at is not None:
                return api_key
            api_key.revoked_at = self._clock()
            session.add(api_key)
            await self._lifecycle.commit(session)
        log.info("revoked API key %s", key_id)
        return api_key

    def _issue(
        self,
        session: AsyncSession,
        application_id: str,
        name: str,
        ttl: timedelta | None,
        rotated_from: str | None,
    ) -> IssuedKey:
        now = self._clock()
        parsed = keys.new_key()
        api_key = ApiKey(
            key_id=parsed.key_id,
            application_id=application_id,
            name=name,
            key_hash=keys.key_hash(self._key_hash_secret, parsed.full_key),
            created_at=now,
            expires_at=None if ttl is None else now + ttl,
            rotated_from=rotated_from,
        )
        session.add(api_key)
        return IssuedKey(api_key=api_key, key=parsed.full_key)


async def _load_api_key(session: AsyncSession, key_id: str, for_update: bool = False) -> ApiKey:
    statement = select(ApiKey).where(ApiKey.key_id == key_id)
    if for_update:
        statement = statement.with_for_update()
    api_key = (await session.exec(statement)).first()
    if api_key is None:
        raise NotFound(f"API key {key_id!r} not found")
    return api_key
