"""The throttle's index kept current change by change equals a fresh full load, whatever the writes:
plans created, updated and deleted, subscriptions made, moved to another plan and through the
lifecycle, shared traffic limits set and deleted (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

import throttle.index
from tests.throttle.throttle_fixtures import unique
from throttle.index import ThrottleIndex, load_snapshot
from throttle.store import TrafficLimitDraft, TrafficLimitStore
from tollway import schema
from tollway.catalog.limits import PlanLimits
from tollway.catalog.store import CatalogStore
from tollway.catalog.validation import PlanDraft
from tollway.changes import ChangeFeed
from tollway.db import Database
from tollway.errors import TollwayError
from tollway.lifecycle import Action, Actor, SubscriptionLifecycle
from tollway.vocabulary import LimitScope

APPLICATIONS = 3
APIS = 2
TRANSITIONS = (
    (Action.SUSPEND, Actor.BILLING),
    (Action.RESUME, Actor.BILLING),
    (Action.BLOCK, Actor.ADMIN),
    (Action.UNBLOCK, Actor.ADMIN),
    (Action.CANCEL, Actor.ADMIN),
)
SCOPES = (LimitScope.API.stored, LimitScope.APPLICATION.stored)

# One write: (kind, three small numbers that pick rows and values). "sync" lets the index catch up
# midway, so changes are applied in several rounds.
Op = tuple[str, int, int, int]
small = st.integers(0, 7)
operations = st.lists(
    st.tuples(
        st.sampled_from(
            (
                "create_plan",
                "update_plan",
                "delete_plan",
                "subscribe",
                "change_plan",
                "transition",
                "set_limit",
                "delete_limit",
                "sync",
            )
        ),
        small,
        small,
        small,
    ),
    min_size=1,
    max_size=25,
)


class World:
    """A few applications and APIs, and the stores that write the rest."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.catalog = CatalogStore(db, lambda: None)
        self.lifecycle = SubscriptionLifecycle(db, lambda: None)
        self.limits = TrafficLimitStore(db)
        self.applications = [schema.new_id("app") for _ in range(APPLICATIONS)]
        self.apis = [schema.new_id("api") for _ in range(APIS)]

    async def create(self) -> None:
        async with self.db.session() as session:
            for app_id in self.applications:
                session.add(schema.Application(id=app_id, name=unique("app")))
            for api_id in self.apis:
                session.add(schema.Api(id=api_id, name=unique("api"), context_path=f"/{unique('api')}"))
            await session.commit()
        await self.catalog.create_plan(
            PlanDraft(name=unique("plan"), limits=PlanLimits(requests_per_minute=5))
        )

    async def plan_ids(self) -> list[str]:
        async with self.db.session() as session:
            return list(await session.exec(select(schema.Plan.id).order_by(col(schema.Plan.id))))

    async def subscription_ids(self) -> list[str]:
        S = schema.Subscription
        async with self.db.session() as session:
            return list(await session.exec(select(S.id).order_by(col(S.id))))

    async def run(self, kind: str, a: int, b: int, c: int) -> None:
        plans = await self.plan_ids()
        subscriptions = await self.subscription_ids()
        limits = PlanLimits(
            requests_per_second=a, requests_per_minute=b * 10, monthly_quota=c * 100, shadow_mode=bool(c % 2)
        )
        if kind == "create_plan":
            await self.catalog.create_plan(PlanDraft(name=unique("plan"), limits=limits))
        elif kind == "update_plan" and plans:
            await self.catalog.update_plan(plans[a % len(plans)], PlanDraft(limits=limits), ("limits",))
        elif kind == "delete_plan" and plans:
            await self.catalog.delete_plan(plans[a % len(plans)])
        elif kind == "subscribe" and plans:
            async with self.lifecycle.write() as session:
                session.add(
                    schema.Subscription(
                        id=schema.new_id("sub"),
                        application_id=self.applications[a % APPLICATIONS],
                        api_id=self.apis[b % APIS],
                        plan_id=plans[c % len(plans)],
                        billing_anchor_day=c * 3,
                    )
                )
                await session.commit()
        elif kind == "change_plan" and plans and subscriptions:
            chosen = plans[b % len(plans)]

            async def choose(*_: object) -> str:
                return chosen

            await self.lifecycle.apply(
                subscriptions[a % len(subscriptions)], Action.CHANGE_PLAN, Actor.BILLING, choose_plan=choose
            )
        elif kind == "transition" and subscriptions:
            action, actor = TRANSITIONS[b % len(TRANSITIONS)]
            await self.lifecycle.apply(subscriptions[a % len(subscriptions)], action, actor, reason="test")
        elif kind in ("set_limit", "delete_limit"):
            scope = SCOPES[a % 2]
            targets = self.apis if scope == LimitScope.API.stored else self.applications
            target = targets[b % len(targets)]
            if kind == "set_limit":
                await self.limits.set(TrafficLimitDraft(scope, target, c, c * 60, 0, c * 1000))
            else:
                await self.limits.delete(scope, target)


async def caught_up(feed: ChangeFeed, db: Database) -> None:
    """Returns once the throttle's listener applied everything in the change log."""
    async with db.session() as session:
        head = (await session.exec(select(func.max(schema.ChangeLogEntry.seq)))).one_or_none() or 0
    feed.committed()
    deadline = time.monotonic() + 10
    while feed.positions()["throttle"] < head:
        assert time.monotonic() < deadline, f"the index did not catch up with {head}: {feed.stats()}"
        await asyncio.sleep(0.01)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
async def test_changes_applied_one_by_one_give_the_index_a_full_load_gives(
    database: Database, monkeypatch: pytest.MonkeyPatch, ops: list[Op]
) -> None:
    # Small chunks, so full loads cross chunk boundaries.
    monkeypatch.setattr(throttle.index, "LOAD_CHUNK", 2)
    world = World(database)
    await world.create()
    index = ThrottleIndex(database)
    # A long poll: changes arrive when told (or by NOTIFY), not by the clock.
    feed = ChangeFeed(database, poll_seconds=30)
    feed.subscribe(index)
    await feed.start()
    try:
        for kind, a, b, c in ops:
            if kind == "sync":
                await caught_up(feed, database)
                continue
            # Refused writes (a plan in use, a second live subscription, ...) change nothing.
            with contextlib.suppress(TollwayError, IntegrityError):
                await world.run(kind, a, b, c)
        await caught_up(feed, database)
        fresh = await load_snapshot(database)
        assert index.snapshot.contents() == fresh.contents()
        # Every change was applied incrementally: the only full load was the first.
        assert feed.stats()["throttle"]["full_loads"] == 1
    finally:
        await feed.stop()


async def test_a_change_publishes_a_new_snapshot_and_shares_ids(database: Database) -> None:
    world = World(database)
    await world.create()
    index = ThrottleIndex(database)
    feed = ChangeFeed(database, poll_seconds=30)
    feed.subscribe(index)
    await feed.start()
    try:
        # Taken before the writes: on PostgreSQL their NOTIFY may have them applied at once.
        before = index.snapshot
        await world.run("subscribe", 0, 0, 0)
        await world.run("subscribe", 1, 0, 0)
        await caught_up(feed, database)
        assert index.snapshot is not before and index.loaded
        first, second = index.snapshot.subscriptions.values()
        # Loaded from different rows, the plan and API ids are one string each.
        assert first.plan_id is second.plan_id and first.api_id is second.api_id
    finally:
        await feed.stop()
