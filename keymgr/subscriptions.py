"""Subscriptions in the store: subscribing an application to a published API under a plan, reading
them, and the admin's block / unblock / cancel.

Every subscription write goes through the core lifecycle (tollway/lifecycle.py): creation runs in its
transaction, and state changes are its `apply`, which checks the transition table and records the
SubscriptionEvent billing prorates from. This module only adds what is particular to the store: which
API and plan a caller's reference names, and that an application holds one live subscription per API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keymgr.applications import live_application
from keymgr.validation import REASON_MAX, check_length, require, shown
from tollway.db import Database
from tollway.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from tollway.lifecycle import (
    LIVE_SUBSCRIPTION_STATES,
    SUBSCRIPTION_STATES,
    Action,
    Actor,
    SubscriptionLifecycle,
    initial_state,
    load_subscription,
)
from tollway.schema import Api, ApiPlan, Plan, Subscription, new_id

log = logging.getLogger(__name__)

BILLING_ANCHOR_DAY_MAX = 28


class SubscriptionRepository:
    """Subscriptions; every write runs in `lifecycle`'s transaction or is one of its transitions."""

    def __init__(self, db: Database, lifecycle: SubscriptionLifecycle, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._lifecycle = lifecycle
        self._clock = clock

    async def create_subscription(
        self, application_id: str, api: str, plan: str, billing_anchor_day: int = 0
    ) -> Subscription:
        """Subscribes a live application to a published API (by id or name) under a plan the API offers
        (by id or name): ACTIVE, or PENDING_APPROVAL when the plan requires approval."""
        application_id = require(application_id, "application_id")
        api = require(api, "api_id")
        plan = require(plan, "plan_id")
        if not 0 <= billing_anchor_day <= BILLING_ANCHOR_DAY_MAX:
            raise InvalidArgument(
                f"billing_anchor_day must be 1-{BILLING_ANCHOR_DAY_MAX}, or 0 for calendar months"
                f" (got {billing_anchor_day})"
            )
        async with self._lifecycle.write() as session:
            await live_application(session, application_id)
            api_row = await _published_api(session, api)
            plan_row = await _offered_plan(session, api_row, plan)
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
            now = self._clock()
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
            await self._lifecycle.commit(session)
        log.info("created subscription %s (%s)", subscription.id, subscription.state)
        return subscription

    async def get_subscription(self, subscription_id: str) -> Subscription:
        subscription_id = require(subscription_id, "id")
        async with self._db.session() as session:
            return await load_subscription(session, subscription_id)

    async def list_subscriptions(
        self, application_id: str = "", api_id: str = "", state: str = ""
    ) -> list[Subscription]:
        """Subscriptions matching every filter given; an empty filter matches everything."""
        if state and state not in SUBSCRIPTION_STATES:
            raise InvalidArgument(f"unknown subscription state {shown(state)}")
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
        check_length(reason, "reason", REASON_MAX)
        return await self._lifecycle.apply(require(subscription_id, "id"), Action.BLOCK, Actor.ADMIN, reason)

    async def unblock_subscription(self, subscription_id: str) -> Subscription:
        """BLOCKED → ACTIVE."""
        return await self._lifecycle.apply(require(subscription_id, "id"), Action.UNBLOCK, Actor.ADMIN)

    async def cancel_subscription(self, subscription_id: str) -> Subscription:
        """Any live state → CANCELLED; the record stays for billing; the application may subscribe anew."""
        return await self._lifecycle.apply(require(subscription_id, "id"), Action.CANCEL, Actor.ADMIN)


async def _published_api(session: AsyncSession, api: str) -> Api:
    """The API with this id, else the one published API with this name.

    Missing and unpublished APIs get the same answer, so subscribers learn nothing about
    APIs that are not published."""
    not_published = FailedPrecondition(f"no published API with id or name {shown(api)}")
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
    raise InvalidArgument(f"plan {shown(plan)} is not offered by API {api.name!r} (offered: {names})")
