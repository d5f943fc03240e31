"""The metering round's grouped reads give, for many subscriptions at once and across chunk boundaries,
exactly what the per-subscription aggregate gives for each (SQLite and the real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import pytest

from billing import metering_reads
from billing import pricing as pr
from billing.metering_reads import burn_marks, live_subscriptions, usage_after, usage_in
from billing.periods import Period
from billing.usage_queries import aggregate
from tests.billing.billing_helpers import World, utc
from tollway.db import Database
from tollway.schema import Subscription
from tollway.schema_billing import CreditBurnMark

PERIOD = Period(utc(2026, 12, 1), utc(2027, 1, 1))


async def test_grouped_usage_matches_the_per_subscription_aggregate(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metering_reads, "CHUNK", 2)
    monkeypatch.setattr(metering_reads, "CUT_CHUNK", 2)
    world = World(database)
    plan, other = await world.plan("a", currency="USD"), await world.plan("b", currency="USD")
    api = await world.api(plan, other)
    subs = []
    for i in range(5):
        app = await world.application()
        sub = await world.subscription(app, api, plan, utc(2026, 11, 1))
        subs.append(sub)
        await world.usage(sub, utc(2026, 12, 2, 10, i), success=3 + i, overage=i)
        await world.usage(sub, utc(2026, 12, 9, 8), success=7, client_error=1)
        await world.usage(sub, utc(2026, 12, 9, 8), plan_id=other.id, success=2)
        await world.usage(sub, utc(2026, 11, 30, 23, 59), success=100)  # before the period
        await world.usage(sub, utc(2027, 1, 1), success=100)  # after it
    rejected = await world.subscription(await world.application(), api, plan, utc(2026, 11, 1), "REJECTED")
    await world.usage(rejected, utc(2026, 12, 2), success=1)
    ids = [s.id for s in subs[:4]]
    cuts: dict[tuple[str, Period], datetime] = {
        (subs[0].id, PERIOD): utc(2026, 12, 5),
        (subs[1].id, PERIOD): utc(2026, 12, 2, 10, 1),  # exactly its first window: counted after
        (subs[2].id, PERIOD): utc(2026, 12, 2, 10, 2, 30),
        (subs[3].id, PERIOD): utc(2026, 12, 31),  # nothing after
    }
    async with database.session() as session:
        grouped = {(r.subscription_id, r.plan_id): r.usage for r in await usage_in(session, PERIOD, ids)}
        expected = {}
        for sub_id in ids:
            for r in await aggregate(session, PERIOD, subscription_id=sub_id):
                expected[(r.subscription_id, r.plan_id)] = r.usage
        after = await usage_after(session, cuts)
        expected_after: dict[tuple[str, Period], dict[str, pr.Usage]] = {}
        for (sub_id, period), instant in cuts.items():
            rows = await aggregate(session, Period(instant, period.end), subscription_id=sub_id)
            if rows:
                expected_after[(sub_id, period)] = {r.plan_id: r.usage for r in rows}
        live = await live_subscriptions(session, Subscription.plan_id, [plan.id])
        session.add(CreditBurnMark(
            subscription_id=subs[0].id, plan_id=plan.id, period_start=PERIOD.start,
            application_id=subs[0].application_id, currency="USD", requests=5, burned_minor=4,
        ))  # fmt: skip
        await session.commit()
        keys = [(s.id, plan.id, PERIOD.start) for s in subs] + [(subs[0].id, plan.id, utc(2027, 1, 1))]
        marks = await burn_marks(session, keys)
    assert len(grouped) == 8 and grouped == expected
    assert grouped[(subs[1].id, plan.id)] == pr.Usage(success=4 + 7 - 1, overage=1, client_error=1)
    assert after == expected_after and (subs[3].id, PERIOD) not in after
    assert after[(subs[1].id, PERIOD)][plan.id] == grouped[(subs[1].id, plan.id)]
    assert sorted(s.id for s in live) == sorted(s.id for s in subs)
    assert list(marks) == [(subs[0].id, plan.id, PERIOD.start)] and marks[keys[0]].burned_minor == 4
