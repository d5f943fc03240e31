"""Prepaid credit, spend caps and alerts against SQLite and the real PostgreSQL: the ledger and the
balance agree exactly under concurrent top-ups and burns by two metering replicas, metering the same
counts again burns nothing, the gate rows flip when the balance crosses zero, alerts are raised once,
and bad input writes nothing."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlmodel import select

from billing.credit import APPLICATION, SUBSCRIPTION
from billing.metering import Metering
from billing.store import BillingRepository
from tests.billing.billing_helpers import Commits, FakeClock, World, dump_tables, repository, utc
from tollway.db import Database
from tollway.errors import InvalidArgument, NotFound
from tollway.schema_billing import BillingGate, CreditEntry

NOW = utc(2026, 12, 5, 12)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def billing(database: Database, clock: FakeClock) -> BillingRepository:
    return repository(database, clock)


@pytest.fixture
def world(database: Database) -> World:
    return World(database)


async def _prepaid(world: World, unit_price: str = "0.01", **fields: object) -> tuple:
    plan = await world.plan("prepaid", currency="USD", unit_price=unit_price, prepaid=True, **fields)
    api = await world.api(plan)
    app = await world.application()
    sub = await world.subscription(app, api, plan, utc(2026, 11, 1))
    return plan, app, sub


async def _gate(database: Database, gate_id: str) -> BillingGate | None:
    async with database.session() as session:
        return await session.get(BillingGate, gate_id)


async def _ledger(database: Database, app_id: str) -> list[CreditEntry]:
    async with database.session() as session:
        rows = await session.exec(select(CreditEntry).where(CreditEntry.application_id == app_id))
        return list(rows.all())


async def _balance(billing: BillingRepository, app_id: str) -> Decimal:
    accounts = await billing.credit.accounts(app_id, "USD")
    return Decimal(accounts[0].balance_minor) / 100 if accounts else Decimal(0)


async def test_usage_burns_credit_once_and_the_gate_flips(
    billing: BillingRepository, world: World, database: Database, clock: FakeClock
) -> None:
    _, app, sub = await _prepaid(world)
    metering = Metering(database, Commits(), clock)
    posted = await billing.credit.top_up(app.id, "USD", "0.05", "t1")
    assert posted.created and posted.balance_minor == 5
    gate = await _gate(database, f"credit:{app.id}:USD")
    assert gate is not None and not gate.refused

    await world.usage(sub, NOW, success=3)
    for _ in range(3):  # the same counts, metered again and again
        await metering.round()
    assert await _balance(billing, app.id) == Decimal("0.02")
    await world.usage(sub, NOW, success=2, client_error=7, throttled=4)  # only successes bill
    await metering.round()
    assert await _balance(billing, app.id) == 0
    gate = await _gate(database, f"credit:{app.id}:USD")
    assert gate is not None and gate.refused

    # Overdrawn by requests admitted before the gateway learned: the balance goes below zero, exactly.
    await world.usage(sub, NOW, success=1)
    await metering.round()
    assert await _balance(billing, app.id) == Decimal("-0.01")
    entries = await _ledger(database, app.id)
    assert sum(e.amount_minor for e in entries) == -1
    assert [e.kind for e in sorted(entries, key=lambda e: e.id or 0)] == ["TOP_UP", "BURN", "BURN", "BURN"]

    await billing.credit.top_up(app.id, "USD", "1.00", "t2")
    gate = await _gate(database, f"credit:{app.id}:USD")
    assert gate is not None and not gate.refused
    # The credit alerts of the first funding were raised once each; the top-up re-armed them.
    alerts = await billing.list_alerts(target_id=app.id, kinds=["CREDIT"])
    assert sorted((a.period, a.threshold) for a in alerts) == [
        ("credit-1", 50),
        ("credit-1", 80),
        ("credit-1", 100),
    ]


async def test_concurrent_top_ups_and_two_metering_replicas_leave_the_exact_balance(
    billing: BillingRepository, world: World, database: Database, clock: FakeClock
) -> None:
    _, app, sub = await _prepaid(world, unit_price="0.03")
    replicas = [Metering(database, Commits(), clock) for _ in range(2)]
    await billing.credit.top_up(app.id, "USD", "1.00", "seed")

    async def top_ups() -> None:
        for i in range(15):
            await billing.credit.top_up(app.id, "USD", "0.07", f"c-{i}")

    async def usage() -> None:
        for _ in range(15):
            await world.usage(sub, NOW, success=2)

    async def metering(replica: Metering) -> None:
        for _ in range(15):
            await replica.round()

    await asyncio.gather(top_ups(), usage(), *(metering(r) for r in replicas))
    for replica in replicas:
        await replica.round()
    expected = Decimal("1.00") + 15 * Decimal("0.07") - 30 * Decimal("0.03")
    assert await _balance(billing, app.id) == expected
    entries = await _ledger(database, app.id)
    assert Decimal(sum(e.amount_minor for e in entries)) / 100 == expected
    # Each burn names the counts it burned: none twice.
    burns = [e for e in entries if e.kind == "BURN"]
    assert len({e.key for e in burns}) == len(burns)
    assert sum(-e.amount_minor for e in burns) == 90


async def test_a_retried_top_up_answers_the_first(billing: BillingRepository, world: World) -> None:
    _, app, _ = await _prepaid(world)
    first = await billing.credit.top_up(app.id, "USD", "2.00", "same")
    again = await billing.credit.top_up(app.id, "USD", "2.00", "same")
    assert not again.created and again.entry.id == first.entry.id
    assert await _balance(billing, app.id) == Decimal("2.00")
    with pytest.raises(InvalidArgument, match="different top-up"):
        await billing.credit.top_up(app.id, "USD", "3.00", "same")


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        (("USD", "-1.00", "r"), InvalidArgument, "negative"),
        (("XYZ", "1.00", "r"), InvalidArgument, "unknown currency"),
        (("USD", "1.001", "r"), InvalidArgument, "fractional digits"),
        (("USD", "1.00", ""), InvalidArgument, "request_id"),
    ],
)
async def test_bad_top_ups_write_nothing(
    billing: BillingRepository, world: World, database: Database, args: tuple, error: type, words: str
) -> None:
    _, app, _ = await _prepaid(world)
    before = await dump_tables(database)
    with pytest.raises(error, match=words):
        await billing.credit.top_up(app.id, *args)
    with pytest.raises(NotFound):
        await billing.credit.top_up("app_missing", "USD", "1.00", "r")
    assert await dump_tables(database) == before


async def test_spend_caps_refuse_raise_alerts_once_and_clear(
    billing: BillingRepository, world: World, database: Database, clock: FakeClock
) -> None:
    plan = await world.plan("postpaid", currency="EUR", unit_price="0.50", monthly_quota=10)
    api = await world.api(plan)
    app = await world.application()
    sub = await world.subscription(app, api, plan, utc(2026, 11, 1))
    metering = Metering(database, Commits(), clock)
    before = await dump_tables(database)
    with pytest.raises(InvalidArgument, match="negative"):
        await billing.spend_caps.set_cap(APPLICATION, app.id, "CHARGE", "-1", "EUR")
    with pytest.raises(NotFound):
        await billing.spend_caps.set_cap(SUBSCRIPTION, "sub_missing", "REQUESTS", "5", "")
    assert await dump_tables(database) == before
    await billing.spend_caps.set_cap(APPLICATION, app.id, "CHARGE", "2.00", "EUR")

    await world.usage(sub, NOW, success=3)  # 1.50 of 2.00: 50 % (and 30 % of the quota)
    await metering.round(all_quotas=True)
    gate = await _gate(database, f"cap:APPLICATION:{app.id}")
    assert gate is not None and not gate.refused
    assert [cap.spent for cap in await billing.spend_caps.list_caps(APPLICATION, app.id)] == ["1.50"]
    await world.usage(sub, NOW, success=2)  # 2.50: reached
    for _ in range(3):
        await metering.round(all_quotas=True)
    gate = await _gate(database, f"cap:APPLICATION:{app.id}")
    assert gate is not None and gate.refused and "2.50 of 2.00 EUR" in gate.detail
    assert [cap.spent for cap in await billing.spend_caps.list_caps(APPLICATION, app.id)] == ["2.50"]
    caps = await billing.list_alerts(target_id=app.id, kinds=["CAP_CHARGE"])
    assert sorted(a.threshold for a in caps) == [50, 80, 100]
    quota = await billing.list_alerts(target_id=sub.id, kinds=["QUOTA"])
    assert sorted(a.threshold for a in quota) == [50]

    assert await billing.spend_caps.clear_cap(APPLICATION, app.id, "CHARGE")
    assert await _gate(database, f"cap:APPLICATION:{app.id}") is None
    assert not await billing.spend_caps.clear_cap(APPLICATION, app.id, "CHARGE")


async def test_a_free_trial_burns_nothing_and_after_it_only_what_follows(
    billing: BillingRepository, world: World, database: Database, clock: FakeClock
) -> None:
    plan = await world.plan("trial", currency="USD", unit_price="0.01", prepaid=True, trial_days=1)
    api = await world.api(plan)
    app = await world.application()
    sub = await world.subscription(app, api, plan, utc(2026, 12, 5, 10))
    metering = Metering(database, Commits(), clock)
    await billing.credit.top_up(app.id, "USD", "1.00", "t")
    await world.usage(sub, NOW, success=3)  # inside the trial
    await metering.round()
    assert await _balance(billing, app.id) == Decimal("1.00")
    clock.set(utc(2026, 12, 6, 12))
    await world.usage(sub, utc(2026, 12, 6, 12), success=2)
    await metering.round()
    assert await _balance(billing, app.id) == Decimal("0.98")


async def test_a_finalized_invoice_keeps_what_credit_paid_when_its_period_burns_later(
    billing: BillingRepository, world: World, database: Database, clock: FakeClock
) -> None:
    from billing.servicer import BillingServicer

    _, app, sub = await _prepaid(world, recurring_fee="5.00")  # the fee is invoiced, not burned
    metering = Metering(database, Commits(), clock)
    await billing.credit.top_up(app.id, "USD", "1.00", "t1")
    await world.usage(sub, NOW, success=30)
    await metering.round()
    servicer = BillingServicer(billing)
    (draft,) = await billing.generate(month=(2026, 12))
    assert draft.invoice.paid_from_credit is None  # a draft computes it when read
    (shown,) = await servicer._invoices([await billing.get_invoice(draft.invoice.id)])
    assert (shown.total, shown.paid_from_credit, shown.amount_due) == ("5.30", "0.30", "5.00")

    final = await billing.finalize(draft.invoice.id)
    assert (final.invoice.paid_from_credit, final.invoice.amount_due) == ("0.30", "5.00")
    await world.usage(sub, NOW, success=20)  # late usage of the finalized period burns more credit
    await metering.round()
    assert await _balance(billing, app.id) == Decimal("0.50")
    live = await billing.credit.paid_from_credit([(app.id, "USD", final.invoice.period_start)])
    assert list(live.values()) == [50]

    (shown,) = await servicer._invoices([await billing.get_invoice(draft.invoice.id)])
    assert (shown.total, shown.paid_from_credit, shown.amount_due) == ("5.30", "0.30", "5.00")


async def test_a_cap_cleared_during_a_metering_round_leaves_no_gate_behind(
    billing: BillingRepository, world: World, database: Database, clock: FakeClock
) -> None:
    """The round reads the caps, then the cap is cleared, then the round writes its gates: the gate must
    not come back (no later round would lift it, since the cap no longer exists)."""
    plan = await world.plan("raced", currency="EUR", unit_price="0.50")
    api = await world.api(plan)
    app = await world.application()
    sub = await world.subscription(app, api, plan, utc(2026, 11, 1))
    metering = Metering(database, Commits(), clock)
    await billing.spend_caps.set_cap(SUBSCRIPTION, sub.id, "REQUESTS", "2", "")
    await world.usage(sub, NOW, success=3)
    await metering.round()
    gate_id = f"cap:SUBSCRIPTION:{sub.id}"
    gate = await _gate(database, gate_id)
    assert gate is not None and gate.refused

    write_gates = metering._caps

    async def cleared_between_read_and_write(caps: list, parts: list) -> None:
        assert await billing.spend_caps.clear_cap(SUBSCRIPTION, sub.id, "REQUESTS")
        await write_gates(caps, parts)

    metering._caps = cleared_between_read_and_write  # type: ignore[method-assign]
    await metering.round()
    assert await _gate(database, gate_id) is None

    # A cap raised between the read and the write: the stale measure is not applied; the next round is.
    await billing.spend_caps.set_cap(SUBSCRIPTION, sub.id, "REQUESTS", "2", "")
    metering._caps = write_gates  # type: ignore[method-assign]
    await metering.round()
    assert (gate := await _gate(database, gate_id)) is not None and gate.refused

    async def raised_between_read_and_write(caps: list, parts: list) -> None:
        await billing.spend_caps.set_cap(SUBSCRIPTION, sub.id, "REQUESTS", "10", "")
        await write_gates(caps, parts)

    metering._caps = raised_between_read_and_write  # type: ignore[method-assign]
    await metering.round()
    metering._caps = write_gates  # type: ignore[method-assign]
    await metering.round()
    assert (gate := await _gate(database, gate_id)) is not None and not gate.refused
