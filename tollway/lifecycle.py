"""One subscription lifecycle: every state change (block, unblock, cancel, approve, reject, suspend,
resume, plan change) goes through `transition`, which checks the table in tollway/subscription_states.py
and writes the new state, a SubscriptionEvent (actor, reason, time) and the change record in the
caller's transaction, with a `subscription.state_changed` event in the outbox (tollway/events.py).
Billing prorates from those event times, never from the row's `updated_at`, so a
later unrelated write to a subscription cannot move when it was approved, changed plan or cancelled.

A refused transition raises FAILED_PRECONDITION before anything is written; the caller's transaction
then rolls back, so it changes nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tollway.db import Database
from tollway.errors import NotFound
from tollway.events import EventType, emit_event
from tollway.schema import Subscription, SubscriptionEvent, as_utc, utcnow
from tollway.subscription_states import (
    LIVE_SUBSCRIPTION_STATES,
    SUBSCRIPTION_STATES,
    TRANSITIONS,
    Action,
    Actor,
    SubscriptionState,
    check_transition,
    initial_state,
    is_allowed,
    target_state,
)

log = logging.getLogger(__name__)

__all__ = [
    "LIVE_SUBSCRIPTION_STATES",
    "SUBSCRIPTION_STATES",
    "TRANSITIONS",
    "Action",
    "Actor",
    "PlanChooser",
    "SubscriptionLifecycle",
    "SubscriptionState",
    "check_transition",
    "initial_state",
    "is_allowed",
    "load_subscription",
    "record_change_once",
    "shown_ref",
    "subscription_events",
    "target_state",
    "transition",
]

# Longer references are cut to their first _SHOWN_KEPT characters: no id Tollway issues is longer than
# _SHOWN_MAX, and a pasted secret (an API key is 48 characters) must not be echoed back whole.
_SHOWN_MAX = 24
_SHOWN_KEPT = 16


def shown_ref(value: str) -> str:
    """A caller's reference quoted for an error message: echoed when it is id-sized, else cut short."""
    if len(value) > _SHOWN_MAX:
        value = value[:_SHOWN_KEPT] + "…"
    return repr(value)


async def load_subscription(
    session: AsyncSession, subscription_id: str, for_update: bool = False
) -> Subscription:
    """The subscription with this id (row-locked when `for_update`), else NOT_FOUND."""
    statement = select(Subscription).where(Subscription.id == subscription_id)
    if for_update:
        statement = statement.with_for_update()
    subscription = (await session.exec(statement)).first()
    if subscription is None:
        raise NotFound(f"subscription {shown_ref(subscription_id)} not found")
    return subscription


async def subscription_events(session: AsyncSession, subscription_id: str) -> list[SubscriptionEvent]:
    statement = (
        select(SubscriptionEvent)
        .where(SubscriptionEvent.subscription_id == subscription_id)
        .order_by(col(SubscriptionEvent.at), col(SubscriptionEvent.id))
    )
    return list((await session.exec(statement)).all())


async def record_change_once(db: Database, session: AsyncSession) -> None:
    """Bumps the change revision once per transaction, however many writes it carries (an application
    deletion cancels many subscriptions in one)."""
    await db.record_change(session)


async def transition(
    db: Database,
    session: AsyncSession,
    subscription: Subscription,
    action: Action,
    actor: Actor,
    *,
    at: datetime,
    reason: str = "",
    to_plan_id: str = "",
) -> SubscriptionEvent:
    """Moves `subscription` (loaded in `session`, ideally row-locked) by `action` in the caller's
    transaction: checks the table, then writes the state, one event and the change record. A plan
    change needs `to_plan_id` and keeps the state and its reason. The caller commits."""
    to_state = check_transition(subscription.id, action, actor, subscription.state)
    if (action is Action.CHANGE_PLAN) != bool(to_plan_id):
        raise ValueError("to_plan_id is given for a plan change, and only for one")
    await record_change_once(db, session)
    event = SubscriptionEvent(
        subscription_id=subscription.id,
        at=at,
        kind=TRANSITIONS[action].event_kind,
        actor=actor.value,
        from_state=subscription.state,
        to_state=to_state,
        from_plan_id=subscription.plan_id,
        to_plan_id=to_plan_id or subscription.plan_id,
        reason=reason,
    )
    session.add(event)
    if action is Action.CHANGE_PLAN:
        subscription.plan_id = to_plan_id
    else:
        subscription.state = to_state
        subscription.state_reason = reason
    subscription.updated_at = at
    session.add(subscription)
    await emit_event(
        session,
        EventType.SUBSCRIPTION_STATE_CHANGED,
        {
            "subscription_id": subscription.id,
            "application_id": subscription.application_id,
            "api_id": subscription.api_id,
            "kind": event.kind,
            "actor": event.actor,
            "from_state": event.from_state,
            "to_state": event.to_state,
            "from_plan_id": event.from_plan_id,
            "to_plan_id": event.to_plan_id,
            "reason": reason,
            "at": (as_utc(at) or at).isoformat().replace("+00:00", "Z"),
        },
        at=at,
    )
    return event


# Chooses the plan a CHANGE_PLAN moves to, once the state check passed (it may refuse the plan).
PlanChooser = Callable[[AsyncSession, Subscription], Awaitable[str]]


class SubscriptionLifecycle:
    """Runs one transition in its own transaction: lock the row, check, write, commit, then signal the
    change feed (`on_commit`, e.g. ChangeFeed.committed) so this replica reloads at once."""

    def __init__(
        self, db: Database, on_commit: Callable[[], None], clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._db = db
        self._on_commit = on_commit
        self._clock = clock

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that starts with the change record, which takes SQLite's write lock and
        PostgreSQL's revision-row lock up front, so concurrent writers queue. Leaving without
        `commit` rolls everything back."""
        async with self._db.session() as session:
            await record_change_once(self._db, session)
            yield session

    async def commit(self, session: AsyncSession) -> None:
        await session.commit()
        self._on_commit()

    async def apply(
        self,
        subscription_id: str,
        action: Action,
        actor: Actor,
        reason: str = "",
        choose_plan: PlanChooser | None = None,
    ) -> Subscription:
        async with self.write() as session:
            subscription = await load_subscription(session, subscription_id, for_update=True)
            to_plan_id = ""
            if choose_plan is not None:
                check_transition(subscription.id, action, actor, subscription.state)
                to_plan_id = await choose_plan(session, subscription)
            await transition(
                self._db, session, subscription, action, actor,
                at=self._clock(), reason=reason, to_plan_id=to_plan_id,
            )  # fmt: skip
            await self.commit(session)
        log.info("subscription %s: %s by %s, now %s", subscription_id, action, actor, subscription.state)
        return subscription
