"""The subscription lifecycle on SQLite and PostgreSQL: every (state, action, actor) of the table, the
event each allowed transition writes, refusals that change nothing, and proration from event times."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.billing.billing_helpers import EPOCH, NOV, Commits, FakeClock, World, repository, utc
from tollway import schema
from tollway.db import Database
from tollway.errors import FailedPrecondition
from tollway.lifecycle import (
    LIVE_SUBSCRIPTION_STATES,
    TRANSITIONS,
    Action,
    Actor,
    SubscriptionLifecycle,
    SubscriptionState,
    check_transition,
    initial_state,
    is_allowed,
    target_state,
)

S = SubscriptionState
LIVE = set(LIVE_SUBSCRIPTION_STATES)

# The table, written out by hand: (action, actor) -> (from states, to state or None = unchanged).
EXPECTED: dict[tuple[Action, Actor], tuple[set[S], S | None]] = {
    (Action.BLOCK, Actor.ADMIN): ({S.ACTIVE}, S.BLOCKED),
    (Action.UNBLOCK, Actor.ADMIN): ({S.BLOCKED}, S.ACTIVE),
    (Action.CANCEL, Actor.ADMIN): (LIVE, S.CANCELLED),
    (Action.CANCEL, Actor.SYSTEM): (LIVE, S.CANCELLED),
    (Action.APPROVE, Actor.BILLING): ({S.PENDING_APPROVAL}, S.ACTIVE),
    (Action.REJECT, Actor.BILLING): ({S.PENDING_APPROVAL}, S.REJECTED),
    (Action.SUSPEND, Actor.BILLING): ({S.ACTIVE}, S.SUSPENDED),
    (Action.RESUME, Actor.BILLING): ({S.SUSPENDED}, S.ACTIVE),
    (Action.CHANGE_PLAN, Actor.BILLING): (LIVE, None),
}
CASES = list(itertools.product(SubscriptionState, Action, Actor))


def expected(state: S, action: Action, actor: Actor) -> S | None:
    """The state the transition leads to, or None when the table refuses it."""
    rule = EXPECTED.get((action, actor))
    if rule is None or state not in rule[0]:
        return None
    return rule[1] or state


def test_table_is_exactly_the_documented_one() -> None:
    assert set(SubscriptionState) == {
        "ACTIVE",
        "PENDING_APPROVAL",
        "BLOCKED",
        "SUSPENDED",
        "CANCELLED",
        "REJECTED",
    }
    assert set(TRANSITIONS) == set(Action)
    for state, action, actor in CASES:
        to_state = expected(state, action, actor)
        assert is_allowed(action, actor, state) == (to_state is not None), (state, action, actor)
        if to_state is None:
            with pytest.raises(FailedPrecondition) as refused:
                check_transition("sub_x", action, actor, state)
            assert state in refused.value.message and target_state(action, state) in refused.value.message
        else:
            assert check_transition("sub_x", action, actor, state) == to_state
    # Final states have no way out; every event kind is distinct.
    assert not any(is_allowed(a, r, s) for s in (S.CANCELLED, S.REJECTED) for a in Action for r in Actor)
    assert len({rule.event_kind for rule in TRANSITIONS.values()}) == len(TRANSITIONS)
    assert initial_state(approval_required=True) == S.PENDING_APPROVAL
    assert initial_state(approval_required=False) == S.ACTIVE


async def _state_and_events(db: Database, subscription_id: str) -> tuple[Any, list[Any]]:
    async with db.session() as session:
        row = await session.get(schema.Subscription, subscription_id)
        assert row is not None
        events = await session.exec(
            select(schema.SubscriptionEvent).where(
                schema.SubscriptionEvent.subscription_id == subscription_id
            )
        )
        columns = (row.state, row.state_reason, row.plan_id, schema.as_utc(row.updated_at))
        return columns, [event.model_dump() for event in events.all()]


async def test_every_state_action_and_actor(database: Database) -> None:
    world = World(database)
    plan, other = await world.plan("first"), await world.plan("second")
    api = await world.api(plan, other)
    clock = FakeClock(utc(2026, 11, 10, 12))
    commits = Commits()
    lifecycle = SubscriptionLifecycle(database, commits, clock)

    async def other_plan(_session: AsyncSession, _subscription: schema.Subscription) -> str:
        return other.id

    for state, action, actor in CASES:
        sub = await world.subscription(await world.application(), api, plan, EPOCH, state=state.value)
        before = await _state_and_events(database, sub.id)
        revision, commit_count = await database.current_revision(), commits.count
        to_state = expected(state, action, actor)
        chooser = other_plan if action is Action.CHANGE_PLAN else None
        case = (state, action, actor)
        if to_state is None:
            with pytest.raises(FailedPrecondition) as refused:
                await lifecycle.apply(sub.id, action, actor, "why", choose_plan=chooser)
            assert state in refused.value.message, case
            assert target_state(action, state) in refused.value.message, case
            assert await _state_and_events(database, sub.id) == before, case
            assert (await database.current_revision(), commits.count) == (revision, commit_count), case
            continue
        moved = await lifecycle.apply(sub.id, action, actor, "why", choose_plan=chooser)
        (row_state, reason, plan_id, updated_at), events = await _state_and_events(database, sub.id)
        assert (moved.state, row_state) == (to_state, to_state), case
        assert updated_at == clock.current, case
        assert (await database.current_revision(), commits.count) == (revision + 1, commit_count + 1), case
        [event] = events
        assert event["kind"] == TRANSITIONS[action].event_kind, case
        assert (event["actor"], event["reason"], schema.as_utc(event["at"])) == (actor, "why", clock.current)
        assert (event["from_state"], event["to_state"]) == (state, to_state), case
        if action is Action.CHANGE_PLAN:
            assert (plan_id, event["from_plan_id"], event["to_plan_id"]) == (other.id, plan.id, other.id)
            assert reason == ""  # a plan change keeps the state and its reason
        else:
            assert (plan_id, event["from_plan_id"], event["to_plan_id"]) == (plan.id, plan.id, plan.id)
            assert reason == "why"


async def test_cancelled_subscription_is_prorated_from_its_event(database: Database) -> None:
    world = World(database)
    plan = await world.plan("monthly", recurring_fee="30.00")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    clock = FakeClock(utc(2026, 11, 11))  # 10 of November's 30 days billable
    await SubscriptionLifecycle(database, Commits(), clock).apply(sub.id, Action.CANCEL, Actor.ADMIN)

    # A later, unrelated write to the row moves its updated_at, not the cancellation.
    async with database.session() as session:
        row = await session.get(schema.Subscription, sub.id)
        assert row is not None
        row.state_reason = "customer left"
        row.updated_at = utc(2026, 11, 25)
        session.add(row)
        await session.commit()

    clock.set(utc(2026, 12, 2))
    [view] = await repository(database, clock).generate(month=NOV)
    assert view.invoice.total == "10.00"  # 30.00 x 10/30, not 30.00 x 24/30


async def test_store_and_billing_writes_go_through_the_lifecycle(database: Database) -> None:
    world = World(database)
    plan = await world.plan("gated", approval_required=True)
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH, state="PENDING_APPROVAL")
    clock = FakeClock(utc(2026, 11, 3))
    billing = repository(database, clock)
    await billing.approve(sub.id, "checked")
    await billing.suspend(sub.id, "unpaid")
    events = await billing.events(sub.id)
    assert [(e.kind, e.actor, e.reason) for e in events] == [
        ("APPROVED", "BILLING", "checked"),
        ("SUSPENDED", "BILLING", "unpaid"),
    ]
    with pytest.raises(
        FailedPrecondition, match="is SUSPENDED; only PENDING_APPROVAL subscriptions can become ACTIVE"
    ):
        await billing.approve(sub.id)


async def test_cancellations_from_before_events_are_backfilled_once(database: Database) -> None:
    """A database from before cancellations wrote events: its cancelled rows get one event at start, at
    the row's last update, so billing reads every cancellation time from events."""
    world = World(database)
    plan = await world.plan("monthly", recurring_fee="30.00")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    async with database.session() as session:
        row = await session.get(schema.Subscription, sub.id)
        assert row is not None
        row.state, row.updated_at = "CANCELLED", utc(2026, 11, 11)
        session.add(row)
        await session.commit()

    await database.create_schema()  # what every start runs
    await database.create_schema()  # and once more: nothing is written twice
    async with database.session() as session:
        events = (
            await session.exec(
                select(schema.SubscriptionEvent).where(schema.SubscriptionEvent.subscription_id == sub.id)
            )
        ).all()
    assert [(e.kind, e.actor, e.to_state, schema.as_utc(e.at)) for e in events] == [
        ("CANCELLED", "SYSTEM", "CANCELLED", utc(2026, 11, 11))
    ]
    [view] = await repository(database, FakeClock(utc(2026, 12, 2))).generate(month=NOV)
    assert view.invoice.total == "10.00"  # 30.00 x 10/30
