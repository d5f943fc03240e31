"""Price models through invoice runs (SQLite and PostgreSQL): volume and flat-fee tiers, packages and free
trials are stored, priced and invoiced; a trial that ends mid-period splits the fee and the usage."""

from __future__ import annotations

from fractions import Fraction

import pytest
from sqlmodel import select

from billing.store import BillingRepository
from tests.billing.billing_helpers import DEC, NOV, FakeClock, World, repository, utc
from tollway import schema, schema_billing
from tollway.db import Database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2026, 12, 5))


@pytest.fixture
def billing(database: Database, clock: FakeClock) -> BillingRepository:
    return repository(database, clock)


@pytest.fixture
def world(database: Database) -> World:
    return World(database)


def charged(view: object) -> list[tuple[str, str, str]]:
    return [
        (line.kind, line.quantity, line.amount)
        for line in view.lines  # type: ignore[attr-defined]
        if line.kind not in ("INCLUDED", "INFO_THROTTLED", "INFO_REFUSED", "INFO_NON_BILLABLE")
    ]


async def segments(database: Database) -> list[schema_billing.BilledSegment]:
    async with database.session() as session:
        rows = (await session.exec(select(schema_billing.BilledSegment))).all()
        return sorted(rows, key=lambda s: s.id or 0)


async def test_a_trial_ending_mid_month_charges_only_what_follows_it(
    billing: BillingRepository, world: World, database: Database
) -> None:
    plan = await world.plan("trial", recurring_fee="30.00", unit_price="0.01", trial_days=14)
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, utc(2026, 11, 1))
    await world.usage(sub, utc(2026, 11, 10), success=100, throttled=3)  # inside the trial: free
    await world.usage(sub, utc(2026, 11, 14, 23, 59), success=7)  # its last minute: free
    await world.usage(sub, utc(2026, 11, 15), success=200)  # the trial ended at 15 Nov 00:00

    [view] = await billing.generate(month=NOV)
    # 16 of 30 days after the trial: 30.00 x 16/30 = 16.00; 200 x 0.01 = 2.00.
    assert charged(view) == [("TRIAL", "107", "0.00"), ("FEE", "1", "16.00"), ("USAGE", "200", "2.00")]
    assert "Free trial until 2026-11-15 00:00 UTC" in view.lines[0].description
    assert view.invoice.total == "18.00"
    trial, paid = await segments(database)
    assert (trial.share, schema.as_utc(trial.trial_until), trial.amount) == ("7/15", utc(2026, 11, 15), "0")
    assert (schema.as_utc(trial.usage_start), schema.as_utc(trial.usage_end)) == (
        utc(2026, 11, 1),
        utc(2026, 11, 15),
    )
    assert (paid.share, paid.trial_until, paid.amount) == ("8/15", None, "18.00")

    # December is outside the trial: one ordinary segment.
    [dec] = await billing.generate(month=DEC)
    assert dec.invoice.total == "30.00"


async def test_a_trial_ends_at_the_next_whole_minute(billing: BillingRepository, world: World) -> None:
    # Created 1 Nov 10:00:30.5 → billable from 10:00:30 → a 1-day trial ends 2 Nov 10:01:00, where the
    # usage's minute windows can be split exactly.
    plan = await world.plan("short", recurring_fee="30.00", unit_price="1.00", trial_days=1)
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, utc(2026, 11, 1, 10, 0, 30, 500_000))
    await world.usage(sub, utc(2026, 11, 2, 10, 0, 45), success=5)  # minute 10:00: still the trial
    await world.usage(sub, utc(2026, 11, 2, 10, 1), success=2)  # minute 10:01: charged
    [view] = await billing.generate(month=NOV)
    paid_seconds = (utc(2026, 12, 1) - utc(2026, 11, 2, 10, 1)).total_seconds()
    share = Fraction(int(paid_seconds), 30 * 86400)
    fee = next(line for line in view.lines if line.kind == "FEE")
    assert fee.details == {
        "share": f"{share.numerator}/{share.denominator}",
        "stretches": [["2026-11-02T10:01:00+00:00", "2026-12-01T00:00:00+00:00"]],
    }
    assert fee.description == "short: Recurring fee, Nov 2-30 (prorated)"
    assert charged(view)[0] == ("TRIAL", "5", "0.00")
    assert ("USAGE", "2", "2.00") in charged(view)


async def test_a_trial_starts_at_approval(billing: BillingRepository, world: World, clock: FakeClock) -> None:
    plan = await world.plan("gated", recurring_fee="30.00", trial_days=10, approval_required=True)
    api = await world.api(plan)
    sub = await world.subscription(
        await world.application(), api, plan, utc(2026, 11, 1), state="PENDING_APPROVAL"
    )
    clock.set(utc(2026, 11, 6))
    await billing.approve(sub.id)
    [view] = await billing.generate(month=NOV)
    assert view.invoice.total == "15.00"  # trial 6-16 Nov, then 15 of 30 days paid


async def test_late_usage_inside_a_finished_trial_stays_free(
    billing: BillingRepository, world: World
) -> None:
    plan = await world.plan("trial", recurring_fee="30.00", unit_price="0.01", trial_days=14)
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, utc(2026, 11, 1))
    [nov] = await billing.generate(month=NOV)
    await billing.finalize(nov.invoice.id)
    await world.usage(sub, utc(2026, 11, 3), success=50)  # late, inside the trial
    await world.usage(sub, utc(2026, 11, 20), success=10)  # late, after it
    [dec] = await billing.generate(month=DEC)
    adjustments = sorted(line.amount for line in dec.lines if line.kind == "ADJUSTMENT")
    assert adjustments == ["0.00", "0.10"]
    assert dec.invoice.total == "30.10"


async def test_volume_flat_fee_and_package_plans_are_invoiced(
    billing: BillingRepository, world: World
) -> None:
    volume = await world.plan(
        "volume",
        currency="USD",
        tier_mode="VOLUME",
        tiers=[
            {"up_to": 10_000, "unit_price": "0.0010", "flat_fee": "10"},
            {"up_to": 50_000, "unit_price": "0.0008", "flat_fee": "10"},
            {"up_to": 100_000, "unit_price": "0.0006", "flat_fee": "10"},
            {"up_to": 0, "unit_price": "0.0004", "flat_fee": "10"},
        ],
    )
    packages = await world.plan("packages", included_requests=100, package_size=100, package_price="5.00")
    api = await world.api(volume, packages)
    app = await world.application()
    on_volume = await world.subscription(app, api, volume, utc(2026, 10, 1))
    on_packages = await world.subscription(await world.application(), api, packages, utc(2026, 10, 1))
    await world.usage(on_volume, utc(2026, 11, 3), success=65_000)
    await world.usage(on_packages, utc(2026, 11, 3), success=201)

    views = {view.invoice.currency: view for view in await billing.generate(month=NOV)}
    # Lago's examples: 65,000 x 0.0006 + 10 = 49.00; 201 requests, 100 free, 5.00 per 100 → 10.00.
    assert charged(views["USD"]) == [("TIER", "65000", "39.00"), ("TIER_FLAT", "1", "10.00")]
    assert views["USD"].invoice.total == "49.00"
    assert charged(views["EUR"]) == [("PACKAGE", "2", "10.00")]
    assert views["EUR"].invoice.total == "10.00"
