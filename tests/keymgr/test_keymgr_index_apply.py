"""Incremental apply gives exactly the index a full load gives: random write sequences through the real
stores (keymgr's StoreRepository, the catalog, the subscription lifecycle) applied change by change, and
a replica that missed pruned changes catching up with a full load."""

from __future__ import annotations

import contextlib
import ipaddress
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keymgr_fixtures import START, FakeClock
from sqlalchemy import func
from sqlmodel import col, select

from keymgr.index import KeyIndex, load_snapshot
from keymgr.snapshot import KeySnapshot
from keymgr.store import StoreRepository
from tollway import schema
from tollway.catalog.store import CatalogStore
from tollway.catalog.validation import ApiDraft, PlanDraft
from tollway.change_log import Change, change_of
from tollway.changes import ChangeFeed
from tollway.db import Database
from tollway.errors import TollwayError
from tollway.lifecycle import SubscriptionLifecycle
from tollway.subscription_states import Action, Actor
from tollway.vocabulary import BlockTarget

SECRET = "apply-test-secret"
OPERATIONS = (
    "application",
    "issue",
    "rotate",
    "revoke",
    "expire",
    "subscribe",
    "block_subscription",
    "unblock_subscription",
    "cancel_subscription",
    "suspend",
    "resume",
    "change_plan",
    "block_rule",
    "unblock_rule",
    "publish",
    "unpublish",
    "new_api",
    "delete_api",
    "new_plan",
    "delete_application",
)
# (operation, which entity it picks, apply the changes right after it)
Step = tuple[str, int, bool]
steps = st.lists(
    st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 50), st.booleans()), min_size=1, max_size=30
)


class Writer:
    """Performs the random writes through the real write paths, tracking what exists."""

    def __init__(self, db: Database, clock: FakeClock) -> None:
        self.db = db
        self.clock = clock
        self.store = StoreRepository(db, lambda: None, SECRET, timedelta(minutes=5), clock=clock)
        self.catalog = CatalogStore(db, lambda: None)
        self.lifecycle = SubscriptionLifecycle(db, lambda: None, clock=clock)

    async def ids(self, statement: object) -> list[str]:
        async with self.db.session() as session:
            return sorted(str(row) for row in (await session.exec(statement)).all())  # type: ignore[call-overload]

    async def run(self, operation: str, pick: int) -> None:
        def one(items: list[str]) -> str:
            if not items:
                raise LookupError
            return items[pick % len(items)]

        store, catalog = self.store, self.catalog
        apps = await self.ids(select(schema.Application.id))
        keys = await self.ids(select(schema.ApiKey.key_id))
        subs = await self.ids(select(schema.Subscription.id))
        apis = await self.ids(select(schema.Api.id))
        plans = await self.ids(select(schema.Plan.id))
        rules = await self.ids(select(schema.BlockRule.id))
        suffix = f"{pick}-{len(apps) + len(apis) + len(plans)}"
        if operation == "application":
            await store.create_application(f"app-{suffix}")
        elif operation == "issue":
            ttl = timedelta(minutes=pick) if pick % 2 else None
            await store.create_api_key(one(apps), ttl=ttl)
        elif operation == "rotate":
            await store.rotate_api_key(one(keys), grace=timedelta(seconds=pick))
        elif operation == "revoke":
            await store.revoke_api_key(one(keys))
        elif operation == "expire":
            self.clock.advance(minutes=pick)
        elif operation == "subscribe":
            await store.create_subscription(one(apps), one(apis), one(plans))
        elif operation == "block_subscription":
            await store.block_subscription(one(subs))
        elif operation == "unblock_subscription":
            await store.unblock_subscription(one(subs))
        elif operation == "cancel_subscription":
            await store.cancel_subscription(one(subs))
        elif operation in ("suspend", "resume"):
            action = Action.SUSPEND if operation == "suspend" else Action.RESUME
            await self.lifecycle.apply(one(subs), action, Actor.BILLING, reason="test")
        elif operation == "change_plan":

            async def choose(_session: object, subscription: schema.Subscription) -> str:
                return one([plan for plan in plans if plan != subscription.plan_id])

            await self.lifecycle.apply(one(subs), Action.CHANGE_PLAN, Actor.BILLING, choose_plan=choose)
        elif operation == "block_rule":
            target = ("API", "APPLICATION", "API_KEY", "CLIENT_CIDR")[pick % 4]
            value = {
                "API": lambda: one(apis),
                "APPLICATION": lambda: one(apps),
                "API_KEY": lambda: one(keys),
                "CLIENT_CIDR": lambda: str(ipaddress.ip_network(f"10.{pick}.0.0/16")),
            }[target]()
            await store.create_block_rule(target, value)
        elif operation == "unblock_rule":
            await store.delete_block_rule(one(rules))
        elif operation == "publish":
            await catalog.publish_api(one(apis))
        elif operation == "unpublish":
            await catalog.unpublish_api(one(apis))
        elif operation == "new_api":
            draft = ApiDraft(
                name=f"api-{suffix}",
                version="v1",
                context_path=f"/api-{suffix}/v1",
                upstream_urls=("http://127.0.0.1:9",),
                plan_ids=tuple(plans[: 1 + pick % 3]),
            )
            record = await catalog.create_api(draft)
            if pick % 2:
                await catalog.publish_api(record.api.id)
        elif operation == "delete_api":
            await catalog.delete_api(one(apis))
        elif operation == "new_plan":
            await catalog.create_plan(PlanDraft(name=f"plan-{suffix}"))
        elif operation == "delete_application":
            await store.delete_application(one(apps))

    async def run_quietly(self, operation: str, pick: int) -> None:
        """Refused writes (nothing to pick, a state that forbids it) are part of the sequence."""
        with contextlib.suppress(TollwayError, LookupError, ValueError):
            await self.run(operation, pick)


