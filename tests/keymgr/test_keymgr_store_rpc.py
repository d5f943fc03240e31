"""StoreService through a real grpc.aio server: status codes and messages, proto conversions, and that
no issued key (nor its secret) ever reaches a response after creation, a database column, the SQLite
files or a log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from keymgr_fixtures import (
    DEFAULT_GRACE,
    KEY_HASH_SECRET,
    START,
    CatalogRows,
    CommitCounter,
    FakeClock,
    new_store,
)
from sqlalchemy import text
from sqlalchemy.engine import make_url
from support import grpc_server

from keymgr import keys
from keymgr.admin import StoreServicer
from keymgr.store import StoreRepository
from tollway.db import Database
from tollway.store.v1 import store_pb2 as pb
from tollway.store.v1 import store_pb2_grpc

Code = grpc.StatusCode


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(database: Database, clock: FakeClock) -> StoreRepository:
    return new_store(database, CommitCounter(), clock)


@pytest.fixture
def catalog(database: Database) -> CatalogRows:
    return CatalogRows(database)


@pytest.fixture
async def stub(store: StoreRepository) -> AsyncIterator[store_pb2_grpc.StoreServiceStub]:
    servicer = StoreServicer(store)
    async with grpc_server(
        lambda server: store_pb2_grpc.add_StoreServiceServicer_to_server(servicer, server)
    ) as channel:
        yield store_pb2_grpc.StoreServiceStub(channel)


async def expect_error(call: Awaitable[object], code: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert message in (caught.value.details() or ""), caught.value.details()
    return caught.value


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


async def new_application(stub: store_pb2_grpc.StoreServiceStub, name: str = "shop") -> pb.Application:
    response = await stub.CreateApplication(
        pb.CreateApplicationRequest(application=pb.Application(name=name, owner="ann@example.com"))
    )
    return response.application


async def test_application_rpcs(stub: store_pb2_grpc.StoreServiceStub, clock: FakeClock) -> None:
    created = (
        await stub.CreateApplication(
            pb.CreateApplicationRequest(
                application=pb.Application(id="app_mine", name="shop", owner="ann", description="d")
            )
        )
    ).application
    # id is output only.
    assert created.id != "app_mine"
    assert created.id.startswith("app_")
    assert created.create_time.ToDatetime().replace(tzinfo=START.tzinfo) == clock.current
    assert not created.HasField("delete_time")
    assert (await stub.GetApplication(pb.GetApplicationRequest(id=created.id))).application == created

    await expect_error(
        stub.CreateApplication(pb.CreateApplicationRequest(application=pb.Application(owner="ann"))),
        Code.INVALID_ARGUMENT,
        "name is required",
    )
    await expect_error(
        stub.CreateApplication(
            pb.CreateApplicationRequest(application=pb.Application(name="shop", owner="ann"))
        ),
        Code.ALREADY_EXISTS,
        "owner 'ann' already has an application named 'shop'",
    )
    await expect_error(
        stub.GetApplication(pb.GetApplicationRequest(id="app_missing")),
        Code.NOT_FOUND,
        "application 'app_missing' not found",
    )

    updated = (
        await stub.UpdateApplication(
            pb.UpdateApplicationRequest(
                application=pb.Application(id=created.id, name="ignored", description="new"),
                update_mask=FieldMask(paths=["description"]),
            )
        )
    ).application
    assert (updated.name, updated.owner, updated.description) == ("shop", "ann", "new")
    # An empty mask replaces all three fields.
    replaced = (
        await stub.UpdateApplication(
            pb.UpdateApplicationRequest(application=pb.Application(id=created.id, name="store", owner="bob"))
        )
    ).application
    assert (replaced.name, replaced.owner, replaced.description) == ("store", "bob", "")
    await expect_error(
        stub.UpdateApplication(
            pb.UpdateApplicationRequest(
                application=pb.Application(id=created.id), update_mask=FieldMask(paths=["id"])
            )
        ),
        Code.INVALID_ARGUMENT,
        "update_mask names unknown or immutable fields: id",
    )

    clock.advance(seconds=1)  # lists are ordered by creation time
    other = await new_application(stub, "other")
    listed = (await stub.ListApplications(pb.ListApplicationsRequest())).applications
    assert [a.id for a in listed] == [created.id, other.id]
    by_owner = (await stub.ListApplications(pb.ListApplicationsRequest(owner="bob"))).applications
    assert [a.id for a in by_owner] == [created.id]

    clock.advance(minutes=1)
    await stub.DeleteApplication(pb.DeleteApplicationRequest(id=created.id))
    await stub.DeleteApplication(pb.DeleteApplicationRequest(id=created.id))  # idempotent
    deleted = (await stub.GetApplication(pb.GetApplicationRequest(id=created.id))).application
    assert deleted.delete_time.ToDatetime().replace(tzinfo=START.tzinfo) == clock.current
    assert [a.id for a in (await stub.ListApplications(pb.ListApplicationsRequest())).applications] == [
        other.id
    ]
    everything = await stub.ListApplications(pb.ListApplicationsRequest(include_deleted=True))
    assert len(everything.applications) == 2
    await expect_error(
        stub.UpdateApplication(
            pb.UpdateApplicationRequest(application=pb.Application(id=created.id, name="x"))
        ),
        Code.FAILED_PRECONDITION,
        "is deleted",
    )


async def test_subscription_rpcs(stub: store_pb2_grpc.StoreServiceStub, catalog: CatalogRows) -> None:
    application = await new_application(stub)
    free = await catalog.plan("free")
    gold = await catalog.plan("gold", approval_required=True)
    await catalog.plan("platinum")
    weather = await catalog.api("weather", plans=[free, gold])
    maps = await catalog.api("maps", plans=[gold])
    await catalog.api("draft", plans=[free], published=False)

    active = (
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                application_id=application.id, api_id="weather", plan_id="free", billing_anchor_day=15
            )
        )
    ).subscription
    assert (active.api_id, active.plan_id, active.state, active.billing_anchor_day) == (
        weather.id,
        free.id,
        pb.SUBSCRIPTION_STATE_ACTIVE,
        15,
    )
    pending = (
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(application_id=application.id, api_id=maps.id, plan_id=gold.id)
        )
    ).subscription
    assert pending.state == pb.SUBSCRIPTION_STATE_PENDING_APPROVAL

    def create(api: str, plan: str, anchor: int = 0) -> Awaitable[pb.CreateSubscriptionResponse]:
        return stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                application_id=application.id, api_id=api, plan_id=plan, billing_anchor_day=anchor
            )
        )

    await expect_error(create("weather", "gold"), Code.ALREADY_EXISTS, "already subscribed to API 'weather'")
    await expect_error(
        create("draft", "free"), Code.FAILED_PRECONDITION, "no published API with id or name 'draft'"
    )
    await expect_error(create("nothing", "free"), Code.FAILED_PRECONDITION, "no published API")
    await expect_error(
        create("maps", "platinum"), Code.INVALID_ARGUMENT, "plan 'platinum' is not offered by API 'maps'"
    )
    await expect_error(create("maps", "gold", 29), Code.INVALID_ARGUMENT, "billing_anchor_day must be 1-28")
    await expect_error(
        stub.CreateSubscription(
            pb.CreateSubscriptionRequest(application_id="app_x", api_id="maps", plan_id="gold")
        ),
        Code.NOT_FOUND,
        "application 'app_x' not found",
    )

    blocked = (
        await stub.BlockSubscription(pb.BlockSubscriptionRequest(id=active.id, reason="unpaid"))
    ).subscription
    assert (blocked.state, blocked.state_reason) == (pb.SUBSCRIPTION_STATE_BLOCKED, "unpaid")
    await expect_error(
        stub.BlockSubscription(pb.BlockSubscriptionRequest(id=pending.id)),
        Code.FAILED_PRECONDITION,
        "is PENDING_APPROVAL; only ACTIVE subscriptions can become BLOCKED",
    )
    listed = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(state=pb.SUBSCRIPTION_STATE_BLOCKED))
    assert [s.id for s in listed.subscriptions] == [active.id]
    by_api = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(api_id=maps.id))
    assert [s.id for s in by_api.subscriptions] == [pending.id]
    await expect_error(
        stub.ListSubscriptions(pb.ListSubscriptionsRequest(state=99)),
        Code.INVALID_ARGUMENT,
        "unknown value 99",
    )

    unblocked = (await stub.UnblockSubscription(pb.UnblockSubscriptionRequest(id=active.id))).subscription
    assert (unblocked.state, unblocked.state_reason) == (pb.SUBSCRIPTION_STATE_ACTIVE, "")
    cancelled = (await stub.CancelSubscription(pb.CancelSubscriptionRequest(id=active.id))).subscription
    assert cancelled.state == pb.SUBSCRIPTION_STATE_CANCELLED
    assert (await stub.GetSubscription(pb.GetSubscriptionRequest(id=active.id))).subscription == cancelled
    await expect_error(
        stub.CancelSubscription(pb.CancelSubscriptionRequest(id=active.id)),
        Code.FAILED_PRECONDITION,
        "CANCELLED",
    )
    await expect_error(
        stub.GetSubscription(pb.GetSubscriptionRequest(id="sub_missing")),
        Code.NOT_FOUND,
        "subscription 'sub_missing' not found",
    )


async def test_api_key_rpcs(stub: store_pb2_grpc.StoreServiceStub, clock: FakeClock) -> None:
    application = await new_application(stub)
    created = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(application_id=application.id, name="ci", ttl=seconds(3600))
    )
    parsed = keys.parse_key(created.key)
    assert parsed is not None
    secret = created.key.rsplit("_", 1)[1]
    api_key = created.api_key
    assert (api_key.key_id, api_key.application_id, api_key.name, api_key.state) == (
        parsed.key_id,
        application.id,
        "ci",
        pb.API_KEY_STATE_ACTIVE,
    )
    assert api_key.display == keys.display(parsed.key_id)
    assert api_key.expire_time.ToDatetime().replace(tzinfo=START.tzinfo) == clock.current + timedelta(hours=1)
    assert not api_key.HasField("revoke_time")
    assert api_key.rotated_from_key_id == ""

    listed = await stub.ListApiKeys(pb.ListApiKeysRequest(application_id=application.id))
    fetched = await stub.GetApiKey(pb.GetApiKeyRequest(key_id=parsed.key_id))
    assert [k.key_id for k in listed.api_keys] == [parsed.key_id]
    assert fetched.api_key == listed.api_keys[0] == api_key
    for response in (listed, fetched):
        assert secret.encode() not in response.SerializeToString()
        assert secret not in str(response)

    error = await expect_error(
        stub.GetApiKey(pb.GetApiKeyRequest(key_id=created.key)), Code.INVALID_ARGUMENT, "not the full key"
    )
    assert secret not in (error.details() or "")
    await expect_error(
        stub.GetApiKey(pb.GetApiKeyRequest(key_id="aaaaaaaaaaaa")), Code.NOT_FOUND, "API key 'aaaaaaaaaaaa'"
    )
    for ttl, message in ((seconds(-1), "ttl must not be negative"), (seconds(0), "ttl must be positive")):
        await expect_error(
            stub.CreateApiKey(pb.CreateApiKeyRequest(application_id=application.id, ttl=ttl)),
            Code.INVALID_ARGUMENT,
            message,
        )
    await expect_error(
        stub.CreateApiKey(
            pb.CreateApiKeyRequest(application_id=application.id, ttl=Duration(seconds=10**15))
        ),
        Code.INVALID_ARGUMENT,
        "ttl",
    )

    # Rotation with the server's default grace: both keys work for 24 h.
    rotated = await stub.RotateApiKey(pb.RotateApiKeyRequest(key_id=parsed.key_id))
    new_parsed = keys.parse_key(rotated.key)
    assert new_parsed is not None
    assert new_parsed.key_id == rotated.api_key.key_id
    assert rotated.api_key.rotated_from_key_id == parsed.key_id
    assert not rotated.api_key.HasField("expire_time")
    # The old key's one-hour TTL is shorter than the grace period, so it stands.
    previous = rotated.previous_api_key
    assert previous.expire_time.ToDatetime().replace(tzinfo=START.tzinfo) == clock.current + timedelta(
        hours=1
    )
    assert previous.state == pb.API_KEY_STATE_ACTIVE
    await expect_error(
        stub.RotateApiKey(pb.RotateApiKeyRequest(key_id=parsed.key_id)),
        Code.FAILED_PRECONDITION,
        "already rotated",
    )

    # A zero grace period retires the old key at once.
    at_once = await stub.RotateApiKey(
        pb.RotateApiKeyRequest(key_id=new_parsed.key_id, grace_period=seconds(0))
    )
    assert at_once.previous_api_key.state == pb.API_KEY_STATE_EXPIRED
    fetched_old = await stub.GetApiKey(pb.GetApiKeyRequest(key_id=new_parsed.key_id))
    assert fetched_old.api_key.state == pb.API_KEY_STATE_EXPIRED

    newest = at_once.api_key.key_id
    default_grace = await stub.CreateApiKey(pb.CreateApiKeyRequest(application_id=application.id))
    rotated_default = await stub.RotateApiKey(pb.RotateApiKeyRequest(key_id=default_grace.api_key.key_id))
    assert (
        rotated_default.previous_api_key.expire_time.ToDatetime().replace(tzinfo=START.tzinfo)
        == clock.current + DEFAULT_GRACE
    )

    clock.advance(seconds=30)
    revoked = (await stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=newest))).api_key
    assert revoked.state == pb.API_KEY_STATE_REVOKED
    assert revoked.revoke_time.ToDatetime().replace(tzinfo=START.tzinfo) == clock.current
    clock.advance(seconds=30)
    again = (await stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=newest))).api_key
    assert again.revoke_time == revoked.revoke_time
    await expect_error(
        stub.RotateApiKey(pb.RotateApiKeyRequest(key_id=newest)), Code.FAILED_PRECONDITION, "is REVOKED"
    )
    await expect_error(
        stub.RotateApiKey(pb.RotateApiKeyRequest(key_id=newest, grace_period=seconds(-5))),
        Code.INVALID_ARGUMENT,
        "grace_period must not be negative",
    )


async def test_block_rule_rpcs(stub: store_pb2_grpc.StoreServiceStub, catalog: CatalogRows) -> None:
    application = await new_application(stub)
    api = await catalog.api("weather")
    issued = await stub.CreateApiKey(pb.CreateApiKeyRequest(application_id=application.id))

    def create(target: int, value: str, reason: str = "") -> Awaitable[pb.CreateBlockRuleResponse]:
        return stub.CreateBlockRule(
            pb.CreateBlockRuleRequest(block_rule=pb.BlockRule(target=target, value=value, reason=reason))
        )

    rules = [
        (await create(pb.BLOCK_TARGET_API, api.id, "maintenance")).block_rule,
        (await create(pb.BLOCK_TARGET_APPLICATION, application.id)).block_rule,
        (await create(pb.BLOCK_TARGET_API_KEY, issued.api_key.key_id)).block_rule,
        (await create(pb.BLOCK_TARGET_CLIENT_CIDR, "203.0.113.9/24")).block_rule,
    ]
    assert [(r.target, r.value) for r in rules] == [
        (pb.BLOCK_TARGET_API, api.id),
        (pb.BLOCK_TARGET_APPLICATION, application.id),
        (pb.BLOCK_TARGET_API_KEY, issued.api_key.key_id),
        (pb.BLOCK_TARGET_CLIENT_CIDR, "203.0.113.0/24"),
    ]
    assert rules[0].reason == "maintenance"
    listed = (await stub.ListBlockRules(pb.ListBlockRulesRequest())).block_rules
    assert sorted(listed, key=lambda r: r.id) == sorted(rules, key=lambda r: r.id)

    await expect_error(
        create(pb.BLOCK_TARGET_UNSPECIFIED, "x"), Code.INVALID_ARGUMENT, "target must be one of"
    )
    await expect_error(create(99, "x"), Code.INVALID_ARGUMENT, "block_rule.target has an unknown value 99")
    await expect_error(
        create(pb.BLOCK_TARGET_CLIENT_CIDR, "203.0.113.1/24"), Code.ALREADY_EXISTS, "already blocked"
    )
    await expect_error(
        create(pb.BLOCK_TARGET_CLIENT_CIDR, "300.1.1.1"), Code.INVALID_ARGUMENT, "IPv4 or IPv6"
    )
    await expect_error(
        create(pb.BLOCK_TARGET_API, "api_missing"), Code.NOT_FOUND, "API 'api_missing' not found"
    )
    await expect_error(create(pb.BLOCK_TARGET_API, api.id + "x", "r" * 501), Code.INVALID_ARGUMENT, "reason")

    await stub.DeleteBlockRule(pb.DeleteBlockRuleRequest(id=rules[0].id))
    assert len((await stub.ListBlockRules(pb.ListBlockRulesRequest())).block_rules) == 3
    await expect_error(
        stub.DeleteBlockRule(pb.DeleteBlockRuleRequest(id=rules[0].id)), Code.NOT_FOUND, "block rule"
    )


async def every_stored_value(database: Database) -> str:
    """Every column of every table the database holds (not only the ones the schema knows), as text."""
    values: list[str] = []
    async with database.engine.connect() as conn:
        if database.is_sqlite:
            tables = (
                await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
            ).scalars()
            for table in list(tables):
                for row in await conn.execute(text(f'SELECT * FROM "{table}"')):
                    values.extend(str(value) for value in row)
        else:
            tables = (
                await conn.execute(
                    text("SELECT table_name FROM information_schema.tables WHERE table_schema = :schema"),
                    {"schema": database.schema_name},
                )
            ).scalars()
            for table in list(tables):
                rows = await conn.execute(text(f'SELECT row_to_json(t)::text FROM "{table}" t'))
                values.extend(rows.scalars())
    return "\n".join(values)


def sqlite_file_bytes(database: Database) -> bytes:
    """The SQLite database file and its WAL and shared-memory companions, as stored on disk."""
    path = Path(make_url(database.url).database or "")
    return b"".join(
        candidate.read_bytes()
        for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
        if candidate.exists()
    )


async def test_no_issued_key_is_stored_or_logged(
    stub: store_pb2_grpc.StoreServiceStub,
    database: Database,
    catalog: CatalogRows,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    free = await catalog.plan("free")
    await catalog.api("weather", plans=[free])
    application = await new_application(stub)
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(application_id=application.id, api_id="weather", plan_id="free")
    )
    issued: list[tuple[str, str]] = []  # (key id, full key)
    for name in ("web", "ci"):
        response = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(application_id=application.id, name=name, ttl=seconds(86400))
        )
        issued.append((response.api_key.key_id, response.key))
    rotated = await stub.RotateApiKey(pb.RotateApiKeyRequest(key_id=issued[0][0], grace_period=seconds(60)))
    issued.append((rotated.api_key.key_id, rotated.key))
    await stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=issued[1][0]))
    await stub.CreateBlockRule(
        pb.CreateBlockRuleRequest(block_rule=pb.BlockRule(target=pb.BLOCK_TARGET_API_KEY, value=issued[2][0]))
    )
    # Full keys sent where key ids belong are refused without being stored or echoed.
    for _key_id, full_key in issued:
        await expect_error(stub.GetApiKey(pb.GetApiKeyRequest(key_id=full_key)), Code.INVALID_ARGUMENT, "")
        await expect_error(
            stub.CreateBlockRule(
                pb.CreateBlockRuleRequest(
                    block_rule=pb.BlockRule(target=pb.BLOCK_TARGET_API_KEY, value=full_key)
                )
            ),
            Code.INVALID_ARGUMENT,
            "not the full key",
        )
    await stub.DeleteApplication(pb.DeleteApplicationRequest(id=application.id))

    stored = await every_stored_value(database)
    files = sqlite_file_bytes(database) if database.is_sqlite else b""
    for key_id, full_key in issued:
        secret = full_key.rsplit("_", 1)[1]
        # The dumps are real: each key's id and keyed hash are there.
        assert key_id in stored
        assert keys.key_hash(KEY_HASH_SECRET, full_key) in stored
        if database.is_sqlite:
            assert key_id.encode() in files
        for forbidden in (full_key, secret):
            assert forbidden not in stored
            assert forbidden.encode() not in files
            assert forbidden not in caplog.text
    assert "issued API key" in caplog.text  # the audit lines exist, carrying key ids only
