"""StoreRepository against SQLite and PostgreSQL: every rule of applications, subscriptions, keys and
block rules, and that a rejected write changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from keymgr_fixtures import (
    KEY_HASH_SECRET,
    START,
    CatalogRows,
    CommitCounter,
    Dump,
    FakeClock,
    dump_tables,
    new_store,
)

from keymgr import keys
from keymgr.store import MAX_KEY_LIFETIME, StoreRepository
from tollway import schema
from tollway.db import Database
from tollway.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, TollwayError


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def commits() -> CommitCounter:
    return CommitCounter()


@pytest.fixture
def store(database: Database, commits: CommitCounter, clock: FakeClock) -> StoreRepository:
    return new_store(database, commits, clock)


@pytest.fixture
def catalog(database: Database) -> CatalogRows:
    return CatalogRows(database)


@pytest.fixture
def dump(database: Database) -> Dump:
    return lambda: dump_tables(database)


async def subscribable(store: StoreRepository, catalog: CatalogRows) -> tuple[Any, Any, Any, Any]:
    """An application, a published API offering a free plan and an approval-required plan."""
    application = await store.create_application("weather-app", "dev@example.com")
    free = await catalog.plan("free")
    gold = await catalog.plan("gold", approval_required=True)
    api = await catalog.api("weather", plans=[free, gold])
    return application, api, free, gold


# Applications


async def test_create_get_list_applications(store: StoreRepository, clock: FakeClock) -> None:
    first = await store.create_application("  alpha  ", "ann@example.com", "first app")
    clock.advance(seconds=1)
    second = await store.create_application("beta", "bob@example.com")

    assert first.id.startswith("app_")
    assert first.name == "alpha"
    assert schema.as_utc(first.created_at) == clock.current - timedelta(seconds=1)
    fetched = await store.get_application(first.id)
    assert (fetched.name, fetched.owner, fetched.description) == ("alpha", "ann@example.com", "first app")
    assert fetched.deleted_at is None
    assert [a.id for a in await store.list_applications()] == [first.id, second.id]
    assert [a.id for a in await store.list_applications(owner="bob@example.com")] == [second.id]


async def test_application_name_rules(store: StoreRepository) -> None:
    with pytest.raises(InvalidArgument, match="name is required"):
        await store.create_application("   ", "ann")
    with pytest.raises(InvalidArgument, match="at most 100"):
        await store.create_application("x" * 101, "ann")
    await store.create_application("x" * 100, "ann")

    await store.create_application("shop", "ann")
    with pytest.raises(AlreadyExists, match="already has an application named 'shop'"):
        await store.create_application("shop", "ann")
    # Unique per owner only.
    await store.create_application("shop", "bob")


async def test_deleted_application_frees_its_name(store: StoreRepository) -> None:
    old = await store.create_application("shop", "ann")
    await store.delete_application(old.id)
    new = await store.create_application("shop", "ann")
    assert new.id != old.id


async def test_update_application(store: StoreRepository) -> None:
    application = await store.create_application("shop", "ann", "old")
    await store.create_application("blog", "ann")

    updated = await store.update_application(application.id, {"description": "new"})
    assert (updated.name, updated.owner, updated.description) == ("shop", "ann", "new")
    assert (await store.get_application(application.id)).description == "new"

    with pytest.raises(AlreadyExists):
        await store.update_application(application.id, {"name": "blog"})
    with pytest.raises(InvalidArgument, match="name is required"):
        await store.update_application(application.id, {"name": ""})
    with pytest.raises(InvalidArgument, match="cannot update application fields: id"):
        await store.update_application(application.id, {"id": "app_other"})
    with pytest.raises(NotFound):
        await store.update_application("app_missing", {"name": "x"})
    # Keeping its own name is not a conflict with itself.
    await store.update_application(application.id, {"name": "shop", "owner": "ann"})

    await store.delete_application(application.id)
    with pytest.raises(FailedPrecondition, match="is deleted"):
        await store.update_application(application.id, {"description": "x"})


async def test_delete_application_revokes_keys_and_cancels_subscriptions(
    store: StoreRepository, catalog: CatalogRows, clock: FakeClock, commits: CommitCounter, database: Database
) -> None:
    application, api, free, _gold = await subscribable(store, catalog)
    other_api = await catalog.api("maps", plans=[free])
    third_api = await catalog.api("news", plans=[free])
    live = await store.create_subscription(application.id, api.id, free.id)
    blocked = await store.create_subscription(application.id, other_api.id, free.id)
    await store.block_subscription(blocked.id, "abuse")
    cancelled = await store.create_subscription(application.id, third_api.id, free.id)
    await store.cancel_subscription(cancelled.id)
    issued = [await store.create_api_key(application.id, f"k{i}") for i in range(2)]
    already_revoked = await store.revoke_api_key(issued[1].api_key.key_id)
    clock.advance(minutes=5)

    commits_before, revision_before = commits.count, await database.current_revision()
    deleted = await store.delete_application(application.id)
    assert commits.count == commits_before + 1
    assert await database.current_revision() == revision_before + 1

    assert schema.as_utc(deleted.deleted_at) == clock.current
    assert schema.as_utc((await store.get_application(application.id)).deleted_at) == clock.current
    assert await store.list_applications() == []
    assert [a.id for a in await store.list_applications(include_deleted=True)] == [application.id]

    first_key = await store.get_api_key(issued[0].api_key.key_id)
    assert schema.as_utc(first_key.revoked_at) == clock.current
    assert store.key_state(first_key) == "REVOKED"
    # An earlier revocation keeps its own time.
    second_key = await store.get_api_key(issued[1].api_key.key_id)
    assert schema.as_utc(second_key.revoked_at) == schema.as_utc(already_revoked.revoked_at)

    for subscription_id, reason in ((live.id, "application deleted"), (blocked.id, "application deleted")):
        subscription = await store.get_subscription(subscription_id)
        assert (subscription.state, subscription.state_reason) == ("CANCELLED", reason)
    assert (await store.get_subscription(cancelled.id)).state_reason == ""

    # Deleting again changes nothing and still succeeds.
    again = await store.delete_application(application.id)
    assert schema.as_utc(again.deleted_at) == clock.current
    assert commits.count == commits_before + 1


async def test_missing_application(store: StoreRepository) -> None:
    with pytest.raises(NotFound, match="application 'app_nope' not found"):
        await store.get_application("app_nope")
    with pytest.raises(NotFound):
        await store.delete_application("app_nope")
    with pytest.raises(InvalidArgument, match="id is required"):
        await store.get_application("")


# Subscriptions


async def test_subscription_states_follow_the_plan(
    store: StoreRepository, catalog: CatalogRows, clock: FakeClock
) -> None:
    application, api, free, gold = await subscribable(store, catalog)
    other = await catalog.api("maps", plans=[gold])

    active = await store.create_subscription(application.id, api.id, free.id, billing_anchor_day=28)
    assert active.id.startswith("sub_")
    assert (active.state, active.api_id, active.plan_id, active.billing_anchor_day) == (
        "ACTIVE",
        api.id,
        free.id,
        28,
    )
    assert schema.as_utc(active.created_at) == schema.as_utc(active.updated_at) == clock.current
    pending = await store.create_subscription(application.id, other.id, gold.id)
    assert pending.state == "PENDING_APPROVAL"
    assert (await store.get_subscription(pending.id)).state == "PENDING_APPROVAL"


async def test_subscription_by_api_and_plan_name(store: StoreRepository, catalog: CatalogRows) -> None:
    application, api, _free, gold = await subscribable(store, catalog)
    subscription = await store.create_subscription(application.id, "weather", "gold")
    assert (subscription.api_id, subscription.plan_id) == (api.id, gold.id)


async def test_api_name_ignores_unpublished_versions_and_rejects_ambiguity(
    store: StoreRepository, catalog: CatalogRows
) -> None:
    application = await store.create_application("app", "ann")
    free = await catalog.plan("free")
    await catalog.api("weather", plans=[free], version="v1", published=False)
    v2 = await catalog.api("weather", plans=[free], version="v2")
    subscription = await store.create_subscription(application.id, "weather", "free")
    assert subscription.api_id == v2.id

    await catalog.api("weather", plans=[free], version="v3")
    other = await store.create_application("other", "ann")
    with pytest.raises(InvalidArgument, match="ambiguous"):
        await store.create_subscription(other.id, "weather", "free")


async def test_subscription_needs_a_live_application(store: StoreRepository, catalog: CatalogRows) -> None:
    application, api, free, _gold = await subscribable(store, catalog)
    with pytest.raises(NotFound, match="application 'app_missing' not found"):
        await store.create_subscription("app_missing", api.id, free.id)
    await store.delete_application(application.id)
    with pytest.raises(FailedPrecondition, match="is deleted"):
        await store.create_subscription(application.id, api.id, free.id)


async def test_subscription_needs_a_published_api(store: StoreRepository, catalog: CatalogRows) -> None:
    application, _api, free, _gold = await subscribable(store, catalog)
    draft = await catalog.api("draft", plans=[free], published=False)
    for api in (draft.id, "draft", "api_missing", "no-such-api"):
        with pytest.raises(FailedPrecondition, match="no published API"):
            await store.create_subscription(application.id, api, free.id)


async def test_subscription_plan_must_be_offered(store: StoreRepository, catalog: CatalogRows) -> None:
    application, api, _free, _gold = await subscribable(store, catalog)
    platinum = await catalog.plan("platinum")
    for plan in (platinum.id, "platinum", "plan_missing"):
        with pytest.raises(InvalidArgument, match=r"not offered by API 'weather' \(offered: free, gold\)"):
            await store.create_subscription(application.id, api.id, plan)
    with pytest.raises(InvalidArgument, match="plan_id is required"):
        await store.create_subscription(application.id, api.id, "")


async def test_billing_anchor_day_range(store: StoreRepository, catalog: CatalogRows) -> None:
    application, api, free, _gold = await subscribable(store, catalog)
    with pytest.raises(InvalidArgument, match="billing_anchor_day must be 1-28"):
        await store.create_subscription(application.id, api.id, free.id, billing_anchor_day=29)
    with pytest.raises(InvalidArgument):
        await store.create_subscription(application.id, api.id, free.id, billing_anchor_day=-1)
    assert (await store.create_subscription(application.id, api.id, free.id)).billing_anchor_day == 0


async def test_one_live_subscription_per_application_and_api(
    store: StoreRepository, catalog: CatalogRows
) -> None:
    application, api, free, gold = await subscribable(store, catalog)
    first = await store.create_subscription(application.id, api.id, free.id)
    with pytest.raises(AlreadyExists, match="already subscribed to API 'weather'"):
        await store.create_subscription(application.id, api.id, gold.id)
    await store.block_subscription(first.id)
    with pytest.raises(AlreadyExists):
        await store.create_subscription(application.id, api.id, free.id)
    await store.cancel_subscription(first.id)
    second = await store.create_subscription(application.id, api.id, gold.id)
    assert second.state == "PENDING_APPROVAL"
    # Another application may subscribe to the same API.
    other = await store.create_application("other", "ann")
    await store.create_subscription(other.id, api.id, free.id)


async def test_block_unblock_cancel(store: StoreRepository, catalog: CatalogRows, clock: FakeClock) -> None:
    application, api, free, _gold = await subscribable(store, catalog)
    subscription = await store.create_subscription(application.id, api.id, free.id)

    with pytest.raises(FailedPrecondition, match="is ACTIVE; only BLOCKED"):
        await store.unblock_subscription(subscription.id)
    with pytest.raises(InvalidArgument, match="reason must be at most 500"):
        await store.block_subscription(subscription.id, "r" * 501)
    clock.advance(hours=1)
    blocked = await store.block_subscription(subscription.id, "r" * 500)
    assert (blocked.state, blocked.state_reason) == ("BLOCKED", "r" * 500)
    assert schema.as_utc(blocked.updated_at) == clock.current
    with pytest.raises(FailedPrecondition, match="is BLOCKED; only ACTIVE"):
        await store.block_subscription(subscription.id, "again")

    unblocked = await store.unblock_subscription(subscription.id)
    assert (unblocked.state, unblocked.state_reason) == ("ACTIVE", "")
    cancelled = await store.cancel_subscription(subscription.id)
    assert cancelled.state == "CANCELLED"
    for transition in (store.cancel_subscription, store.block_subscription, store.unblock_subscription):
        with pytest.raises(FailedPrecondition, match="is CANCELLED"):
            await transition(subscription.id)
    with pytest.raises(NotFound):
        await store.cancel_subscription("sub_missing")


async def test_pending_subscription_can_be_cancelled_but_not_blocked(
    store: StoreRepository, catalog: CatalogRows
) -> None:
    application, api, _free, gold = await subscribable(store, catalog)
    pending = await store.create_subscription(application.id, api.id, gold.id)
    with pytest.raises(FailedPrecondition, match="is PENDING_APPROVAL"):
        await store.block_subscription(pending.id)
    assert (await store.cancel_subscription(pending.id)).state == "CANCELLED"


async def test_list_subscriptions_filters(store: StoreRepository, catalog: CatalogRows) -> None:
    application, api, free, gold = await subscribable(store, catalog)
    maps = await catalog.api("maps", plans=[gold])
    other = await store.create_application("other", "ann")
    a = await store.create_subscription(application.id, api.id, free.id)
    b = await store.create_subscription(application.id, maps.id, gold.id)
    c = await store.create_subscription(other.id, api.id, free.id)

    def ids(rows: list[schema.Subscription]) -> set[str]:
        return {row.id for row in rows}

    assert ids(await store.list_subscriptions()) == {a.id, b.id, c.id}
    assert ids(await store.list_subscriptions(application_id=application.id)) == {a.id, b.id}
    assert ids(await store.list_subscriptions(api_id=api.id)) == {a.id, c.id}
    assert ids(await store.list_subscriptions(state="PENDING_APPROVAL")) == {b.id}
    assert ids(await store.list_subscriptions(application_id=other.id, api_id=maps.id)) == set()
    with pytest.raises(InvalidArgument, match="unknown subscription state"):
        await store.list_subscriptions(state="SLEEPING")


# API keys


async def test_issued_key_is_stored_only_as_keyed_hash(
    store: StoreRepository, database: Database, clock: FakeClock
) -> None:
    application = await store.create_application("app", "ann")
    issued = await store.create_api_key(application.id, "  ci  ")
    parsed = keys.parse_key(issued.key)
    assert parsed is not None
    assert parsed.key_id == issued.api_key.key_id
    assert issued.key not in repr(issued)

    stored = await store.get_api_key(parsed.key_id)
    assert stored.name == "ci"
    assert keys.verify_key(KEY_HASH_SECRET, issued.key, stored.key_hash)
    assert not keys.verify_key("another-secret", issued.key, stored.key_hash)
    assert (stored.expires_at, stored.revoked_at, stored.rotated_from) == (None, None, None)
    assert schema.as_utc(stored.created_at) == clock.current
    assert store.key_state(stored) == "ACTIVE"
    assert [k.key_id for k in await store.list_api_keys(application.id)] == [parsed.key_id]
    assert [k.key_id for k in await store.list_api_keys()] == [parsed.key_id]
    assert await store.list_api_keys("app_other") == []


async def test_key_ttl_and_expiry(store: StoreRepository, clock: FakeClock) -> None:
    application = await store.create_application("app", "ann")
    issued = await store.create_api_key(application.id, ttl=timedelta(hours=1))
    assert schema.as_utc(issued.api_key.expires_at) == clock.current + timedelta(hours=1)
    clock.advance(minutes=59, seconds=59)
    assert store.key_state(await store.get_api_key(issued.api_key.key_id)) == "ACTIVE"
    clock.advance(seconds=1)
    assert store.key_state(await store.get_api_key(issued.api_key.key_id)) == "EXPIRED"

    longest = await store.create_api_key(application.id, ttl=MAX_KEY_LIFETIME)
    assert schema.as_utc(longest.api_key.expires_at) == clock.current + MAX_KEY_LIFETIME
    for ttl, message in (
        (timedelta(0), "ttl must be positive"),
        (timedelta(seconds=-1), "ttl must be positive"),
        (MAX_KEY_LIFETIME + timedelta(seconds=1), "at most 10 years"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            await store.create_api_key(application.id, ttl=ttl)
    with pytest.raises(InvalidArgument, match="name must be at most 100"):
        await store.create_api_key(application.id, "n" * 101)


async def test_key_needs_a_live_application(store: StoreRepository) -> None:
    with pytest.raises(NotFound):
        await store.create_api_key("app_missing")
    with pytest.raises(InvalidArgument, match="application_id is required"):
        await store.create_api_key("")
    application = await store.create_application("app", "ann")
    await store.delete_application(application.id)
    with pytest.raises(FailedPrecondition, match="is deleted"):
        await store.create_api_key(application.id)


async def test_key_id_validation_never_echoes_a_full_key(store: StoreRepository) -> None:
    application = await store.create_application("app", "ann")
    issued = await store.create_api_key(application.id)
    secret = issued.key.rsplit("_", 1)[1]
    for call in (store.get_api_key, store.revoke_api_key, store.rotate_api_key):
        with pytest.raises(InvalidArgument, match="not the full key") as caught:
            await call(issued.key)
        assert secret not in str(caught.value)
    with pytest.raises(InvalidArgument, match="12-character key id"):
        await store.get_api_key("nope")
    with pytest.raises(NotFound, match="API key 'aaaaaaaaaaaa' not found"):
        await store.get_api_key("aaaaaaaaaaaa")
    # A full key embedded in other input is masked as well.
    with pytest.raises(NotFound) as caught:
        await store.get_application(f"x{issued.key}")
    assert secret not in str(caught.value)
    assert keys.display(issued.api_key.key_id) in str(caught.value)


async def test_rotation_keeps_old_key_for_the_grace_period(
    store: StoreRepository, clock: FakeClock, commits: CommitCounter
) -> None:
    application = await store.create_application("app", "ann")
    old = await store.create_api_key(application.id, "ci")
    clock.advance(hours=1)
    before = commits.count

    rotated = await store.rotate_api_key(
        old.api_key.key_id, grace=timedelta(minutes=10), ttl=timedelta(days=30)
    )
    assert commits.count == before + 1
    new_parsed = keys.parse_key(rotated.key)
    assert new_parsed is not None
    assert new_parsed.key_id == rotated.api_key.key_id != old.api_key.key_id
    assert rotated.key not in repr(rotated)
    new = await store.get_api_key(rotated.api_key.key_id)
    assert (new.application_id, new.name, new.rotated_from) == (application.id, "ci", old.api_key.key_id)
    assert schema.as_utc(new.expires_at) == clock.current + timedelta(days=30)
    assert keys.verify_key(KEY_HASH_SECRET, rotated.key, new.key_hash)

    previous = await store.get_api_key(old.api_key.key_id)
    assert schema.as_utc(previous.expires_at) == clock.current + timedelta(minutes=10)
    assert schema.as_utc(rotated.previous.expires_at) == clock.current + timedelta(minutes=10)
    # Both work during the grace period; only the new one after it.
    clock.advance(minutes=9, seconds=59)
    assert [store.key_state(await store.get_api_key(k)) for k in (previous.key_id, new.key_id)] == [
        "ACTIVE",
        "ACTIVE",
    ]
    clock.advance(seconds=1)
    assert [store.key_state(await store.get_api_key(k)) for k in (previous.key_id, new.key_id)] == [
        "EXPIRED",
        "ACTIVE",
    ]


async def test_rotation_default_and_zero_grace(store: StoreRepository, clock: FakeClock) -> None:
    application = await store.create_application("app", "ann")
    first = await store.create_api_key(application.id)
    rotated = await store.rotate_api_key(first.api_key.key_id)
    assert schema.as_utc(rotated.previous.expires_at) == clock.current + timedelta(hours=24)
    assert rotated.api_key.expires_at is None

    second = await store.create_api_key(application.id)
    rotated_now = await store.rotate_api_key(second.api_key.key_id, grace=timedelta(0))
    assert schema.as_utc(rotated_now.previous.expires_at) == clock.current
    assert store.key_state(await store.get_api_key(second.api_key.key_id)) == "EXPIRED"


async def test_rotation_never_extends_an_expiry(store: StoreRepository, clock: FakeClock) -> None:
    application = await store.create_application("app", "ann")
    short = await store.create_api_key(application.id, ttl=timedelta(minutes=5))
    rotated = await store.rotate_api_key(short.api_key.key_id, grace=timedelta(hours=1))
    assert schema.as_utc(rotated.previous.expires_at) == clock.current + timedelta(minutes=5)


async def test_rotation_refusals(store: StoreRepository, clock: FakeClock) -> None:
    application = await store.create_application("app", "ann")
    revoked = await store.create_api_key(application.id)
    await store.revoke_api_key(revoked.api_key.key_id)
    with pytest.raises(FailedPrecondition, match="is REVOKED and cannot be rotated"):
        await store.rotate_api_key(revoked.api_key.key_id)

    expiring = await store.create_api_key(application.id, ttl=timedelta(seconds=1))
    clock.advance(seconds=1)
    with pytest.raises(FailedPrecondition, match="is EXPIRED and cannot be rotated"):
        await store.rotate_api_key(expiring.api_key.key_id)

    rotating = await store.create_api_key(application.id)
    rotated = await store.rotate_api_key(rotating.api_key.key_id)
    with pytest.raises(FailedPrecondition, match=f"already rotated to '{rotated.api_key.key_id}'"):
        await store.rotate_api_key(rotating.api_key.key_id)
    # The replacement rotates on.
    await store.rotate_api_key(rotated.api_key.key_id)

    for grace, message in (
        (timedelta(seconds=-1), "grace_period must be zero or positive"),
        (MAX_KEY_LIFETIME + timedelta(days=1), "grace_period must be at most 10 years"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            await store.rotate_api_key(rotated.api_key.key_id, grace=grace)
    with pytest.raises(NotFound):
        await store.rotate_api_key("aaaaaaaaaaaa")


async def test_revoke_is_immediate_and_idempotent(
    store: StoreRepository, clock: FakeClock, commits: CommitCounter
) -> None:
    application = await store.create_application("app", "ann")
    issued = await store.create_api_key(application.id, ttl=timedelta(days=1))
    revoked = await store.revoke_api_key(issued.api_key.key_id)
    revoked_at = clock.current
    assert schema.as_utc(revoked.revoked_at) == revoked_at
    assert store.key_state(revoked) == "REVOKED"

    before = commits.count
    clock.advance(minutes=1)
    again = await store.revoke_api_key(issued.api_key.key_id)
    assert schema.as_utc(again.revoked_at) == revoked_at
    assert commits.count == before
    # Revocation outranks expiry.
    clock.advance(days=2)
    assert store.key_state(await store.get_api_key(issued.api_key.key_id)) == "REVOKED"


# Block rules


async def test_block_rules_for_every_target(store: StoreRepository, catalog: CatalogRows) -> None:
    application = await store.create_application("app", "ann")
    api = await catalog.api("weather")
    issued = await store.create_api_key(application.id)
    created = [
        await store.create_block_rule("API", api.id, "maintenance"),
        await store.create_block_rule("APPLICATION", application.id),
        await store.create_block_rule("API_KEY", issued.api_key.key_id, "leaked"),
        await store.create_block_rule("CLIENT_CIDR", " 10.1.2.3/8 "),
        await store.create_block_rule("CLIENT_CIDR", "2001:DB8::1"),
        await store.create_block_rule("CLIENT_CIDR", "192.0.2.7"),
    ]
    assert [(rule.target, rule.value) for rule in created] == [
        ("API", api.id),
        ("APPLICATION", application.id),
        ("API_KEY", issued.api_key.key_id),
        ("CLIENT_CIDR", "10.0.0.0/8"),
        ("CLIENT_CIDR", "2001:db8::1/128"),
        ("CLIENT_CIDR", "192.0.2.7/32"),
    ]
    assert created[0].id.startswith("block_")
    assert created[0].reason == "maintenance"
    assert {rule.id for rule in await store.list_block_rules()} == {rule.id for rule in created}

    await store.delete_block_rule(created[0].id)
    assert created[0].id not in {rule.id for rule in await store.list_block_rules()}
    with pytest.raises(NotFound, match="block rule"):
        await store.delete_block_rule(created[0].id)


async def test_block_rule_refusals(store: StoreRepository, catalog: CatalogRows) -> None:
    application = await store.create_application("app", "ann")
    issued = await store.create_api_key(application.id)
    await store.create_block_rule("CLIENT_CIDR", "10.0.0.0/8")

    with pytest.raises(AlreadyExists, match="already blocked"):
        await store.create_block_rule("CLIENT_CIDR", "10.9.9.9/8")  # normalizes to the same network
    with pytest.raises(InvalidArgument, match="IPv4 or IPv6 address or CIDR"):
        await store.create_block_rule("CLIENT_CIDR", "10.0.0.0/33")
    with pytest.raises(InvalidArgument, match="IPv4 or IPv6 address or CIDR"):
        await store.create_block_rule("CLIENT_CIDR", "example.com")
    with pytest.raises(NotFound, match="API 'api_missing' not found"):
        await store.create_block_rule("API", "api_missing")
    with pytest.raises(NotFound, match="application 'app_missing' not found"):
        await store.create_block_rule("APPLICATION", "app_missing")
    with pytest.raises(NotFound, match="API key 'aaaaaaaaaaaa' not found"):
        await store.create_block_rule("API_KEY", "aaaaaaaaaaaa")
    with pytest.raises(InvalidArgument, match="not the full key"):
        await store.create_block_rule("API_KEY", issued.key)
    with pytest.raises(InvalidArgument, match="target must be one of"):
        await store.create_block_rule("", "x")
    with pytest.raises(InvalidArgument, match="value is required"):
        await store.create_block_rule("API", " ")
    with pytest.raises(InvalidArgument, match="reason must be at most 500"):
        await store.create_block_rule("APPLICATION", application.id, "r" * 501)
    await store.create_block_rule("APPLICATION", application.id, "r" * 500)
    with pytest.raises(AlreadyExists):
        await store.create_block_rule("APPLICATION", application.id)


# Writes, revisions and rejected input


async def test_every_write_bumps_the_revision_once(
    store: StoreRepository, catalog: CatalogRows, database: Database, commits: CommitCounter
) -> None:
    application, api, free, _gold = await subscribable(store, catalog)
    start_revision, start_commits = await database.current_revision(), commits.count
    subscription = await store.create_subscription(application.id, api.id, free.id)
    await store.block_subscription(subscription.id, "x")
    await store.unblock_subscription(subscription.id)
    issued = await store.create_api_key(application.id)
    rotated = await store.rotate_api_key(issued.api_key.key_id)
    await store.revoke_api_key(rotated.api_key.key_id)
    rule = await store.create_block_rule("APPLICATION", application.id)
    await store.delete_block_rule(rule.id)
    await store.update_application(application.id, {"description": "d"})
    await store.cancel_subscription(subscription.id)
    writes = 10
    assert await database.current_revision() == start_revision + writes
    assert commits.count == start_commits + writes


async def test_rejected_writes_change_nothing(
    store: StoreRepository, catalog: CatalogRows, dump: Dump, commits: CommitCounter, clock: FakeClock
) -> None:
    application, api, free, gold = await subscribable(store, catalog)
    unpublished = await catalog.api("draft", plans=[free], published=False)
    platinum = await catalog.plan("platinum")
    deleted = await store.create_application("gone", "ann")
    await store.delete_application(deleted.id)
    subscription = await store.create_subscription(application.id, api.id, free.id)
    cancelled_api = await catalog.api("maps", plans=[free])
    cancelled = await store.create_subscription(application.id, cancelled_api.id, free.id)
    await store.cancel_subscription(cancelled.id)
    key = await store.create_api_key(application.id)
    revoked = await store.create_api_key(application.id)
    await store.revoke_api_key(revoked.api_key.key_id)
    expired = await store.create_api_key(application.id, ttl=timedelta(seconds=1))
    rotated_away = await store.create_api_key(application.id)
    await store.rotate_api_key(rotated_away.api_key.key_id)
    await store.create_block_rule("CLIENT_CIDR", "10.0.0.0/8")
    clock.advance(seconds=5)

    rejected: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.create_application("", "ann"),
        lambda: store.create_application("weather-app", "dev@example.com"),
        lambda: store.create_application("n" * 101),
        lambda: store.update_application(application.id, {"name": ""}),
        lambda: store.update_application(deleted.id, {"name": "back"}),
        lambda: store.update_application("app_missing", {"name": "x"}),
        lambda: store.delete_application("app_missing"),
        lambda: store.create_subscription(application.id, api.id, gold.id),
        lambda: store.create_subscription(application.id, unpublished.id, free.id),
        lambda: store.create_subscription(application.id, cancelled_api.id, platinum.id),
        lambda: store.create_subscription(application.id, cancelled_api.id, free.id, billing_anchor_day=31),
        lambda: store.create_subscription(deleted.id, cancelled_api.id, free.id),
        lambda: store.block_subscription(subscription.id, "r" * 501),
        lambda: store.unblock_subscription(subscription.id),
        lambda: store.cancel_subscription(cancelled.id),
        lambda: store.create_api_key(deleted.id),
        lambda: store.create_api_key(application.id, ttl=timedelta(0)),
        lambda: store.rotate_api_key(revoked.api_key.key_id),
        lambda: store.rotate_api_key(expired.api_key.key_id),
        lambda: store.rotate_api_key(rotated_away.api_key.key_id),
        lambda: store.rotate_api_key(key.api_key.key_id, grace=timedelta(seconds=-1)),
        lambda: store.rotate_api_key(key.key),
        lambda: store.revoke_api_key("aaaaaaaaaaaa"),
        lambda: store.create_block_rule("CLIENT_CIDR", "10.2.3.4/8"),
        lambda: store.create_block_rule("CLIENT_CIDR", "not-an-ip"),
        lambda: store.create_block_rule("API", "api_missing"),
        lambda: store.create_block_rule("API_KEY", key.key),
        lambda: store.create_block_rule("APPLICATION", application.id, "r" * 501),
        lambda: store.delete_block_rule("block_missing"),
    ]
    before, commits_before = await dump(), commits.count
    for index, call in enumerate(rejected):
        with pytest.raises(TollwayError):
            await call()
        assert await dump() == before, f"rejected write #{index} changed the database"
    assert commits.count == commits_before
    # The dump does see changes: an accepted write shows up in it.
    await store.update_application(application.id, {"description": "changed"})
    assert await dump() != before


def test_repository_needs_a_secret_and_a_sane_grace(database: Database) -> None:
    with pytest.raises(ValueError, match="key hash secret"):
        StoreRepository(database, lambda: None, "", timedelta(hours=1))
    with pytest.raises(ValueError, match="grace period"):
        StoreRepository(database, lambda: None, "s", timedelta(seconds=-1))


async def test_concurrent_conflicting_writes_yield_one_row(
    store: StoreRepository, catalog: CatalogRows
) -> None:
    application, api, free, _gold = await subscribable(store, catalog)
    issued = await store.create_api_key(application.id)
    batches: list[tuple[Callable[[], Awaitable[Any]], type[TollwayError]]] = [
        (lambda: store.create_application("shop", "ann"), AlreadyExists),
        (lambda: store.create_block_rule("APPLICATION", application.id), AlreadyExists),
        (lambda: store.create_subscription(application.id, api.id, free.id), AlreadyExists),
        (lambda: store.rotate_api_key(issued.api_key.key_id), FailedPrecondition),
    ]
    for call, refusal in batches:
        results = await asyncio.gather(*(call() for _ in range(5)), return_exceptions=True)
        assert sum(not isinstance(result, BaseException) for result in results) == 1, results
        assert all(isinstance(r, refusal) for r in results if isinstance(r, BaseException)), results
    assert len([a for a in await store.list_applications() if a.name == "shop"]) == 1
    assert len(await store.list_block_rules()) == 1
    assert len(await store.list_subscriptions()) == 1
    assert len(await store.list_api_keys(application.id)) == 2
