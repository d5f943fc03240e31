"""The throttle applies a plan version's limits from its effective instant: an INSTANT version for every
subscription at its minute, a NEXT_PERIOD one at each subscription's own next period; the index reads
versions from the database on a full load and on a plan change."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.throttle.throttle_fixtures import FakeClock, subscription, unique
from throttle.counters import MemoryCounterStore
from throttle.index import PlanSchedule, ThrottleIndex, ThrottleSnapshot
from throttle.service import ThrottleService
from tollway.catalog.limits import PlanLimits
from tollway.catalog.store import CatalogStore
from tollway.catalog.validation import PlanDraft
from tollway.catalog.versions import VersionTiming
from tollway.change_log import Change, Op, Topic
from tollway.db import Database
from tollway.vocabulary import VersionEffect, WindowName


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


V1 = VersionTiming(1, VersionEffect.INSTANT, utc(2026, 1, 1))


def service(schedule: PlanSchedule, clock: FakeClock, *anchors: int) -> tuple[ThrottleService, list[str]]:
    subs = [subscription("p", anchor) for anchor in anchors]
    snapshot = ThrottleSnapshot.build(
        {"p": schedule.limits[max(schedule.limits)]}, subs, schedules={"p": schedule}
    )
    return ThrottleService(ThrottleIndex(snapshot=snapshot), MemoryCounterStore(), clock=clock), [
        s.id for s in subs
    ]


def descriptor(sub_id: str) -> dict[str, str]:
    return {"subscription_id": sub_id, "plan_id": "p", "application_id": "app_1", "api_id": "api_1"}


async def test_an_instant_version_raises_the_limit_at_its_minute() -> None:
    schedule = PlanSchedule(
        (V1, VersionTiming(2, VersionEffect.INSTANT, utc(2026, 1, 20, 10, 5))),
        {1: PlanLimits(requests_per_hour=2), 2: PlanLimits(requests_per_hour=5)},
    )
    clock = FakeClock(utc(2026, 1, 20, 10, 4, 30))
    throttle, [sub] = service(schedule, clock, 0)
    results = [(await throttle.should_rate_limit("tollway", [descriptor(sub)])).over_limit for _ in range(3)]
    assert results == [False, False, True]  # version 1: 2 an hour
    clock.advance(seconds=29)  # 10:04:59, still version 1 (the windows cached for this hour)
    assert (await throttle.should_rate_limit("tollway", [descriptor(sub)])).over_limit
    clock.advance(seconds=1)  # 10:05:00: version 2, same hour window, so 3 more of 5
    results = [(await throttle.should_rate_limit("tollway", [descriptor(sub)])).over_limit for _ in range(4)]
    assert results == [False, False, False, True]
    report = await throttle.quota(sub)
    assert [w.window.limit for w in report.windows if w.window.name == WindowName.HOUR] == [5]


async def test_a_next_period_version_applies_at_each_subscriptions_period_start() -> None:
    schedule = PlanSchedule(
        (V1, VersionTiming(2, VersionEffect.NEXT_PERIOD, utc(2026, 1, 20))),
        {1: PlanLimits(monthly_quota=100), 2: PlanLimits(monthly_quota=500)},
    )
    clock = FakeClock(utc(2026, 1, 25))
    throttle, [calendar, anchored] = service(schedule, clock, 0, 15)

    async def quota(sub: str, at: datetime) -> int:
        report = await throttle.quota(sub, at)
        return next(w.window.limit for w in report.windows if w.window.name == WindowName.BILLING_PERIOD)

    assert await quota(calendar, utc(2026, 1, 31, 23, 59)) == 100
    assert await quota(calendar, utc(2026, 2, 1)) == 500
    assert await quota(anchored, utc(2026, 2, 14, 23, 59)) == 100  # its period runs 15 Jan - 15 Feb
    assert await quota(anchored, utc(2026, 2, 15)) == 500


async def test_the_index_reads_versions_on_load_and_on_change(database: Database) -> None:
    clock = FakeClock(utc(2026, 1, 20, 10, 4, 30))
    catalog = CatalogStore(database, lambda: None, clock=clock)
    plan = await catalog.create_plan(PlanDraft(name=unique("p"), limits=PlanLimits(requests_per_minute=10)))
    index = ThrottleIndex(database)
    await index.reload()
    assert plan.id not in index.snapshot.schedules  # one version: the row's limits
    faster = PlanDraft(name=plan.name, limits=PlanLimits(requests_per_minute=20))
    await catalog.update_plan(plan.id, faster, ["limits"], VersionEffect.INSTANT)
    await index.apply([Change(0, Topic.PLANS, plan.id, Op.UPSERT)])
    snapshot = index.snapshot
    assert snapshot.limits_for(plan.id, utc(2026, 1, 20, 10, 4, 59), 0) == (
        PlanLimits(requests_per_minute=10, quota_policy="HARD"), utc(2026, 1, 20, 10, 5),
    )  # fmt: skip
    assert snapshot.limits_for(plan.id, utc(2026, 1, 20, 10, 5), 0) == (
        PlanLimits(requests_per_minute=20, quota_policy="HARD"), None,
    )  # fmt: skip
    reloaded = ThrottleIndex(database)
    await reloaded.reload()
    assert reloaded.snapshot.contents() == index.snapshot.contents()
