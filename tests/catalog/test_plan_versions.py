"""Plan versions in the catalog (SQLite and PostgreSQL): a change of limits or prices adds a version,
effective from the next period or a stated instant, never in the past; the history lists them all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.catalog.catalog_helpers import dump
from tollway import schema
from tollway.catalog.limits import PlanLimits
from tollway.catalog.store import CatalogStore
from tollway.catalog.validation import PlanDraft, PricingDraft
from tollway.db import Database
from tollway.errors import InvalidArgument
from tollway.vocabulary import VersionEffect


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


class Clock:
    def __init__(self) -> None:
        self.now = utc(2026, 11, 10, 12, 0, 30)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: Database, clock: Clock) -> CatalogStore:
    return CatalogStore(database, on_commit=lambda: None, clock=clock)


def basic(fee: str = "10.00", per_minute: int = 60) -> PlanDraft:
    return PlanDraft(
        name="basic",
        limits=PlanLimits(requests_per_minute=per_minute),
        pricing=PricingDraft(currency="EUR", recurring_fee=fee),
    )


async def test_a_new_plan_is_version_1(store: CatalogStore) -> None:
    row = await store.create_plan(basic())
    assert row.version == 1
    [v1] = await store.plan_versions("basic")
    assert (v1.version, v1.effect, v1.pricing["recurring_fee"], v1.limits["requests_per_minute"]) == (
        1, VersionEffect.INSTANT, "10.00", 60,
    )  # fmt: skip


async def test_a_price_change_adds_a_version_for_the_next_period_by_default(
    store: CatalogStore, clock: Clock
) -> None:
    await store.create_plan(basic())
    row = await store.update_plan("basic", basic(fee="12.00"), ["pricing"])
    assert (row.version, row.recurring_fee) == (2, "12.00")  # the row shows the newest version
    v1, v2 = await store.plan_versions("basic")
    assert v1.pricing["recurring_fee"] == "10.00"
    assert (v2.version, v2.effect, v2.pricing["recurring_fee"]) == (2, VersionEffect.NEXT_PERIOD, "12.00")
    assert schema.as_utc(v2.effective_at) == clock.now  # made now; each subscription's next period


async def test_now_means_the_next_whole_minute(store: CatalogStore) -> None:
    await store.create_plan(basic())
    await store.update_plan("basic", basic(per_minute=120), ["limits"], VersionEffect.INSTANT)
    _, v2 = await store.plan_versions("basic")
    assert (v2.effect, schema.as_utc(v2.effective_at)) == (VersionEffect.INSTANT, utc(2026, 11, 10, 12, 1))
    assert v2.limits["requests_per_minute"] == 120


async def test_a_stated_instant(store: CatalogStore) -> None:
    await store.create_plan(basic())
    await store.update_plan(
        "basic", basic(fee="15.00"), ["pricing"], VersionEffect.INSTANT, utc(2026, 11, 15)
    )
    _, v2 = await store.plan_versions("basic")
    assert schema.as_utc(v2.effective_at) == utc(2026, 11, 15)


async def test_changes_that_are_not_terms_make_no_version(store: CatalogStore) -> None:
    await store.create_plan(basic())
    renamed = await store.update_plan(
        "basic", PlanDraft(name="starter", description="new"), ["name", "description"]
    )
    assert (renamed.name, renamed.version) == ("starter", 1)
    # Limits and pricing given but equal (in canonical form: "10.0" is not "10.00", but 060 is 60).
    same = await store.update_plan("starter", basic(per_minute=60), ["limits"])
    assert same.version == 1
    assert len(await store.plan_versions("starter")) == 1


async def test_a_plan_from_before_versions_gets_its_version_1_from_the_row(
    store: CatalogStore, database: Database
) -> None:
    async with database.session() as session:
        session.add(schema.Plan(id="plan_old", name="old", currency="EUR", recurring_fee="5.00", version=0))
        await session.commit()
    [listed] = await store.plan_versions("old")  # nothing stored yet: the row as version 1
    assert (listed.version, listed.pricing["recurring_fee"]) == (1, "5.00")
    six = PlanDraft(name="old", pricing=PricingDraft(currency="EUR", recurring_fee="6.00"))
    await store.update_plan("old", six, ["pricing"])
    v1, v2 = await store.plan_versions("old")
    assert (v1.version, v1.pricing["recurring_fee"], v2.version, v2.pricing["recurring_fee"]) == (
        1,
        "5.00",
        2,
        "6.00",
    )


@pytest.mark.parametrize(
    ("effect", "at", "fields", "message"),
    [
        (VersionEffect.INSTANT, utc(2026, 11, 10, 12), ["pricing"], "is in the past"),
        (VersionEffect.INSTANT, utc(2026, 11, 15, 0, 0, 30), ["pricing"], "must be a whole minute"),
        (VersionEffect.INSTANT, utc(2028, 1, 1), ["pricing"], "at most 366 days ahead"),
        (VersionEffect.NEXT_PERIOD, utc(2026, 12, 1), ["pricing"], "only for VERSION_EFFECT_INSTANT"),
        (VersionEffect.INSTANT, None, ["name"], "apply to a change of limits or pricing only"),
    ],
)
async def test_bad_effects_change_nothing(
    store: CatalogStore, database: Database, effect: VersionEffect, at: datetime | None, fields: list[str],
    message: str,
) -> None:  # fmt: skip
    await store.create_plan(basic())
    before = await dump(database)
    with pytest.raises(InvalidArgument, match=message):
        await store.update_plan("basic", basic(fee="99.00"), fields, effect, at)
    assert await dump(database) == before
