"""BillingService's side of the subscription lifecycle: the approval queue (approve, reject), suspension
for non-payment, and plan changes. The states, the transition table and the writes are the core's
(tollway/lifecycle.py); this module adds the RPCs' input rules and the plan lookup."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.invoice_store import reason_text
from billing.periods import whole_second
from billing.usage_queries import require
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument
from tollway.lifecycle import (
    Action,
    Actor,
    SubscriptionLifecycle,
    SubscriptionState,
    load_subscription,
    subscription_events,
)
from tollway.schema import ApiPlan, Plan, Subscription, SubscriptionEvent, utcnow


class SubscriptionApprovals:
    def __init__(
        self, db: Database, on_commit: Callable[[], None], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._db = db
        # Approvals and plan changes cut billing periods: they are stamped at whole seconds, where
        # billing/periods.py cuts, so the stored time is exactly the one priced.
        self._lifecycle = SubscriptionLifecycle(db, on_commit, lambda: whole_second(clock()))

    async def get_subscription(self, subscription_id: str) -> Subscription:
        subscription_id = require(subscription_id, "subscription_id")
        async with self._db.session() as session:
            return await load_subscription(session, subscription_id)

    async def list_pending(self) -> list[Subscription]:
        statement = (
            select(Subscription)
            .where(Subscription.state == SubscriptionState.PENDING_APPROVAL)
            .order_by(col(Subscription.created_at), col(Subscription.id))
        )
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def approve(self, subscription_id: str, reason: str = "") -> Subscription:
        """PENDING_APPROVAL → ACTIVE: the gateway admits the subscription's keys within a second."""
        return await self._apply(subscription_id, Action.APPROVE, reason_text(reason, False))

    async def reject(self, subscription_id: str, reason: str) -> Subscription:
        return await self._apply(subscription_id, Action.REJECT, reason_text(reason, True))

    async def suspend(self, subscription_id: str, reason: str) -> Subscription:
        """ACTIVE → SUSPENDED (e.g. non-payment): the gateway answers 403 until it is resumed."""
        return await self._apply(subscription_id, Action.SUSPEND, reason_text(reason, True))

    async def resume(self, subscription_id: str, reason: str = "") -> Subscription:
        return await self._apply(subscription_id, Action.RESUME, reason_text(reason, False))

    async def _apply(self, subscription_id: str, action: Action, reason: str) -> Subscription:
        subscription_id = require(subscription_id, "subscription_id")
        return await self._lifecycle.apply(subscription_id, action, Actor.BILLING, reason)

    async def change_plan(self, subscription_id: str, plan: str) -> Subscription:
        """Moves a live subscription to another plan its API offers, from now on: usage admitted from
        now is attributed to the new plan, and the period's fee is prorated (billing/segments.py)."""
        subscription_id = require(subscription_id, "subscription_id")
        plan = require(plan, "plan_id")

        async def offered_plan(session: AsyncSession, subscription: Subscription) -> str:
            offered = (
                await session.exec(
                    select(Plan)
                    .join(ApiPlan, col(ApiPlan.plan_id) == col(Plan.id))
                    .where(ApiPlan.api_id == subscription.api_id)
                )
            ).all()
            matches = [row for row in offered if row.id == plan] or [
                row for row in offered if row.name == plan
            ]
            if not matches:
                names = ", ".join(sorted(row.name for row in offered)) or "none"
                raise InvalidArgument(
                    f"plan {plan!r} is not offered by the subscription's API (offered: {names})"
                )
            if matches[0].id == subscription.plan_id:
                raise FailedPrecondition(
                    f"subscription {subscription_id!r} is already on plan {matches[0].name!r}"
                )
            return matches[0].id

        return await self._lifecycle.apply(
            subscription_id, Action.CHANGE_PLAN, Actor.BILLING, choose_plan=offered_plan
        )

    async def events(self, subscription_id: str) -> list[SubscriptionEvent]:
        subscription_id = require(subscription_id, "subscription_id")
        async with self._db.session() as session:
            await load_subscription(session, subscription_id)
            return await subscription_events(session, subscription_id)
