"""The store's repository: applications, subscriptions, API keys and block rules.

Every write validates its input first, then runs in one transaction that also bumps the change revision
(so gateway replicas pick it up), commits, and only then calls `on_commit`. A rejected write changes
nothing. Idempotent writes (revoking a revoked key, deleting a deleted application) succeed without
writing. Error codes: the resource an RPC names is NOT_FOUND when missing; a parent application that is
missing is NOT_FOUND, a deleted one FAILED_PRECONDITION; wrong state is FAILED_PRECONDITION.

Full API keys exist only in the value returned by `create_api_key`/`rotate_api_key`: the database keeps
their keyed hash, and no log line or error message contains one.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keymgr import keys
from tollway.db import Database
from tollway.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tollway.lifecycle import (
    LIVE_SUBSCRIPTION_STATES,
    SUBSCRIPTION_STATES,
    Action,
    Actor,
    SubscriptionLifecycle,
    initial_state,
    load_subscription,
    record_change_once,
    transition,
)
from tollway.schema import (
    Api,
    ApiKey,
    ApiPlan,
    Application,
    BlockRule,
    Plan,
    Subscription,
    as_utc,
    new_id,
    utcnow,
)

log = logging.getLogger(__name__)

APPLICATION_NAME_MAX = 100
APPLICATION_OWNER_MAX = 200
APPLICATION_DESCRIPTION_MAX = 2000
API_KEY_NAME_MAX = 100
REASON_MAX = 500
BILLING_ANCHOR_DAY_MAX = 28
# Ten years, leap days included; also bounds rotation grace periods.
MAX_KEY_LIFETIME = timedelta(days=3653)

APPLICATION_FIELDS = ("name", "owner", "description")
BLOCK_TARGETS = ("API", "APPLICATION", "API_KEY", "CLIENT_CIDR")

KEY_ACTIVE = "ACTIVE"
KEY_EXPIRED = "EXPIRED"
KEY_REVOKED = "REVOKED"

# A full key anywhere inside a string; used to keep keys out of error messages that echo input.
_FULL_KEY_ANYWHERE = re.compile(
    rf"{keys.PREFIX}_([a-z2-7]{{{keys.KEY_ID_LENGTH}}})_[a-z2-7]{{{keys.SECRET_LENGTH}}}"
)
_SHOWN_MAX = 80


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


def _shown(value: str) -> str:
    """User input quoted for an error message: shortened, with any full key masked."""
    masked = _FULL_KEY_ANYWHERE.sub(lambda match: keys.display(match.group(1)), value)
    if len(masked) > _SHOWN_MAX:
        masked = masked[:_SHOWN_MAX] + "…"
    return repr(masked)


def _require(value: str, field_name: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{field_name} is required")
    return value


def _check_length(value: str, field_name: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"{field_name} must be at most {limit} characters (got {len(value)})")


def _require_key_id(value: str, field_name: str = "key_id") -> str:
    value = value.strip()
    if keys.parse_key(value) is not None:
        # Never echo it: the caller just sent a secret where an identifier belongs.
        raise InvalidArgument(f"{field_name} must be the key id, not the full key")
    if not keys.is_key_id(value):
        raise InvalidArgument(
            f"{field_name} must be a {keys.KEY_ID_LENGTH}-character key id "
            f"(the part between the underscores of {keys.PREFIX}_<key id>_…), got {_shown(value)}"
        )
    return value


def _check_lifetime(value: timedelta | None, field_name: str, allow_zero: bool) -> None:
    if value is None:
        return
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        raise InvalidArgument(f"{field_name} must be {'zero or ' if allow_zero else ''}positive")
    if value > MAX_KEY_LIFETIME:
        raise InvalidArgument(f"{field_name} must be at most 10 years ({MAX_KEY_LIFETIME.days} days)")


def _normalized_cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise InvalidArgument(
            f"CLIENT_CIDR value must be an IPv4 or IPv6 address or CIDR, got {_shown(value)}"
        ) from None


class StoreRepository:
    """Async repository behind StoreService; one instance per process."""

    def __init__(
        self,
        db: Database,
        on_commit: Callable[[], None],
        key_hash_secret: str,
        default_grace: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not key_hash_secret:
            raise ValueError("a key hash secret is required")
        if not timedelta(0) <= default_grace <= MAX_KEY_LIFETIME:
            raise ValueError("the default rotation grace period must be between zero and 10 years")
        self._db = db
        self._on_commit = on_commit
        self._key_hash_secret = key_hash_secret
        self._default_grace = default_grace
        self._clock = clock
        self._lifecycle = SubscriptionLifecycle(db, on_commit, clock)

    def now(self) -> datetime:
        return self._clock()

    def key_state(self, api_key: ApiKey) -> str:
        return key_state(api_key, self._clock())

    @asynccontextmanager
    async def _write_session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction starts by bumping the change revision: that takes SQLite's write
        lock and PostgreSQL's lock on the revision row up front, so concurrent writers queue and each
        one's checks (name taken? already rotated?) see the writes committed before it. Leaving without
        `_commit` (a rejected or no-op write) rolls everything back, the bump included."""
        async with self._db.session() as session:
            await record_change_once(self._db, session)
            yield session

    async def _commit(self, session: AsyncSession) -> None:
        await session.commit()
        self._on_commit()

    # Applications

    async def create_application(self, name: str, owner: str = "", description: str = "") -> Application:
        name, owner = _require(name, "name"), owner.strip()
        self._check_application_fields({"name": name, "owner": owner, "description": description})
        async with self._write_session() as session:
            await self._check_application_name_free(session, name, owner, exclude_id="")
            application = Application(
                id=new_id("app"), name=name, owner=owner, description=description, created_at=self.now()
            )
            session.add(application)
            await self._commit(session)
        log.info("created application %s", application.id)
        return application

    async def get_application(self, application_id: str) -> Application:
        application_id = _require(application_id, "id")
        async with self._db.session() as session:
            return await self._application(session, application_id)

    async def list_applications(self, owner: str = "", include_deleted: bool = False) -> list[Application]:
        statement = select(Application)
        if owner.strip():
            statement = statement.where(Application.owner == owner.strip())
        if not include_deleted:
            statement = statement.where(col(Application.deleted_at).is_(None))
        statement = statement.order_by(col(Application.created_at), col(Application.id))
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def update_application(self, application_id: str, changes: Mapping[str, str]) -> Application:
        """Replaces the given fields (a subset of name, owner, description) of a live application."""
        application_id = _require(application_id, "id")
        unknown = sorted(set(changes) - set(APPLICATION_FIELDS))
        if unknown:
            raise InvalidArgument(f"cannot update application fields: {', '.join(unknown)}")
        changes = dict(changes)
        if "name" in changes:
            changes["name"] = _require(changes["name"], "name")
        if "owner" in changes:
            changes["owner"] = changes["owner"].strip()
        self._check_application_fields(changes)
        async with self._write_session() as session:
            application = await self._application(session, application_id, for_update=True)
            if application.deleted_at is not None:
                raise FailedPrecondition(f"application {application_id!r} is deleted")
            name = changes.get("name", application.name)
            owner = changes.get("owner", application.owner)
            await self._check_application_name_free(session, name, owner, exclude_id=application_id)
            for field_name, value in changes.items():
                setattr(application, field_name, value)
            session.add(application)
            await self._commit(session)
        log.info("updated application %s", application_id)
        return application

    async def delete_application(self, application_id: str) -> Application:
        """Soft delete: marks the application deleted, revokes its keys and cancels its live
        subscriptions in one transaction. Deleting a deleted application changes nothing."""
        application_id = _require(application_id, "id")
        async with self._write_session() as session:
            application = await self._application(session, application_id, for_update=True)
            if application.deleted_at is not None:
                return application
            now = self.now()
            application.deleted_at = now
            session.add(application)
            live_keys = await session.exec(
                select(ApiKey)
                .where(ApiKey.application_id == application_id, col(ApiKey.revoked_at).is_(None))
                .with_for_update()
            )
            for api_key in live_keys.all():
                api_key.revoked_at = now
                session.add(api_key)
            live_subscriptions = await session.exec(
                select(Subscription)
                .where(
                    Subscription.application_id == application_id,
                    col(Subscription.state).in_(LIVE_SUBSCRIPTION_STATES),
                )
                .with_for_update()
            )
            for subscription in live_subscriptions.all():
                await transition(
                    self._db, session, subscription, Action.CANCEL, Actor.SYSTEM,
                    at=now, reason="application deleted",
                )  # fmt: skip
            await self._commit(session)
        log.info("deleted application %s", application_id)
        return application

    @staticmethod
    def _check_application_fields(values: Mapping[str, str]) -> None:
        limits = {
            "name": APPLICATION_NAME_MAX,
            "owner": APPLICATION_OWNER_MAX,
            "description": APPLICATION_DESCRIPTION_MAX,
        }
        for field_name, value in values.items():
            _check_length(value, field_name, limits[field_name])

    @staticmethod
    async def _check_application_name_free(
        session: AsyncSession, name: str, owner: str, exclude_id: str
    ) -> None:
        statement = select(Application.id).where(
            Application.name == name,
            Application.owner == owner,
            col(Application.deleted_at).is_(None),
            Application.id != exclude_id,
        )
        if (await session.exec(statement)).first() is not None:
            raise AlreadyExists(f"owner {owner!r} already has an application named {name!r}")

    @staticmethod
    async def _application(
        session: AsyncSession, application_id: str, for_update: bool = False
    ) -> Application:
        statement = select(Application).where(Application.id == application_id)
        if for_update:
            statement = statement.with_for_update()
        application = (await session.exec(statement)).first()
        if application is None:
            raise NotFound(f"application {_shown(application_id)} not found")
        return application

    async def _live_application(self, session: AsyncSession, application_id: str) -> Application:
        application = await self._application(session, _require(application_id, "application_id"))
        if application.deleted_at is not None:
            raise FailedPrecondition(f"application {application_id!r} is deleted")
        return application

    # Subscriptions

    async def create_subscription(
        self, application_id: str, api: str, plan: str, billing_anchor_day: int = 0
    ) -> Subscription:
        """Subscribes a live application to a published API (by id or name) under a plan the API offers
        (by id or name): ACTIVE, or PENDING_APPROVAL when the plan requires approval."""
        application_id = _require(application_id, "application_id")
        api = _require(api, "api_id")
        plan = _require(plan, "plan_id")
        if not 0 <= billing_anchor_day <= BILLING_ANCHOR_DAY_MAX:
            raise InvalidArgument(
                f"billing_anchor_day must be 1-{BILLING_ANCHOR_DAY_MAX}, or 0 for calendar months"
                f" (got {billing_anchor_day})"
            )
        async with self._write_session() as session:
            await self._live_application(session, application_id)
            api_row = await self._published_api(session, api)
            plan_row = await self._offered_plan(session, api_row, plan)
            existing = await session.exec(
                select(Subscription.id).where(
                    Subscription.application_id == application_id,
                    Subscription.api_id == api_row.id,
                    col(Subscription.state).in_(LIVE_SUBSCRIPTION_STATES),
                )
            )
            existing_id = existing.first()
            if existing_id is not None:
                raise AlreadyExists(
                    f"application {application_id!r} is already subscribed to API {api_row.name!r}"
                    f" ({existing_id}); cancel that subscription first"
                )
            now = self.now()
            subscription = Subscription(
                id=new_id("sub"),
                application_id=application_id,
                api_id=api_row.id,
                plan_id=plan_row.id,
                state=initial_state(plan_row.approval_required).value,
                billing_anchor_day=billing_anchor_day,
                created_at=now,
                updated_at=now,
            )
            session.add(subscription)
            await self._commit(session)
        log.info("created subscription %s (%s)", subscription.id, subscription.state)
        return subscription

    async def get_subscription(self, subscription_id: str) -> Subscription:
        subscription_id = _require(subscription_id, "id")
        async with self._db.session() as session:
            return await load_subscription(session, subscription_id)

    async def list_subscriptions(
        self, application_id: str = "", api_id: str = "", state: str = ""
    ) -> list[Subscription]:
        """Subscriptions matching every filter given; an empty filter matches everything."""
        if state and state not in SUBSCRIPTION_STATES:
            raise InvalidArgument(f"unknown subscription state {_shown(state)}")
        statement = select(Subscription)
        if application_id:
            statement = statement.where(Subscription.application_id == application_id)
        if api_id:
            statement = statement.where(Subscription.api_id == api_id)
        if state:
            statement = statement.where(Subscription.state == state)
        statement = statement.order_by(col(Subscription.created_at), col(Subscription.id))
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def block_subscription(self, subscription_id: str, reason: str = "") -> Subscription:
        """ACTIVE → BLOCKED: the gateway answers 403 until it is unblocked."""
        reason = reason.strip()
        _check_length(reason, "reason", REASON_MAX)
        return await self._lifecycle.apply(_require(subscription_id, "id"), Action.BLOCK, Actor.ADMIN, reason)

    async def unblock_subscription(self, subscription_id: str) -> Subscription:
        """BLOCKED → ACTIVE."""
        return await self._lifecycle.apply(_require(subscription_id, "id"), Action.UNBLOCK, Actor.ADMIN)

    async def cancel_subscription(self, subscription_id: str) -> Subscription:
        """Any live state → CANCELLED; the record stays for billing; the application may subscribe anew."""
        return await self._lifecycle.apply(_require(subscription_id, "id"), Action.CANCEL, Actor.ADMIN)

    @staticmethod
    async def _published_api(session: AsyncSession, api: str) -> Api:
        """The API with this id, else the one published API with this name.

        Missing and unpublished APIs get the same answer, so subscribers learn nothing about
        APIs that are not published."""
        not_published = FailedPrecondition(f"no published API with id or name {_shown(api)}")
        by_id = await session.get(Api, api)
        if by_id is not None:
            if not by_id.published:
                raise not_published
            return by_id
        by_name = (await session.exec(select(Api).where(Api.name == api, col(Api.published).is_(True)))).all()
        if not by_name:
            raise not_published
        if len(by_name) > 1:
            versions = ", ".join(sorted(f"{row.version or '-'} ({row.id})" for row in by_name))
            raise InvalidArgument(f"API name {api!r} is ambiguous (versions: {versions}); pass the API id")
        return by_name[0]

    @staticmethod
    async def _offered_plan(session: AsyncSession, api: Api, plan: str) -> Plan:
        offered = (
            await session.exec(
                select(Plan)
                .join(ApiPlan, col(ApiPlan.plan_id) == col(Plan.id))
                .where(ApiPlan.api_id == api.id)
                .order_by(col(ApiPlan.position), col(Plan.name))
            )
        ).all()
        # Ids win over names, so a plan named like another plan's id cannot shadow it.
        matches = [row for row in offered if row.id == plan] or [row for row in offered if row.name == plan]
        if matches:
            return matches[0]
        names = ", ".join(row.name for row in offered) or "none"
        raise InvalidArgument(f"plan {_shown(plan)} is not offered by API {api.name!r} (offered: {names})")

    # API keys

    async def create_api_key(
        self, application_id: str, name: str = "", ttl: timedelta | None = None
    ) -> IssuedKey:
        """Issues a key for a live application; no expiry when `ttl` is None. The full key is only in
        the returned value."""
        application_id = _require(application_id, "application_id")
        name = name.strip()
        _check_length(name, "name", API_KEY_NAME_MAX)
        _check_lifetime(ttl, "ttl", allow_zero=False)
        async with self._write_session() as session:
            await self._live_application(session, application_id)
            issued = self._issue(session, application_id, name, ttl, rotated_from=None)
            await self._commit(session)
        log.info("issued API key %s for application %s", issued.api_key.key_id, application_id)
        return issued

    async def get_api_key(self, key_id: str) -> ApiKey:
        key_id = _require_key_id(key_id)
        async with self._db.session() as session:
            return await self._api_key(session, key_id)

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
        key_id = _require_key_id(key_id)
        _check_lifetime(grace, "grace_period", allow_zero=True)
        _check_lifetime(ttl, "ttl", allow_zero=False)
        grace = self._default_grace if grace is None else grace
        async with self._write_session() as session:
            previous = await self._api_key(session, key_id, for_update=True)
            now = self.now()
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
            await self._live_application(session, previous.application_id)
            grace_end = now + grace
            expires_at = as_utc(previous.expires_at)
            previous.expires_at = grace_end if expires_at is None else min(expires_at, grace_end)
            session.add(previous)
            issued = self._issue(session, previous.application_id, previous.name, ttl, rotated_from=key_id)
            await self._commit(session)
        log.info("rotated API key %s to %s", key_id, issued.api_key.key_id)
        return RotatedKey(api_key=issued.api_key, key=issued.key, previous=previous)

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revokes a key at once. Idempotent: revoking a revoked key succeeds, changes nothing and
        keeps the original revocation time, so a retried call is harmless."""
        key_id = _require_key_id(key_id)
        async with self._write_session() as session:
            api_key = await self._api_key(session, key_id, for_update=True)
            if api_key.revoked_at is not None:
                return api_key
            api_key.revoked_at = self.now()
            session.add(api_key)
            await self._commit(session)
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
        now = self.now()
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

    @staticmethod
    async def _api_key(session: AsyncSession, key_id: str, for_update: bool = False) -> ApiKey:
        statement = select(ApiKey).where(ApiKey.key_id == key_id)
        if for_update:
            statement = statement.with_for_update()
        api_key = (await session.exec(statement)).first()
        if api_key is None:
            raise NotFound(f"API key {key_id!r} not found")
        return api_key

    # Block rules

    async def create_block_rule(self, target: str, value: str, reason: str = "") -> BlockRule:
        """A rule refusing every request to an API, from an application or key, or from a client
        address range. `value` is an API id, application id, key id, or an address/CIDR (stored in
        normalized form, e.g. 10.0.0.0/8)."""
        if target not in BLOCK_TARGETS:
            raise InvalidArgument(f"target must be one of {', '.join(BLOCK_TARGETS)}")
        value = _require(value, "value")
        reason = reason.strip()
        _check_length(reason, "reason", REASON_MAX)
        if target == "API_KEY":
            value = _require_key_id(value, "value")
        elif target == "CLIENT_CIDR":
            value = _normalized_cidr(value)
        async with self._write_session() as session:
            await self._check_block_target_exists(session, target, value)
            duplicate = await session.exec(
                select(BlockRule.id).where(BlockRule.target == target, BlockRule.value == value)
            )
            duplicate_id = duplicate.first()
            if duplicate_id is not None:
                raise AlreadyExists(f"{target} {value!r} is already blocked by rule {duplicate_id}")
            rule = BlockRule(
                id=new_id("block"), target=target, value=value, reason=reason, created_at=self.now()
            )
            session.add(rule)
            await self._commit(session)
        log.info("created block rule %s (%s %s)", rule.id, target, value)
        return rule

    async def list_block_rules(self) -> list[BlockRule]:
        statement = select(BlockRule).order_by(col(BlockRule.created_at), col(BlockRule.id))
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def delete_block_rule(self, rule_id: str) -> None:
        rule_id = _require(rule_id, "id")
        async with self._write_session() as session:
            rule = await session.get(BlockRule, rule_id, with_for_update=True)
            if rule is None:
                raise NotFound(f"block rule {_shown(rule_id)} not found")
            await session.delete(rule)
            await self._commit(session)
        log.info("deleted block rule %s", rule_id)

    @staticmethod
    async def _check_block_target_exists(session: AsyncSession, target: str, value: str) -> None:
        if target == "API" and await session.get(Api, value) is None:
            raise NotFound(f"API {_shown(value)} not found")
        if target == "APPLICATION" and await session.get(Application, value) is None:
            raise NotFound(f"application {_shown(value)} not found")
        if target == "API_KEY" and await session.get(ApiKey, value) is None:
            raise NotFound(f"API key {value!r} not found")
