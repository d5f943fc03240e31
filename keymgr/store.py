"""The store's repository: applications, subscriptions, API keys and block rules.

Every write validates its input first, then runs in one transaction that also bumps the change revision
(so gateway replicas pick it up), commits, and only then calls `on_commit`. A rejected write changes
nothing. Idempotent writes (revoking a revoked key, deleting a deleted application) succeed without
writing. Error codes: the resource an RPC names is NOT_FOUND when missing; a parent application that is
missing is NOT_FOUND, a deleted one FAILED_PRECONDITION; wrong state is FAILED_PRECONDITION.

Full API keys exist only in the value returned by `create_api_key`/`rotate_api_key`: the database keeps
their keyed hash, and no log line or error message contains one.

`StoreRepository` is a facade, the one object StoreService, the admin API and the demo hold. Each area
lives in its own module (keymgr/applications.py, subscriptions.py, api_keys.py, block_rules.py, with the
shared input checks in keymgr/validation.py); all of them write through one core SubscriptionLifecycle
(tollway/lifecycle.py), whose transaction is the one described above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from keymgr.api_keys import (
    API_KEY_NAME_MAX,
    KEY_ACTIVE,
    KEY_EXPIRED,
    KEY_REVOKED,
    MAX_KEY_LIFETIME,
    ApiKeyRepository,
    IssuedKey,
    RotatedKey,
    key_state,
)
from keymgr.applications import (
    APPLICATION_DESCRIPTION_MAX,
    APPLICATION_FIELDS,
    APPLICATION_NAME_MAX,
    APPLICATION_OWNER_MAX,
    ApplicationRepository,
)
from keymgr.block_rules import BLOCK_TARGETS, BlockRuleRepository
from keymgr.subscriptions import BILLING_ANCHOR_DAY_MAX, SubscriptionRepository
from keymgr.validation import REASON_MAX
from tollway.db import Database
from tollway.lifecycle import SubscriptionLifecycle
from tollway.schema import ApiKey, Application, BlockRule, Subscription, utcnow

__all__ = [
    "API_KEY_NAME_MAX",
    "APPLICATION_DESCRIPTION_MAX",
    "APPLICATION_FIELDS",
    "APPLICATION_NAME_MAX",
    "APPLICATION_OWNER_MAX",
    "BILLING_ANCHOR_DAY_MAX",
    "BLOCK_TARGETS",
    "KEY_ACTIVE",
    "KEY_EXPIRED",
    "KEY_REVOKED",
    "MAX_KEY_LIFETIME",
    "REASON_MAX",
    "IssuedKey",
    "RotatedKey",
    "StoreRepository",
    "key_state",
]


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
        self._clock = clock
        lifecycle = SubscriptionLifecycle(db, on_commit, clock)
        self.api_keys = ApiKeyRepository(db, lifecycle, key_hash_secret, default_grace, clock)
        self.applications = ApplicationRepository(db, lifecycle, clock)
        self.subscriptions = SubscriptionRepository(db, lifecycle, clock)
        self.block_rules = BlockRuleRepository(db, lifecycle, clock)

    def now(self) -> datetime:
        return self._clock()

    def key_state(self, api_key: ApiKey) -> str:
        return key_state(api_key, self._clock())

    # Applications

    async def create_application(self, name: str, owner: str = "", description: str = "") -> Application:
        return await self.applications.create_application(name, owner, description)

    async def get_application(self, application_id: str) -> Application:
        return await self.applications.get_application(application_id)

    async def list_applications(self, owner: str = "", include_deleted: bool = False) -> list[Application]:
        return await self.applications.list_applications(owner, include_deleted)

    async def update_application(self, application_id: str, changes: Mapping[str, str]) -> Application:
        """Replaces the given fields (a subset of name, owner, description) of a live application."""
        return await self.applications.update_application(application_id, changes)

    async def delete_application(self, application_id: str) -> Application:
        """Soft delete: marks the application deleted, revokes its keys and cancels its live
        subscriptions in one transaction. Deleting a deleted application changes nothing."""
        return await self.applications.delete_application(application_id)

    # Subscriptions

    async def create_subscription(
        self, application_id: str, api: str, plan: str, billing_anchor_day: int = 0
    ) -> Subscription:
        """Subscribes a live application to a published API (by id or name) under a plan the API offers
        (by id or name): ACTIVE, or PENDING_APPROVAL when the plan requires approval."""
        return await self.subscriptions.create_subscription(application_id, api, plan, billing_anchor_day)

    async def get_subscription(self, subscription_id: str) -> Subscription:
        return await self.subscriptions.get_subscription(subscription_id)

    async def list_subscriptions(
        self, application_id: str = "", api_id: str = "", state: str = ""
    ) -> list[Subscription]:
        """Subscriptions matching every filter given; an empty filter matches everything."""
        return await self.subscriptions.list_subscriptions(application_id, api_id, state)

    async def block_subscription(self, subscription_id: str, reason: str = "") -> Subscription:
        """ACTIVE → BLOCKED: the gateway answers 403 until it is unblocked."""
        return await self.subscriptions.block_subscription(subscription_id, reason)

    async def unblock_subscription(self, subscription_id: str) -> Subscription:
        """BLOCKED → ACTIVE."""
        return await self.subscriptions.unblock_subscription(subscription_id)

    async def cancel_subscription(self, subscription_id: str) -> Subscription:
        """Any live state → CANCELLED; the record stays for billing; the application may subscribe anew."""
        return await self.subscriptions.cancel_subscription(subscription_id)

    # API keys

    async def create_api_key(
        self, application_id: str, name: str = "", ttl: timedelta | None = None
    ) -> IssuedKey:
        """Issues a key for a live application; no expiry when `ttl` is None. The full key is only in
        the returned value."""
        return await self.api_keys.create_api_key(application_id, name, ttl)

    async def get_api_key(self, key_id: str) -> ApiKey:
        return await self.api_keys.get_api_key(key_id)

    async def list_api_keys(self, application_id: str = "") -> list[ApiKey]:
        """The keys of one application, or every key when `application_id` is empty; never secrets."""
        return await self.api_keys.list_api_keys(application_id)

    async def rotate_api_key(
        self, key_id: str, grace: timedelta | None = None, ttl: timedelta | None = None
    ) -> RotatedKey:
        """Issues a replacement for an ACTIVE key, for the same application and with the same name.

        The old key keeps working for `grace` (the server default when None, not at all when zero) but
        never longer than it would have anyway. A key can be rotated once; rotate its replacement next."""
        return await self.api_keys.rotate_api_key(key_id, grace, ttl)

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revokes a key at once. Idempotent: revoking a revoked key succeeds, changes nothing and
        keeps the original revocation time, so a retried call is harmless."""
        return await self.api_keys.revoke_api_key(key_id)

    # Block rules

    async def create_block_rule(self, target: str, value: str, reason: str = "") -> BlockRule:
        """A rule refusing every request to an API, from an application or key, or from a client
        address range. `value` is an API id, application id, key id, or an address/CIDR (stored in
        normalized form, e.g. 10.0.0.0/8)."""
        return await self.block_rules.create_block_rule(target, value, reason)

    async def list_block_rules(self) -> list[BlockRule]:
        return await self.block_rules.list_block_rules()

    async def delete_block_rule(self, rule_id: str) -> None:
        await self.block_rules.delete_block_rule(rule_id)
