"""Plan versions through invoice runs (SQLite and PostgreSQL): a price change mid-period leaves the open
period priced as before unless it says "now"; then the period is split at that minute, fee prorated,
usage on each side priced by its version; invoices, lines and billed segments name the version."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from sqlmodel import select

from billing.periods import period_starting_in
from billing.store import BillingRepository
from tests.billing.billing_helpers import DEC, NOV, FakeClock, World, repository, utc
from tollway import schema, schema_billing
from tollway.catalog.limits import PlanLimits
from tollway.catalog.store import CatalogStore
from tollway.catalog.validation import PlanDraft, PricingDraft
from tollway.db import Database
from tollway.vocabulary import VersionEffect


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2026, 11, 1))


@pytest.fixture
def billing(database: Database, clock: FakeClock) -> BillingRepository:
    return repository(database, clock)


@pytest.fixture
def catalog(database: Database, clock: FakeClock) -> CatalogStore:
    return CatalogStore(database, on_commit=lambda: None, clock=clock)


@pytest.fixture
def world(database: Database) -> World:
    return World(database)


def plan(fee: str, unit: str) -> PlanDraft:
    return PlanDraft(
        name="basic",
        limits=PlanLimits(requests_per_minute=100),
        pricing=PricingDraft(currency="EUR", recurring_fee=fee, unit_price=unit),
    )


async def change_price(
    catalog: CatalogStore, clock: FakeClock, at: datetime, effect: VersionEffect = VersionEffect.NEXT_PERIOD
) -> None:
    clock.set(at)
    await catalog.update_plan("basic", plan("60.00", "0.02"), ["pricing"], effect)


def lines(view: object) -> list[tuple[int, str, str, str]]:
    return [(line.plan_version, line.kind, line.quantity, line.amount) for line in view.lines]  # type: ignore[attr-defined]


async def test_a_next_period_change_leaves_the_open_period_as_sold(
    billing: BillingRepository, catalog: CatalogStore, world: World, clock: FakeClock
) -> None:
    row = await catalog.create_plan(plan("30.00", "0.01"))
    api = await world.api(row)
    sub = await world.subscription(await world.application(), api, row, utc(2026, 10, 1))
    await world.usage(sub, utc(2026, 11, 5), success=100)
    await change_price(catalog, clock, utc(2026, 11, 10, 9, 30))
    await world.usage(sub, utc(2026, 11, 20), success=100)
    await world.usage(sub, utc(2026, 12, 3), success=100)

    [nov] = await billing.generate(month=NOV)
    assert lines(nov) == [(1, "FEE", "1", "30.00"), (1, "USAGE", "200", "2.00")]  # all of November at v1
    assert nov.invoice.total == "32.00"
    [dec] = await billing.generate(month=DEC)
    assert lines(dec) == [(2, "FEE", "1", "60.00"), (2, "USAGE", "100", "2.00")]
    assert dec.invoice.total == "62.00"


async def test_a_next_period_change_follows_each_subscriptions_anchor(
    billing: BillingRepository, catalog: CatalogStore, world: World, clock: FakeClock
) -> None:
    row = await catalog.create_plan(plan("30.00", "0.01"))
    api = await world.api(row)
    sub = await world.subscription(await world.application(), api, row, utc(2026, 10, 15), anchor=15)
    await change_price(catalog, clock, utc(2026, 11, 20))
    [nov] = await billing.generate(month=NOV)  # 15 Nov - 15 Dec: sold at version 1
    assert nov.invoice.period_start == utc(2026, 11, 15)
    assert lines(nov) == [(1, "FEE", "1", "30.00"), (1, "USAGE", "0", "0.00")]
    [dec] = await billing.generate(month=DEC)  # 15 Dec - 15 Jan: version 2
    assert lines(dec) == [(2, "FEE", "1", "60.00"), (2, "USAGE", "0", "0.00")]
    assert sub.billing_anchor_day == 15


async def test_a_change_now_splits_the_period_at_the_next_minute(
    billing: BillingRepository, catalog: CatalogStore, world: World, clock: FakeClock, database: Database
) -> None:
    row = await catalog.create_plan(plan("30.00", "0.01"))
    api = await world.api(row)
    sub = await world.subscription(await world.application(), api, row, utc(2026, 10, 1))
    await world.usage(sub, utc(2026, 11, 5), success=100)
    await world.usage(sub, utc(2026, 11, 10, 12, 0, 40), success=10)  # minute 12:00: before the switch
    await change_price(catalog, clock, utc(2026, 11, 10, 12, 0, 30), VersionEffect.INSTANT)  # from 12:01
    await world.usage(sub, utc(2026, 11, 10, 12, 1), success=5)
    await world.usage(sub, utc(2026, 11, 20), success=100)

    [view] = await billing.generate(month=NOV)
    # Version 1 for 9 d 12 h 1 min = 820,860 s of 2,592,000: 30.00 x 820860/2592000 = 9.5006... → 9.50;
    # version 2 for the other 1,771,140 s: 60.00 x 1771140/2592000 = 40.9986... → 41.00.
    # Usage: 110 x 0.01 = 1.10 before 12:01; 105 x 0.02 = 2.10 from then on.
    assert lines(view) == [
        (1, "FEE", "1", "9.50"),
        (1, "USAGE", "110", "1.10"),
        (2, "FEE", "1", "41.00"),
        (2, "USAGE", "105", "2.10"),
    ]
    assert view.invoice.total == "53.70"
    assert view.lines[0].description.startswith("basic v1: Recurring fee, ")
    async with database.session() as session:
        billed = (await session.exec(select(schema_billing.BilledSegment))).all()
    by_version = {segment.plan_version: segment for segment in billed}
    assert (
        schema.as_utc(by_version[1].usage_end)
        == schema.as_utc(by_version[2].usage_start)
        == utc(2026, 11, 10, 12, 1)
    )
    assert (by_version[1].pricing["recurring_fee"], by_version[2].pricing["recurring_fee"]) == (
        "30.00",
        "60.00",
    )

    # Late usage after the switch is corrected under version 2's price, and named so.
    await billing.finalize(view.invoice.id)
    await world.usage(sub, utc(2026, 11, 10, 12, 30), success=10)
    [dec] = await billing.generate(month=DEC)
    [adjustment] = [line for line in dec.lines if line.kind == "ADJUSTMENT"]
    assert (adjustment.plan_version, adjustment.amount) == (2, "0.20")

    export = await billing.export(period_starting_in(*NOV, 0), "csv")
    rows = list(csv.DictReader(io.StringIO(export)))
    assert [row["plan_version"] for row in rows] == ["1", "1", "2", "2"]
