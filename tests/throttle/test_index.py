"""The throttle's plan/subscription view, loaded from the database (SQLite and PostgreSQL), and the
catalog's shadow_mode field it relies on."""

from __future__ import annotations

from tests.throttle.throttle_fixtures import unique
from throttle.index import ThrottleIndex
from tollway import schema
from tollway.catalog.limits import PlanLimits
from tollway.catalog.servicer import plan_from_proto, plan_to_proto
from tollway.catalog.store import CatalogStore
from tollway.catalog.v1 import catalog_pb2
from tollway.db import Database


async def _rows(db: Database) -> tuple[schema.Plan, schema.Subscription]:
    plan = schema.Plan(
        id=schema.new_id("plan"),
        name=unique("gold"),
        requests_per_second=2,
        requests_per_minute=60,
        requests_per_hour=1000,
        requests_per_day=5000,
        monthly_quota=100_000,
        quota_policy="SOFT",
        shadow_mode=True,
    )
    api = schema.Api(id=schema.new_id("api"), name="w", context_path=f"/{unique('w')}")
    app = schema.Application(id=schema.new_id("app"), name="a")
    sub = schema.Subscription(
        id=schema.new_id("sub"), application_id=app.id, api_id=api.id, plan_id=plan.id, billing_anchor_day=15
    )
    async with db.session() as session:
        session.add(plan)
        session.add(api)
        session.add(app)
        await session.flush()
        session.add(sub)
        await session.commit()
    return plan, sub


async def test_reload_reads_plans_and_subscriptions(database: Database) -> None:
    plan, sub = await _rows(database)
    index = ThrottleIndex(database)
    assert not index.snapshot.loaded
    await index.reload()
    assert index.snapshot.loaded
    assert index.snapshot.plans[plan.id] == PlanLimits(
        requests_per_second=2,
        requests_per_minute=60,
        requests_per_hour=1000,
        requests_per_day=5000,
        monthly_quota=100_000,
        quota_policy="SOFT",
        shadow_mode=True,
    )
    info = index.snapshot.subscriptions[sub.id]
    assert (info.plan_id, info.billing_anchor_day, info.state) == (plan.id, 15, "ACTIVE")


async def test_plan_change_is_seen_on_reload(database: Database) -> None:
    plan, _ = await _rows(database)
    index = ThrottleIndex(database)
    await index.reload()
    store = CatalogStore(database, lambda: None)
    draft = plan_from_proto(
        catalog_pb2.Plan(name=plan.name, limits=catalog_pb2.PlanLimits(requests_per_minute=7))
    )
    await store.update_plan(plan.id, draft, ("limits",))
    await index.reload()
    limits = index.snapshot.plans[plan.id]
    assert (limits.requests_per_minute, limits.requests_per_second, limits.shadow_mode) == (7, 0, False)


async def test_catalog_round_trips_shadow_mode(database: Database) -> None:
    store = CatalogStore(database, lambda: None)
    proto = catalog_pb2.Plan(
        name=unique("shadow"), limits=catalog_pb2.PlanLimits(requests_per_minute=3, shadow_mode=True)
    )
    created = await store.create_plan(plan_from_proto(proto))
    assert created.shadow_mode is True
    assert plan_to_proto(created).limits.shadow_mode is True
