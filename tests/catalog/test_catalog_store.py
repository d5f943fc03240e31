"""CatalogStore on SQLite and PostgreSQL: rules that need the database, and that rejected writes leave
it unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.catalog.catalog_helpers import add_subscription, dump, set_subscription_state
from tollway.catalog.limits import PlanLimits
from tollway.catalog.store import CatalogStore
from tollway.catalog.validation import ApiDraft, PlanDraft, PricingDraft
from tollway.catalog.view import PublishedApi
from tollway.db import Database
from tollway.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, TollwayError


class Commits:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
def store(database: Database, commits: Commits) -> CatalogStore:
    return CatalogStore(database, on_commit=commits)


async def rejected(
    db: Database,
    commits: Commits,
    write: Callable[[], Awaitable[Any]],
    error: type[TollwayError],
    message: str,
) -> None:
    """Runs a write that must fail with `error` and a message containing `message`, changing nothing."""
    before, before_commits = await dump(db), commits.count
    with pytest.raises(error) as caught:
        await write()
    assert message in caught.value.message
    assert await dump(db) == before
    assert commits.count == before_commits


def gold() -> PlanDraft:
    return PlanDraft(
        name="gold",
        limits=PlanLimits(requests_per_second=10, monthly_quota=100_000, quota_policy="SOFT"),
        pricing=PricingDraft(
            currency="eur", recurring_fee="49.00", unit_price="0.0004", overage_price="0.001"
        ),
    )


def weather(**changes: Any) -> ApiDraft:
    fields: dict[str, Any] = {
        "name": "weather",
        "version": "v1",
        "context_path": "/weather/v1",
        "upstream_urls": ("http://127.0.0.1:9000/",),
        "plan_ids": ("gold",),
    }
    fields.update(changes)
    return ApiDraft(**fields)


# --- plans ----------------------------------------------------------------------------------------


async def test_create_get_list_plans(store: CatalogStore, database: Database, commits: Commits) -> None:
    revision = await database.current_revision()
    plan = await store.create_plan(gold())
    assert plan.id.startswith("plan_")
    assert (plan.currency, plan.recurring_fee, plan.unit_price, plan.quota_policy) == (
        "EUR",
        "49.00",
        "0.0004",
        "SOFT",
    )
    assert commits.count == 1
    assert await database.current_revision() == revision + 1

    assert (await store.get_plan(plan.id)).name == "gold"
    assert (await store.get_plan("gold")).id == plan.id
    await store.create_plan(PlanDraft(name="bronze"))
    assert [p.name for p in await store.list_plans()] == ["bronze", "gold"]
    with pytest.raises(NotFound, match="plan 'platinum' not found"):
        await store.get_plan("platinum")


async def test_duplicate_plan_name(store: CatalogStore, database: Database, commits: Commits) -> None:
    plan = await store.create_plan(gold())
    await rejected(
        database,
        commits,
        lambda: store.create_plan(PlanDraft(name="gold")),
        AlreadyExists,
        f"a plan named 'gold' already exists ({plan.id})",
    )


async def test_invalid_plan_changes_nothing(
    store: CatalogStore, database: Database, commits: Commits
) -> None:
    await store.create_plan(gold())
    bad = PlanDraft(name="silver", pricing=PricingDraft(recurring_fee="10"))
    await rejected(database, commits, lambda: store.create_plan(bad), InvalidArgument, "currency is required")


async def test_update_plan_fields(store: CatalogStore, database: Database, commits: Commits) -> None:
    plan = await store.create_plan(gold())
    await store.create_plan(PlanDraft(name="silver"))

    updated = await store.update_plan(
        "gold", PlanDraft(name="ignored", description="the best"), ["description"]
    )
    assert (updated.name, updated.description, updated.recurring_fee) == ("gold", "the best", "49.00")
    assert updated.updated_at >= plan.updated_at

    limits = PlanLimits(requests_per_second=5, monthly_quota=10, quota_policy="SOFT")
    updated = await store.update_plan(plan.id, PlanDraft(limits=limits), ["limits"])
    # The whole limits group is replaced: fields left unset in it become 0.
    assert (updated.requests_per_second, updated.monthly_quota, updated.requests_per_minute) == (5, 10, 0)
    assert (await store.get_plan(plan.id)).overage_price == "0.001"


async def test_update_plan_rejections(store: CatalogStore, database: Database, commits: Commits) -> None:
    plan = await store.create_plan(
        PlanDraft(name="gold", pricing=PricingDraft(currency="EUR", unit_price="1"))
    )
    silver = await store.create_plan(PlanDraft(name="silver"))
    await rejected(
        database,
        commits,
        lambda: store.update_plan(plan.id, PlanDraft(name="silver"), ["name"]),
        AlreadyExists,
        f"a plan named 'silver' already exists ({silver.id})",
    )
    # The merged plan is validated as a whole: dropping the currency of a priced plan is refused.
    await rejected(
        database,
        commits,
        lambda: store.update_plan(plan.id, PlanDraft(pricing=PricingDraft(recurring_fee="5")), ["pricing"]),
        InvalidArgument,
        "pricing.currency is required",
    )
    await rejected(
        database,
        commits,
        lambda: store.update_plan(plan.id, PlanDraft(), ["id"]),
        InvalidArgument,
        "unknown or immutable fields: id",
    )
    await rejected(
        database, commits, lambda: store.update_plan("nope", PlanDraft(), []), NotFound, "plan 'nope'"
    )


async def test_soft_quota_removal_with_overage_price_is_refused(
    store: CatalogStore, database: Database, commits: Commits
) -> None:
    plan = await store.create_plan(gold())
    await rejected(
        database,
        commits,
        lambda: store.update_plan(plan.id, PlanDraft(limits=PlanLimits(monthly_quota=5)), ["limits"]),
        InvalidArgument,
        "overage_price applies only beyond a soft monthly quota",
    )


async def test_delete_plan_preconditions(store: CatalogStore, database: Database, commits: Commits) -> None:
    plan = await store.create_plan(gold())
    api = await store.create_api(weather())
    await rejected(
        database,
        commits,
        lambda: store.delete_plan("gold"),
        FailedPrecondition,
        f"plan gold ({plan.id}) is offered by API weather ({api.api.id}); remove it from their plan_ids",
    )
    other = await store.create_plan(PlanDraft(name="bronze"))
    await store.update_api(api.api.id, ApiDraft(plan_ids=("bronze",)), ["plan_ids"])
    subscription = await add_subscription(database, api.api.id, plan.id, state="PENDING_APPROVAL")
    await rejected(
        database,
        commits,
        lambda: store.delete_plan(plan.id),
        FailedPrecondition,
        "is used by 1 live subscription(s)",
    )
    await set_subscription_state(database, subscription, "CANCELLED")
    await rejected(
        database,
        commits,
        lambda: store.delete_plan(plan.id),
        FailedPrecondition,
        "referenced by 1 ended subscription(s) kept for billing history",
    )
    await store.update_api(api.api.id, ApiDraft(plan_ids=()), ["plan_ids"])
    await store.delete_plan(other.id)
    assert [p.name for p in await store.list_plans()] == ["gold"]


# --- APIs -----------------------------------------------------------------------------------------


async def test_create_and_get_api(store: CatalogStore, database: Database, commits: Commits) -> None:
    gold_plan = await store.create_plan(gold())
    bronze = await store.create_plan(PlanDraft(name="bronze"))
    record = await store.create_api(weather(plan_ids=("gold", bronze.id)))
    api = record.api
    assert api.id.startswith("api_")
    assert record.plan_ids == (gold_plan.id, bronze.id)
    assert api.upstream_urls == ["http://127.0.0.1:9000"]
    assert not api.published

    for key in (api.id, "weather", "weather:v1"):
        fetched = await store.get_api(key)
        assert fetched.api.id == api.id
        assert fetched.plan_ids == (gold_plan.id, bronze.id)

    # Plan order is the order given.
    swapped = await store.update_api(api.id, ApiDraft(plan_ids=(bronze.id, "gold")), ["plan_ids"])
    assert swapped.plan_ids == (bronze.id, gold_plan.id)
    assert (await store.get_api(api.id)).plan_ids == (bronze.id, gold_plan.id)


async def test_api_name_lookup_must_be_unambiguous(store: CatalogStore) -> None:
    v1 = await store.create_api(weather(plan_ids=()))
    v2 = await store.create_api(weather(version="v2", context_path="/weather/v2", plan_ids=()))
    with pytest.raises(InvalidArgument) as caught:
        await store.get_api("weather")
    assert caught.value.message == (
        f"API name 'weather' is ambiguous: {v1.api.id} (version v1), {v2.api.id} (version v2); "
        "use the identifier or name:version"
    )
    assert (await store.get_api("weather:v2")).api.id == v2.api.id
    with pytest.raises(NotFound, match="API 'weather:v3' not found"):
        await store.get_api("weather:v3")
    with pytest.raises(InvalidArgument, match="identifier or name is required"):
        await store.get_api("")


async def test_unknown_plans(store: CatalogStore, database: Database, commits: Commits) -> None:
    await store.create_plan(gold())
    await rejected(
        database,
        commits,
        lambda: store.create_api(weather(plan_ids=("gold", "plan_nope", "silver"))),
        InvalidArgument,
        "plan_ids names unknown plans: plan_nope, silver",
    )


async def test_same_plan_by_id_and_name(store: CatalogStore, database: Database, commits: Commits) -> None:
    plan = await store.create_plan(gold())
    await rejected(
        database,
        commits,
        lambda: store.create_api(weather(plan_ids=("gold", plan.id))),
        InvalidArgument,
        f"plan_ids lists plan {plan.id} twice",
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/weather/v1", 'context_path "/weather/v1" is already used by API weather'),
        ("/weather", 'context_path "/weather" overlaps "/weather/v1" of API weather'),
        ("/weather/v1/daily", 'context_path "/weather/v1/daily" overlaps "/weather/v1" of API weather'),
        ("/Weather/V1", "(context paths are compared ignoring case)"),
        ("/WEATHER", "(context paths are compared ignoring case)"),
    ],
)
async def test_overlapping_context_paths(
    store: CatalogStore, database: Database, commits: Commits, path: str, message: str
) -> None:
    await store.create_plan(gold())
    existing = await store.create_api(weather())
    await rejected(
        database,
        commits,
        lambda: store.create_api(weather(name="other", context_path=path)),
        AlreadyExists,
        message,
    )
    await rejected(
        database,
        commits,
        lambda: store.create_api(weather(name="other", context_path=path)),
        AlreadyExists,
        f"({existing.api.id})",
    )


async def test_sibling_paths_do_not_overlap(store: CatalogStore) -> None:
    await store.create_api(weather(plan_ids=()))
    await store.create_api(weather(name="w2", context_path="/weather/v10", plan_ids=()))
    await store.create_api(weather(name="w3", context_path="/weatherman", plan_ids=()))
    assert len(await store.list_apis()) == 3


async def test_same_name_and_version(store: CatalogStore, database: Database, commits: Commits) -> None:
    existing = await store.create_api(weather(plan_ids=()))
    await rejected(
        database,
        commits,
        lambda: store.create_api(weather(context_path="/other", plan_ids=())),
        AlreadyExists,
        f"API weather version v1 already exists ({existing.api.id})",
    )


async def test_update_api(store: CatalogStore, database: Database, commits: Commits) -> None:
    await store.create_plan(gold())
    record = await store.create_api(weather())
    other = await store.create_api(weather(name="maps", context_path="/maps"))
    api_id = record.api.id

    # Moving within its own subtree is no conflict with itself.
    moved = await store.update_api(api_id, ApiDraft(context_path="/weather/v1/x"), ["context_path"])
    assert moved.api.context_path == "/weather/v1/x"
    assert moved.api.name == "weather"
    await rejected(
        database,
        commits,
        lambda: store.update_api(api_id, ApiDraft(context_path="/maps/weather"), ["context_path"]),
        AlreadyExists,
        f'context_path "/maps/weather" overlaps "/maps" of API maps ({other.api.id})',
    )
    await rejected(
        database,
        commits,
        lambda: store.update_api(api_id, ApiDraft(upstream_urls=("gopher://x",)), ["upstream_urls"]),
        InvalidArgument,
        "upstream_urls[0] must be an http:// or https:// URL",
    )
    await rejected(
        database,
        commits,
        lambda: store.update_api(api_id, ApiDraft(), ["published"]),
        InvalidArgument,
        "unknown or immutable fields: published",
    )
    # Empty field list = full replacement.
    replaced = await store.update_api(
        api_id,
        ApiDraft(name="weather", version="v9", context_path="/wx", upstream_urls=("https://a/b",)),
        ["name", "version", "context_path", "upstream_urls", "plan_ids", "description"],
    )
    assert (replaced.api.version, replaced.api.context_path, replaced.plan_ids) == ("v9", "/wx", ())
    assert replaced.api.upstream_urls == ["https://a/b"]


async def test_published_api_keeps_a_plan_and_an_upstream(
    store: CatalogStore, database: Database, commits: Commits
) -> None:
    await store.create_plan(gold())
    record = await store.publish_api((await store.create_api(weather())).api.id)
    api_id = record.api.id
    for changes, fields in [
        (ApiDraft(plan_ids=()), ["plan_ids"]),
        (ApiDraft(upstream_urls=()), ["upstream_urls"]),
    ]:
        await rejected(
            database,
            commits,
            lambda changes=changes, fields=fields: store.update_api(api_id, changes, fields),
            FailedPrecondition,
            f"API weather ({api_id}) is published and must keep at least one plan and one upstream URL",
        )


async def test_plan_with_live_subscriptions_stays_offered(
    store: CatalogStore, database: Database, commits: Commits
) -> None:
    plan = await store.create_plan(gold())
    await store.create_plan(PlanDraft(name="bronze"))
    record = await store.create_api(weather(plan_ids=("gold", "bronze")))
    subscription = await add_subscription(database, record.api.id, plan.id, state="SUSPENDED")
    await rejected(
        database,
        commits,
        lambda: store.update_api(record.api.id, ApiDraft(plan_ids=("bronze",)), ["plan_ids"]),
        FailedPrecondition,
        f"cannot stop offering plans with live subscriptions: {plan.id} (1 live)",
    )
    await set_subscription_state(database, subscription, "CANCELLED")
    updated = await store.update_api(record.api.id, ApiDraft(plan_ids=("bronze",)), ["plan_ids"])
    assert len(updated.plan_ids) == 1


async def test_publish_and_unpublish(store: CatalogStore, database: Database, commits: Commits) -> None:
    bare = await store.create_api(weather(plan_ids=(), upstream_urls=()))
    await rejected(
        database,
        commits,
        lambda: store.publish_api("weather"),
        FailedPrecondition,
        f"API weather ({bare.api.id}) offers no plan; add plan_ids before publishing",
    )
    plan = await store.create_plan(gold())
    await store.update_api("weather", ApiDraft(plan_ids=(plan.id,)), ["plan_ids"])
    await rejected(
        database,
        commits,
        lambda: store.publish_api("weather"),
        FailedPrecondition,
        "has no upstream URL; add upstream_urls before publishing",
    )
    await store.update_api("weather", ApiDraft(upstream_urls=("http://b:1", "http://a:1")), ["upstream_urls"])
    await store.create_api(weather(name="alpha", context_path="/alpha", upstream_urls=("http://c",)))
    await store.publish_api("alpha")
    published = await store.publish_api("weather")
    assert published.api.published
    assert published.plan_ids == (plan.id,)

    assert await store.published_apis() == [
        PublishedApi(
            id=(await store.get_api("alpha")).api.id,
            name="alpha",
            version="v1",
            context_path="/alpha",
            upstream_urls=("http://c",),
        ),
        PublishedApi(
            id=bare.api.id,
            name="weather",
            version="v1",
            context_path="/weather/v1",
            upstream_urls=("http://b:1", "http://a:1"),
        ),
    ]
    assert [r.api.name for r in await store.list_apis(published_only=True)] == ["alpha", "weather"]

    # Publishing twice is harmless.
    assert (await store.publish_api("weather")).api.published
    unpublished = await store.unpublish_api(bare.api.id)
    assert not unpublished.api.published
    assert [p.name for p in await store.published_apis()] == ["alpha"]
    assert [r.api.name for r in await store.list_apis(published_only=True)] == ["alpha"]
    assert [r.api.name for r in await store.list_apis()] == ["alpha", "weather"]


async def test_delete_api_preconditions(store: CatalogStore, database: Database, commits: Commits) -> None:
    plan = await store.create_plan(gold())
    record = await store.publish_api((await store.create_api(weather())).api.id)
    api_id = record.api.id
    await rejected(
        database,
        commits,
        lambda: store.delete_api(api_id),
        FailedPrecondition,
        f"API weather ({api_id}) is published; unpublish it first",
    )
    await store.unpublish_api(api_id)
    subscription = await add_subscription(database, api_id, plan.id, state="BLOCKED")
    await rejected(
        database, commits, lambda: store.delete_api(api_id), FailedPrecondition, "has 1 live subscription(s)"
    )
    await set_subscription_state(database, subscription, "REJECTED")
    await rejected(
        database,
        commits,
        lambda: store.delete_api(api_id),
        FailedPrecondition,
        "referenced by 1 ended subscription(s) kept for billing history",
    )

    fresh = await store.create_api(weather(name="maps", context_path="/maps"))
    await store.delete_api("maps")
    with pytest.raises(NotFound):
        await store.get_api(fresh.api.id)
    # Only the deleted API is gone.
    assert [r.api.id for r in await store.list_apis()] == [api_id]
    await rejected(database, commits, lambda: store.delete_api("maps"), NotFound, "API 'maps' not found")


async def test_delete_api_then_plan(store: CatalogStore) -> None:
    plan = await store.create_plan(gold())
    record = await store.create_api(weather())
    await store.delete_api(record.api.id)
    await store.delete_plan(plan.id)
    assert await store.list_plans() == []
    assert await store.list_apis() == []


async def test_on_commit_and_revision_follow_successful_writes(
    store: CatalogStore, database: Database, commits: Commits
) -> None:
    start = await database.current_revision()
    plan = await store.create_plan(gold())
    record = await store.create_api(weather())
    await store.update_api(record.api.id, ApiDraft(description="d"), ["description"])
    await store.publish_api(record.api.id)
    await store.unpublish_api(record.api.id)
    await store.update_plan(plan.id, PlanDraft(description="d"), ["description"])
    assert commits.count == 6
    assert await database.current_revision() == start + 6
    # Reads change nothing.
    await store.list_apis()
    await store.published_apis()
    assert commits.count == 6
    assert await database.current_revision() == start + 6


async def test_concurrent_overlapping_creates_admit_one(store: CatalogStore, database: Database) -> None:
    """Writers are serialized by the revision lock, so the overlap check cannot be raced."""
    drafts = [weather(name=f"w{i}", context_path="/race" + "/x" * i, plan_ids=()) for i in range(4)]
    results = await asyncio.gather(*(store.create_api(d) for d in drafts), return_exceptions=True)
    created = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(f, AlreadyExists) for f in failures), failures
    assert len(await store.list_apis()) == 1


async def test_concurrent_plan_names_admit_one(store: CatalogStore) -> None:
    results = await asyncio.gather(
        *(store.create_plan(PlanDraft(name="gold")) for _ in range(4)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, BaseException)), results
