"""Invoice runs on SQLite and PostgreSQL: totals, periods, finalize/void/numbering, adjustments, plan
changes, bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlmodel import select

from billing.periods import Period, validate_period
from billing.store import BillingRepository
from tests.billing.billing_helpers import (
    DEC,
    EPOCH,
    JAN,
    NOV,
    ONE_DAY,
    FakeClock,
    World,
    dump_tables,
    repository,
    utc,
)
from tollway import schema, schema_billing
from tollway.db import Database
from tollway.errors import FailedPrecondition, InvalidArgument, NotFound


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2026, 12, 5))


@pytest.fixture
def billing(database: Database, clock: FakeClock) -> BillingRepository:
    return repository(database, clock)


@pytest.fixture
def world(database: Database) -> World:
    return World(database)


def kinds(view: object) -> list[str]:
    return [line.kind for line in view.lines]  # type: ignore[attr-defined]


async def test_month_invoice_has_exact_total_and_lines(billing: BillingRepository, world: World) -> None:
    plan = await world.plan(
        "gold", recurring_fee="49.00", included_requests=1000, unit_price="0.0004", minimum_charge="0"
    )
    api = await world.api(plan)
    app = await world.application()
    sub = await world.subscription(app, api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 3, 10, 0, 5), success=1_000_000, throttled=40)
    await world.usage(sub, utc(2026, 11, 20, 8, 30), success=235_567, client_error=3)

    [view] = await billing.generate(month=NOV)
    inv = view.invoice
    assert (inv.state, inv.currency, inv.application_id) == ("DRAFT", "EUR", app.id)
    assert schema.as_utc(inv.period_start) == utc(2026, 11, 1)
    assert schema.as_utc(inv.period_end) == utc(2026, 12, 1)
    # 49.00 + (1,235,567 - 1,000) x 0.0004 = 49.00 + 493.8268 → 493.83
    assert inv.total == "542.83"
    assert kinds(view) == ["FEE", "INCLUDED", "USAGE", "INFO_NON_BILLABLE", "INFO_THROTTLED"]
    assert inv.usage_completeness == "UNKNOWN" and "not reported" in inv.completeness_note
    assert inv.number is None


async def test_period_boundary_last_millisecond_and_midnight(
    billing: BillingRepository, world: World
) -> None:
    plan = await world.plan("unit", unit_price="1.00")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 30, 23, 59, 59, 999000), success=1)
    await world.usage(sub, utc(2026, 12, 1, 0, 0, 0), success=10)

    [nov] = await billing.generate(month=NOV)
    [dec] = await billing.generate(month=DEC)
    assert (nov.invoice.total, dec.invoice.total) == ("1.00", "10.00")


async def test_anchored_periods_follow_the_anchor_day(billing: BillingRepository, world: World) -> None:
    plan = await world.plan("unit", unit_price="1.00")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH, anchor=15)
    await world.usage(sub, utc(2026, 11, 14, 23, 59), success=1)  # October's period (Oct 15 - Nov 15)
    await world.usage(sub, utc(2026, 11, 15, 0, 0), success=2)
    await world.usage(sub, utc(2026, 12, 14, 12, 0), success=3)
    [view] = await billing.generate(month=NOV)
    assert schema.as_utc(view.invoice.period_start) == utc(2026, 11, 15)
    assert schema.as_utc(view.invoice.period_end) == utc(2026, 12, 15)
    assert view.invoice.total == "5.00"


async def test_finalize_twice_is_one_invoice_with_gapless_numbers(
    billing: BillingRepository, world: World
) -> None:
    plan = await world.plan("fee", recurring_fee="10.00")
    api = await world.api(plan)
    apps = [await world.application(f"customer-{i}") for i in range(3)]
    for app in apps:
        await world.subscription(app, api, plan, EPOCH)
    views = await billing.generate(month=NOV)
    assert len(views) == 3

    first = await billing.finalize(views[0].invoice.id)
    again = await billing.finalize(views[0].invoice.id)
    assert first.invoice.number == again.invoice.number
    assert again.invoice.state == "FINALIZED"
    numbers = [first.invoice.number]
    for view in views[1:]:
        numbers.append((await billing.finalize(view.invoice.id)).invoice.number)
    suffixes = sorted(int(n.removeprefix("INV-")) for n in numbers)  # type: ignore[union-attr]
    assert suffixes == list(range(suffixes[0], suffixes[0] + 3))
    assert len(await billing.list_invoices(state="FINALIZED")) == 3
    # Finalized invoices are immutable: regenerating the period leaves them as they are.
    before = await dump_tables(billing._db)
    regenerated = await billing.generate(month=NOV)
    assert {v.invoice.id for v in regenerated} == {v.invoice.id for v in views}
    after = await dump_tables(billing._db)
    assert after["invoice"] == before["invoice"] and after["invoice_line"] == before["invoice_line"]


async def test_regenerating_a_draft_replaces_it(billing: BillingRepository, world: World) -> None:
    plan = await world.plan("unit", unit_price="1.00")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 2), success=2)
    [draft] = await billing.generate(month=NOV)
    await world.usage(sub, utc(2026, 11, 3), success=3)
    [again] = await billing.generate(month=NOV)
    assert again.invoice.id == draft.invoice.id
    assert again.invoice.total == "5.00"
    assert len(await billing.list_invoices()) == 1


async def test_late_usage_becomes_an_adjustment_on_the_next_invoice(
    billing: BillingRepository, world: World
) -> None:
    plan = await world.plan("unit", recurring_fee="5.00", unit_price="0.50")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 10), success=10)
    [nov] = await billing.generate(month=NOV)
    nov = await billing.finalize(nov.invoice.id)
    assert nov.invoice.total == "10.00"

    # Usage for November arrives after the invoice was finalized (e.g. a delayed Envoy).
    await world.usage(sub, utc(2026, 11, 29, 22, 0), success=4, throttled=1)
    await world.usage(sub, utc(2026, 12, 2), success=2)
    assert (await billing.get_invoice(nov.invoice.id)).invoice.total == "10.00"

    [dec] = await billing.generate(month=DEC)
    adjustment = [line for line in dec.lines if line.kind == "ADJUSTMENT"]
    assert len(adjustment) == 1 and adjustment[0].amount == "2.00"
    assert "+4 successful" in adjustment[0].description
    assert dec.invoice.total == "8.00"  # 5.00 fee + 2 x 0.50 + 2.00 adjustment
    dec = await billing.finalize(dec.invoice.id)

    # Billed once: January carries no second adjustment for the same late requests.
    [jan] = await billing.generate(month=JAN)
    assert "ADJUSTMENT" not in kinds(jan)
    unchanged = await billing.get_invoice(nov.invoice.id)
    assert unchanged.invoice.total == "10.00" and len(unchanged.lines) == len(nov.lines)


async def test_a_damaged_pricing_snapshot_is_refused_not_priced(
    billing: BillingRepository, world: World, database: Database
) -> None:
    plan = await world.plan("unit", recurring_fee="5.00", unit_price="0.50")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 10), success=10)
    [nov] = await billing.generate(month=NOV)
    await billing.finalize(nov.invoice.id)
    async with database.session() as session:
        [segment] = (await session.exec(select(schema_billing.BilledSegment))).all()
        segment.pricing = {**segment.pricing, "unit_price": "NaN"}
        session.add(segment)
        await session.commit()
    await world.usage(sub, utc(2026, 11, 29), success=4)  # late: the adjustment re-reads the snapshot
    before = await dump_tables(database)
    with pytest.raises(FailedPrecondition, match=rf"billed segment {segment.id} .* must be a finite amount"):
        await billing.generate(month=DEC)
    assert await dump_tables(database) == before


async def test_void_keeps_the_record_and_the_period_can_be_reissued(
    billing: BillingRepository, world: World
) -> None:
    plan = await world.plan("fee", recurring_fee="10.00")
    api = await world.api(plan)
    await world.subscription(await world.application(), api, plan, EPOCH)
    [view] = await billing.generate(month=NOV)
    final = await billing.finalize(view.invoice.id)
    with pytest.raises(InvalidArgument, match="reason"):
        await billing.void(final.invoice.id, "  ")
    voided = await billing.void(final.invoice.number or "", "issued to the wrong address")
    assert voided.invoice.state == "VOID"
    assert voided.invoice.number == final.invoice.number  # the number stays used: no gap, no reuse
    assert voided.invoice.void_reason == "issued to the wrong address"
    assert len(voided.lines) == len(final.lines)
    assert (
        await billing.void(final.invoice.id, "again")
    ).invoice.void_reason == "issued to the wrong address"
    with pytest.raises(FailedPrecondition):
        await billing.finalize(final.invoice.id)
    [reissued] = await billing.generate(month=NOV)
    assert reissued.invoice.id != final.invoice.id
    replacement = await billing.finalize(reissued.invoice.id)
    assert int(replacement.invoice.number[4:]) == int(final.invoice.number[4:]) + 1  # type: ignore[index]
    assert {v.invoice.state for v in await billing.list_invoices()} == {"VOID", "FINALIZED"}


async def test_plan_change_mid_month_prorates(
    billing: BillingRepository, world: World, clock: FakeClock
) -> None:
    basic = await world.plan("basic", recurring_fee="30.00", unit_price="0.01")
    pro = await world.plan("pro", recurring_fee="90.00", included_requests=3000, unit_price="0.001")
    api = await world.api(basic, pro)
    sub = await world.subscription(await world.application(), api, basic, EPOCH)
    await world.usage(sub, utc(2026, 11, 5), success=100)
    clock.set(utc(2026, 11, 11))  # 10 of 30 days on basic, 20 on pro
    changed = await billing.change_plan(sub.id, "pro")
    assert changed.plan_id == pro.id
    await world.usage(sub, utc(2026, 11, 20), plan_id=pro.id, success=5000)

    [view] = await billing.generate(month=NOV)
    by_kind = [(line.plan_id, line.kind, line.amount) for line in view.lines]
    assert (basic.id, "FEE", "10.00") in by_kind  # 30.00 x 10/30
    assert (basic.id, "USAGE", "1.00") in by_kind  # 100 x 0.01
    assert (pro.id, "FEE", "60.00") in by_kind  # 90.00 x 20/30
    # pro's allowance is prorated too: floor(3000 x 20/30) = 2000 included, 3000 x 0.001 charged.
    assert (pro.id, "USAGE", "3.00") in by_kind
    assert view.invoice.total == "74.00"
    events = await billing.events(sub.id)
    assert [(e.kind, e.from_plan_id, e.to_plan_id) for e in events] == [("PLAN_CHANGED", basic.id, pro.id)]


async def test_plan_change_at_a_sub_second_instant_prices_the_whole_month(
    billing: BillingRepository, world: World, clock: FakeClock
) -> None:
    # 30-day month, 30.00 on each plan: whatever the cut, the fees add up to exactly 30.00.
    basic = await world.plan("basic", recurring_fee="30.00")
    pro = await world.plan("pro", recurring_fee="30.00")
    api = await world.api(basic, pro)
    sub = await world.subscription(await world.application(), api, basic, EPOCH)
    clock.set(utc(2026, 11, 10, 12, 0, 0, 500_000))
    await billing.change_plan(sub.id, "pro")
    [event] = await billing.events(sub.id)
    assert schema.as_utc(event.at) == utc(2026, 11, 10, 12)  # stamped at the second that cuts
    [view] = await billing.generate(month=NOV)
    fees = [line for line in view.lines if line.kind == "FEE"]
    assert [line.details["share"] for line in fees] == ["19/60", "41/60"]  # 9.5 and 20.5 days
    assert view.invoice.total == "30.00"


async def test_subscription_approved_mid_month_pays_from_approval(
    billing: BillingRepository, world: World, clock: FakeClock
) -> None:
    plan = await world.plan("gated", recurring_fee="30.00", approval_required=True)
    api = await world.api(plan)
    sub = await world.subscription(
        await world.application(), api, plan, utc(2026, 11, 1), state="PENDING_APPROVAL"
    )
    assert await billing.generate(month=NOV) == []  # pending: nothing to bill
    clock.set(utc(2026, 11, 16))
    await billing.approve(sub.id)
    [view] = await billing.generate(month=NOV)
    assert view.invoice.total == "15.00"


async def test_scope_by_application_and_subscription(billing: BillingRepository, world: World) -> None:
    plan = await world.plan("fee", recurring_fee="1.00")
    api = await world.api(plan)
    a, b = await world.application(), await world.application()
    sub_a = await world.subscription(a, api, plan, EPOCH)
    await world.subscription(b, api, plan, EPOCH)
    only_a = await billing.generate(month=NOV, application_id=a.id)
    assert [v.invoice.application_id for v in only_a] == [a.id]
    only_sub = await billing.generate(month=NOV, subscription_id=sub_a.id)
    assert [v.invoice.id for v in only_sub] == [only_a[0].invoice.id]
    assert len(await billing.list_invoices()) == 1


async def test_generate_with_request_id_is_idempotent(billing: BillingRepository, world: World) -> None:
    plan = await world.plan("unit", unit_price="1.00")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 2), success=2)
    first = await billing.generate(month=NOV, request_id="run-2026-11")
    await world.usage(sub, utc(2026, 11, 3), success=5)
    replay = await billing.generate(month=NOV, request_id="run-2026-11")
    assert [v.invoice.id for v in replay] == [v.invoice.id for v in first]
    assert replay[0].invoice.total == "2.00"  # the replay answers; it does not run again


async def test_explicit_period_and_usage_summary(billing: BillingRepository, world: World) -> None:
    plan = await world.plan("unit", unit_price="0.10", monthly_quota=10, quota_policy="SOFT",
                            overage_price="0.20")  # fmt: skip
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    # UsageWindow.success counts every successful request, the 5 admitted beyond the soft quota too.
    await world.usage(sub, utc(2026, 11, 2), success=15, overage=5, throttled=2)
    period = validate_period(utc(2026, 11, 1), utc(2026, 11, 8))
    [view] = await billing.generate(period=period)
    assert view.invoice.total == "2.00"  # 10 x 0.10 + 5 x 0.20
    [row] = await billing.usage_summary(sub.id, period)
    assert (row.plan_id, row.usage.success, row.usage.overage, row.usage.throttled) == (plan.id, 10, 5, 2)


async def test_bad_input_changes_nothing(
    billing: BillingRepository, world: World, database: Database
) -> None:
    weird = await world.plan("weird", currency="XXX", unit_price="1.00")
    api = await world.api(weird)
    sub = await world.subscription(await world.application(), api, weird, EPOCH)
    await world.usage(sub, utc(2026, 11, 2), success=2)
    before = await dump_tables(database)
    with pytest.raises(FailedPrecondition, match=r"plan weird .* currency"):
        await billing.generate(month=NOV)
    with pytest.raises(NotFound):
        await billing.generate(month=NOV, subscription_id="sub_missing")
    with pytest.raises(NotFound):
        await billing.generate(month=NOV, application_id="app_missing")
    with pytest.raises(InvalidArgument, match="after its start"):
        validate_period(utc(2026, 11, 8), utc(2026, 11, 1))
    with pytest.raises(InvalidArgument):
        await billing.generate()
    with pytest.raises(NotFound):
        await billing.usage_summary("sub_missing", Period(utc(2026, 11, 1), utc(2026, 12, 1)))
    with pytest.raises(NotFound):
        await billing.finalize("inv_missing")
    with pytest.raises(NotFound):
        await billing.approve("sub_missing")
    with pytest.raises(InvalidArgument):
        await billing.list_invoices(state="PAID")
    assert await dump_tables(database) == before


async def test_workflow_transitions(billing: BillingRepository, world: World, database: Database) -> None:
    plan = await world.plan("gated", approval_required=True)
    other = await world.plan("other")
    api = await world.api(plan, other)
    pending = await world.subscription(await world.application(), api, plan, EPOCH, state="PENDING_APPROVAL")
    second = await world.subscription(
        await world.application(), api, plan, EPOCH + ONE_DAY, state="PENDING_APPROVAL"
    )
    assert [s.id for s in await billing.list_pending()] == [pending.id, second.id]
    start_revision = await database.current_revision()

    before = await dump_tables(database)
    with pytest.raises(InvalidArgument, match="reason"):
        await billing.reject(second.id, "")
    with pytest.raises(FailedPrecondition):
        await billing.suspend(pending.id, "non-payment")  # not active yet
    with pytest.raises(FailedPrecondition):
        await billing.resume(pending.id)
    with pytest.raises(InvalidArgument, match="not offered"):
        await billing.change_plan(pending.id, "no-such-plan")
    assert await dump_tables(database) == before

    assert (await billing.approve(pending.id)).state == "ACTIVE"
    rejected = await billing.reject(second.id, "no business address")
    assert (rejected.state, rejected.state_reason) == ("REJECTED", "no business address")
    assert (await billing.suspend(pending.id, "invoice INV-000001 unpaid")).state == "SUSPENDED"
    assert (await billing.resume(pending.id)).state == "ACTIVE"
    with pytest.raises(FailedPrecondition):
        await billing.approve(pending.id)
    assert await billing.list_pending() == []
    assert [e.kind for e in await billing.events(pending.id)] == ["APPROVED", "SUSPENDED", "RESUMED"]
    async with database.session() as session:
        revision = await session.get(schema.ChangeRevision, 1)
        # Each gateway-visible change bumps it once; the refused ones above not at all.
        assert revision is not None and revision.value == start_revision + 4


async def test_csv_and_jsonl_export(billing: BillingRepository, world: World) -> None:
    import csv
    import io
    import json

    plan = await world.plan("unit", recurring_fee="3.00", unit_price="0.25")
    api = await world.api(plan)
    sub = await world.subscription(await world.application(), api, plan, EPOCH)
    await world.usage(sub, utc(2026, 11, 2), success=4)
    [view] = await billing.generate(month=NOV)
    await billing.finalize(view.invoice.id)
    period = Period(utc(2026, 11, 1), utc(2026, 12, 1))
    rows = list(csv.DictReader(io.StringIO(await billing.export(period, "csv"))))
    assert [r["kind"] for r in rows] == ["FEE", "USAGE"]
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(rows[0]["invoice_total"]) == Decimal("4.00")
    [doc] = [json.loads(line) for line in (await billing.export(period, "jsonl")).splitlines()]
    assert doc["number"].startswith("INV-") and doc["total"] == "4.00" and len(doc["lines"]) == 2
    with pytest.raises(InvalidArgument):
        await billing.export(period, "xml")


async def test_a_run_of_many_subscriptions_uses_the_bulk_path(
    billing: BillingRepository, world: World
) -> None:
    """Enough rows for COPY on PostgreSQL: the invoices read back exactly as priced."""
    plan = await world.plan("bulk", recurring_fee="2.00", unit_price="0.10")
    api = await world.api(plan)
    subs = []
    for i in range(120):
        sub = await world.subscription(await world.application(f"bulk-{i:03d}"), api, plan, EPOCH)
        await world.usage(sub, utc(2026, 11, 2), success=i)
        subs.append(sub)
    views = await billing.generate(month=NOV)
    assert len(views) == 120
    listed = {v.invoice.application_id: v for v in await billing.list_invoices(with_lines=True)}
    for i, sub in enumerate(subs):
        view = listed[sub.application_id]
        assert Decimal(view.invoice.total) == Decimal("2.00") + Decimal(i) * Decimal("0.10")
        assert [line.kind for line in view.lines][:2] == ["FEE", "USAGE"]
        assert view.lines[0].details == {
            "share": "1/1",
            "stretches": [["2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"]],
        }
    final = await billing.finalize(views[-1].invoice.id)
    assert final.invoice.number == "INV-000001"


async def test_concurrent_finalizing_numbers_without_gaps_or_duplicates(
    billing: BillingRepository, world: World, database: Database, clock: FakeClock
) -> None:
    import asyncio

    plan = await world.plan("fee", recurring_fee="1.00")
    api = await world.api(plan)
    for i in range(6):
        await world.subscription(await world.application(f"c-{i}"), api, plan, EPOCH)
    views = await billing.generate(month=NOV)
    # Two repositories (as two admin replicas would have) finalizing at once, each invoice twice.
    other = BillingRepository(database, lambda: None, clock=clock)
    calls = [repo.finalize(v.invoice.id) for v in views for repo in (billing, other)]
    results = await asyncio.gather(*calls)
    numbers = {r.invoice.id: r.invoice.number for r in results}
    assert len(numbers) == 6
    assert sorted(numbers.values()) == [f"INV-{i:06d}" for i in range(1, 7)]
    for r in results:
        assert r.invoice.number == numbers[r.invoice.id]