async def last_seq(db: Database) -> int:
    async with db.session() as session:
        newest = (await session.exec(select(func.max(schema.ChangeLogEntry.seq)))).one_or_none()
    return int(newest or 0)


async def changes_after(db: Database, seq: int, topics: frozenset[str]) -> list[Change]:
    entry = schema.ChangeLogEntry
    statement = (
        select(entry).where(col(entry.seq) > seq, col(entry.topic).in_(topics)).order_by(col(entry.seq))
    )
    async with db.session() as session:
        return [change_of(row) for row in (await session.exec(statement)).all()]


async def catch_up(index: KeyIndex, db: Database, position: int) -> int:
    """What the change feed does: apply every change of the index's topics after `position`."""
    head = await last_seq(db)
    changes = await changes_after(db, position, frozenset(index.topics))
    if changes:
        await index.apply(changes)
    return head


async def seed_catalog(writer: Writer) -> None:
    gold = await writer.catalog.create_plan(PlanDraft(name="gold"))
    await writer.catalog.create_plan(PlanDraft(name="silver"))
    await writer.catalog.create_plan(PlanDraft(name="approval", approval_required=True))
    draft = ApiDraft(
        name="weather",
        version="v1",
        context_path="/weather/v1",
        upstream_urls=("http://127.0.0.1:9",),
        plan_ids=(gold.id,),
    )
    record = await writer.catalog.create_api(draft)
    await writer.catalog.publish_api(record.api.id)
    app = await writer.store.create_application("first")
    await writer.store.create_subscription(app.id, record.api.id, gold.id)
    await writer.store.create_api_key(app.id)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=steps)
async def test_incremental_apply_equals_a_full_load(database: Database, sequence: list[Step]) -> None:
    writer = Writer(database, FakeClock(START))
    if not await writer.ids(select(schema.Plan.id)):
        await seed_catalog(writer)
    index = KeyIndex(database)
    position = await last_seq(database)
    await index.load_all()
    for operation, pick, apply_now in sequence:
        await writer.run_quietly(operation, pick)
        if apply_now:
            position = await catch_up(index, database, position)
    await catch_up(index, database, position)
    assert index.snapshot.contents() == (await load_snapshot(database)).contents()


async def test_replica_behind_pruned_changes_loads_in_full_and_ends_identical(database: Database) -> None:
    writer = Writer(database, FakeClock(START))
    await seed_catalog(writer)
    index = KeyIndex(database)
    feed = ChangeFeed(database, poll_seconds=30, retention_seconds=0)
    feed.subscribe(index)
    await feed.start()
    try:
        await feed.stop()  # the replica goes down
        for pick, operation in enumerate(OPERATIONS * 2):
            await writer.run_quietly(operation, pick)
        assert await feed.prune() > 0  # the changes it missed are gone from the log
        await feed.start()  # back: its position is behind the pruned log, so it loads in full
        assert feed.stats()["keymgr"]["full_loads"] == 2
        assert index.snapshot.contents() == (await load_snapshot(database)).contents()
    finally:
        await feed.stop()


def test_a_removed_cidr_rule_stops_blocking() -> None:
    snapshot = KeySnapshot.build(blocked_networks=[])
    snapshot.set_rule("blk_1", (BlockTarget.CLIENT_CIDR.value, "10.31.0.0/16"))
    assert snapshot.client_blocked("10.31.4.5")
    snapshot.set_rule("blk_1", None)
    assert not snapshot.client_blocked("10.31.4.5")
    assert snapshot.blocked_networks == ()
