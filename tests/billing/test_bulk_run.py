"""An invoice run large enough for the bulk paths (COPY, set-based UPDATE/DELETE on PostgreSQL;
executemany on SQLite): exact totals, lines and segments written once, drafts replaced in place."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import select

from billing.store import BillingRepository
from tests.billing.billing_helpers import EPOCH, NOV, FakeClock, World, repository, utc
from tollway import schema, schema_billing, schema_usage
from tollway.db import Database

CUSTOMERS = 120  # above the 100-row threshold of the bulk paths


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2026, 12, 5))


@pytest.fixture
def billing(database: Database, clock: FakeClock) -> BillingRepository:
    return repository(database, clock)


async def _count(db: Database, model: type[schema.SQLModel]) -> int:
    async with db.session() as session:
        return (await session.exec(select(func.count()).select_from(model))).one()


async def test_large_run_prices_every_customer_and_regenerates_in_place(
    billing: BillingRepository, database: Database, clock: FakeClock
) -> None:
    world = World(database)
    plan = await world.plan("bulk", recurring_fee="1.00", included_requests=10, unit_price="0.0004")
    api = await world.api(plan)
    subs = []
    async with database.session() as session:
        for i in range(CUSTOMERS):
            app = schema.Application(id=f"app_bulk_{i:03d}", name=f"bulk-{i}")
            sub = schema.Subscription(
                id=f"sub_bulk_{i:03d}", application_id=app.id, api_id=api.id, plan_id=plan.id,
                state="ACTIVE", created_at=EPOCH, updated_at=EPOCH,
            )  # fmt: skip
            session.add(app)
            session.add(sub)
            subs.append(sub)
            session.add(
                schema_usage.UsageWindow(
                    granularity="minute", window_start=utc(2026, 11, 2, 3, i % 60), api_id=api.id,
                    subscription_id=sub.id, application_id=app.id, plan_id=plan.id, success=1000 * i,
                    throttled=i % 3,
                )
            )  # fmt: skip
        await session.commit()

    def expected(i: int, extra: int = 0) -> str:
        billable = max(0, 1000 * i + extra - 10)
        return str(Decimal("1.00") + (Decimal("0.0004") * billable).quantize(Decimal("0.01")))

    views = await billing.generate(month=NOV)
    assert len(views) == CUSTOMERS
    by_app = {view.invoice.application_id: view for view in views}
    for i in range(CUSTOMERS):
        view = by_app[f"app_bulk_{i:03d}"]
        assert view.invoice.total == expected(i), i
        assert view.invoice.state == "DRAFT"
    stored = {v.invoice.id: v for v in await billing.list_invoices(with_lines=True)}
    assert {v.invoice.id: v.invoice.total for v in stored.values()} == {
        v.invoice.id: v.invoice.total for v in views
    }
    lines = sum(len(v.lines) for v in stored.values())
    assert lines == sum(len(v.lines) for v in views) > 3 * CUSTOMERS  # fee, included, usage (+ info)
    assert await _count(database, schema_billing.BilledSegment) == CUSTOMERS

    # More usage, then the run again: same invoices, new totals, nothing written twice.
    await world.usage(subs[7], utc(2026, 11, 20), success=5000)
    clock.set(utc(2026, 12, 6))
    again = await billing.generate(month=NOV)
    assert {v.invoice.id for v in again} == set(stored)
    totals = {v.invoice.application_id: v.invoice.total for v in again}
    assert totals["app_bulk_007"] == expected(7, 5000) != expected(7)
    assert totals["app_bulk_008"] == expected(8)
    reread = {v.invoice.id: v for v in await billing.list_invoices(with_lines=True)}
    assert {i: v.invoice.total for i, v in reread.items()} == {v.invoice.id: v.invoice.total for v in again}
    assert all(schema.as_utc(v.invoice.updated_at) == utc(2026, 12, 6) for v in reread.values())
    assert all(schema.as_utc(v.invoice.created_at) == utc(2026, 12, 5) for v in reread.values())
    assert sum(len(v.lines) for v in reread.values()) == lines
    assert await _count(database, schema_billing.BilledSegment) == CUSTOMERS
    assert await _count(database, schema_billing.Invoice) == CUSTOMERS


async def test_a_draft_with_nothing_left_to_bill_is_removed_on_regeneration(
    billing: BillingRepository, database: Database
) -> None:
    world = World(database)
    plan = await world.plan("free-with-currency")  # EUR, every price zero: only informational lines
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 4), throttled=3)
    [draft] = await billing.generate(month=NOV)
    assert [line.kind for line in draft.lines] == ["INFO_THROTTLED"] and draft.invoice.total == "0.00"
    async with database.session() as session:  # the usage is gone (e.g. re-summarized elsewhere)
        for row in (await session.exec(select(schema_usage.UsageWindow))).all():
            await session.delete(row)
        await session.commit()
    assert await billing.generate(month=NOV) == []
    assert await billing.list_invoices() == []
    assert await _count(database, schema_billing.InvoiceLine) == 0
