"""Hostile input through a whole Tollway process (the runner's servers, interceptors and all), on SQLite
and PostgreSQL: control characters in every string field of representative write RPCs, oversized
strings and out-of-range timestamps answer INVALID_ARGUMENT naming the field and change nothing;
undecodable messages on either port answer INVALID_ARGUMENT and leave a rate-limited summary in the
log, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tests.catalog import catalog_helpers
from tests.e2e.harness import free_port
from tests.support import EnvoyCredential
from tollway.app.runner import TollwayProcess
from tollway.billing.v1 import accounts_pb2, accounts_pb2_grpc, billing_pb2, billing_pb2_grpc
from tollway.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tollway.db import Database
from tollway.request_guard import FREE_TEXT_FIELDS, MAX_STRING_CHARS
from tollway.settings import Settings
from tollway.store.v1 import store_pb2, store_pb2_grpc
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc

Code = grpc.StatusCode
TOKEN = "bad-input-test-token"
# NUL (what PostgreSQL refused with INTERNAL), ESC (terminal escapes in a CLI listing), DEL, a C1 control.
CONTROLS = ("\x00", "\x1b", "\x7f", "\x85")


async def dump(db: Database) -> dict[str, list[str]]:
    """Every row written by requests; the running throttle's heartbeat (its replica row's last_seen,
    refreshed every few seconds whatever the requests do) left out."""
    tables = await catalog_helpers.dump(db)
    tables.pop("throttle_memory_replica", None)
    return tables


@dataclass
class Running:
    process: TollwayProcess
    admin: grpc.aio.Channel
    envoy_facing: grpc.aio.Channel
    db: Database


@pytest.fixture
async def running(database: Database, tmp_path: Path) -> AsyncIterator[Running]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database.url,
        database_schema=database.schema_name or "",
        grpc_addr=f"127.0.0.1:{free_port()}",
        admin_addr=f"127.0.0.1:{free_port()}",
        envoy_admin_addr=f"127.0.0.1:{free_port()}",
        portal_addr=f"127.0.0.1:{free_port()}",
        portal_grpc_addr=f"127.0.0.1:{free_port()}",
        admin_token=TOKEN,
        key_hash_secret="bad-input-test-secret",
        change_poll_seconds=0.1,
    ).resolved()
    process = TollwayProcess(settings)
    await process.start()
    admin = grpc.aio.insecure_channel(settings.admin_addr)
    envoy_facing = EnvoyCredential(settings).aio_channel()
    try:
        yield Running(process, admin, envoy_facing, database)
    finally:
        await admin.close()
        await envoy_facing.close()
        await process.stop()


METADATA = (("authorization", f"Bearer {TOKEN}"),)


def string_paths(message: Message, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every string field of `message`'s type, nested messages included (Timestamps and Durations aside)."""
    for field in message.DESCRIPTOR.fields:
        path = (*prefix, field.name)
        if field.type == FieldDescriptor.TYPE_STRING:
            yield path
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.message_type.full_name.startswith(
            "google.protobuf"
        ):
            child = (
                field.message_type._concrete_class() if field.is_repeated else getattr(message, field.name)
            )
            yield from string_paths(child, path)


def with_value(request: Message, path: tuple[str, ...], value: str) -> Message:
    """A copy of `request` whose field at `path` holds `value` (repeated: one more element)."""
    copy = type(request)()
    copy.CopyFrom(request)
    target: Any = copy
    for name in path[:-1]:
        child = getattr(target, name)
        target = child.add() if hasattr(child, "add") else child
    field = target.DESCRIPTOR.fields_by_name[path[-1]]
    if field.is_repeated:
        getattr(target, path[-1]).append(value)
    else:
        setattr(target, path[-1], value)
    return copy


async def refused(running: Running, call: Awaitable[Any], field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == Code.INVALID_ARGUMENT, caught.value.details()
    assert field in (caught.value.details() or ""), caught.value.details()


@dataclass
class Setup:
    plan_id: str
    api_id: str
    application_id: str
    subscription_id: str


async def setup(running: Running) -> Setup:
    catalog = catalog_pb2_grpc.CatalogServiceStub(running.admin)
    store = store_pb2_grpc.StoreServiceStub(running.admin)
    plan = (
        await catalog.CreatePlan(
            catalog_pb2.CreatePlanRequest(plan=catalog_pb2.Plan(name="basic")), metadata=METADATA
        )
    ).plan
    created_api = await catalog.CreateApi(
        catalog_pb2.CreateApiRequest(
            api=catalog_pb2.Api(
                name="weather",
                context_path="/weather",
                upstream_urls=["http://127.0.0.1:1"],
                plan_ids=[plan.id],
            )
        ),
        metadata=METADATA,
    )
    await catalog.PublishApi(catalog_pb2.PublishApiRequest(id=created_api.api.id), metadata=METADATA)
    api = created_api.api
    application = (
        await store.CreateApplication(
            store_pb2.CreateApplicationRequest(application=store_pb2.Application(name="shop")),
            metadata=METADATA,
        )
    ).application
    subscription = (
        await store.CreateSubscription(
            store_pb2.CreateSubscriptionRequest(
                application_id=application.id, api_id=api.id, plan_id=plan.id
            ),
            metadata=METADATA,
        )
    ).subscription
    return Setup(plan.id, api.id, application.id, subscription.id)


Call = Callable[[grpc.aio.Channel, Message], Awaitable[Any]]


def writes(ids: Setup) -> dict[str, tuple[Call, Message]]:
    """Representative write RPCs of each admin service, each with a request that would succeed."""

    def unary(stub: Any, method: str) -> Call:
        return lambda channel, request: getattr(stub(channel), method)(request, metadata=METADATA)

    catalog, store = catalog_pb2_grpc.CatalogServiceStub, store_pb2_grpc.StoreServiceStub
    billing, throttle = billing_pb2_grpc.BillingServiceStub, throttle_pb2_grpc.QuotaServiceStub
    return {
        "catalog.CreatePlan": (
            unary(catalog, "CreatePlan"),
            catalog_pb2.CreatePlanRequest(
                plan=catalog_pb2.Plan(
                    name="gold",
                    description="for serious users",
                    pricing=catalog_pb2.PlanPricing(currency="EUR", recurring_fee="49.00"),
                )
            ),
        ),
        "catalog.CreateApi": (
            unary(catalog, "CreateApi"),
            catalog_pb2.CreateApiRequest(
                api=catalog_pb2.Api(
                    name="maps", version="v1", context_path="/maps", upstream_urls=["http://127.0.0.1:2"]
                )
            ),
        ),
        "store.CreateApplication": (
            unary(store, "CreateApplication"),
            store_pb2.CreateApplicationRequest(
                application=store_pb2.Application(name="app", owner="ann@example.com", description="mine")
            ),
        ),
        "store.CreateApiKey": (
            unary(store, "CreateApiKey"),
            store_pb2.CreateApiKeyRequest(application_id=ids.application_id, name="ci"),
        ),
        "store.BlockSubscription": (
            unary(store, "BlockSubscription"),
            store_pb2.BlockSubscriptionRequest(id=ids.subscription_id, reason="abuse"),
        ),
        "billing.SuspendSubscription": (
            unary(billing, "SuspendSubscription"),
            billing_pb2.SuspendSubscriptionRequest(subscription_id=ids.subscription_id, reason="unpaid"),
        ),
        "billing.TopUpCredit": (
            unary(billing, "TopUpCredit"),
            billing_pb2.TopUpCreditRequest(
                application_id=ids.application_id,
                currency="EUR",
                amount="10.00",
                request_id="r1",
                note="paid",
            ),
        ),
        "billing.SetSpendCap": (
            unary(billing, "SetSpendCap"),
            billing_pb2.SetSpendCapRequest(
                cap=billing_pb2.SpendCap(
                    scope="SUBSCRIPTION",
                    target_id=ids.subscription_id,
                    kind="CHARGE",
                    limit="5.00",
                    currency="EUR",
                )
            ),
        ),
        "billing.CreateBillingAccount": (
            unary(accounts_pb2_grpc.BillingAccountServiceStub, "CreateBillingAccount"),
            accounts_pb2.CreateBillingAccountRequest(
                name="Acme", email="ap@acme.example", address="Main St 1\nBerlin", tax_id="DE123"
            ),
        ),
        "throttle.SetTrafficLimit": (
            unary(throttle, "SetTrafficLimit"),
            throttle_pb2.SetTrafficLimitRequest(
                limit=throttle_pb2.TrafficLimit(
                    scope=throttle_pb2.LIMIT_SCOPE_API, target_id=ids.api_id, requests_per_second=5
                )
            ),
        ),
    }


RPCS = (
    "catalog.CreatePlan",
    "catalog.CreateApi",
    "store.CreateApplication",
    "store.CreateApiKey",
    "store.BlockSubscription",
    "billing.SuspendSubscription",
    "billing.TopUpCredit",
    "billing.SetSpendCap",
    "billing.CreateBillingAccount",
    "throttle.SetTrafficLimit",
)


@pytest.mark.parametrize("rpc", RPCS)
async def test_control_characters_in_any_string_field_are_refused_and_change_nothing(
    running: Running, rpc: str
) -> None:
    call, request = writes(await setup(running))[rpc]
    before = await dump(running.db)
    paths = list(string_paths(request))
    assert paths
    for path in paths:
        name = path[-1]
        controls = CONTROLS if name in FREE_TEXT_FIELDS else (*CONTROLS, "\n", "\t")
        for control in controls:
            bad = with_value(request, path, f"ok{control}ok")
            await refused(running, call(running.admin, bad), name)
        await refused(
            running, call(running.admin, with_value(request, path, "x" * (MAX_STRING_CHARS * 5))), name
        )
    assert await dump(running.db) == before
    # The same request without the bad character is served: the refusals were about the characters.
    await call(running.admin, request)


def stamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


YEAR_9999 = stamp(253_402_300_000)
BEFORE_EPOCH = stamp(-62_135_596_800)  # year 1
BAD_NANOS = stamp(1_700_000_000, -1)


async def test_out_of_range_timestamps_in_billing_usage_and_quota_queries_are_refused(
    running: Running,
) -> None:
    ids = await setup(running)
    before = await dump(running.db)
    billing = billing_pb2_grpc.BillingServiceStub(running.admin)
    usage = usage_pb2_grpc.UsageServiceStub(running.admin)
    quota = throttle_pb2_grpc.QuotaServiceStub(running.admin)
    fine = stamp(1_700_000_000)
    for bad in (YEAR_9999, BEFORE_EPOCH, BAD_NANOS):
        await refused(
            running,
            billing.GetUsageSummary(
                billing_pb2.GetUsageSummaryRequest(subscription_id=ids.subscription_id, at=bad),
                metadata=METADATA,
            ),
            "at",
        )
        await refused(
            running,
            billing.GenerateInvoices(
                billing_pb2.GenerateInvoicesRequest(period_start=bad, period_end=fine), metadata=METADATA
            ),
            "period_start",
        )
        await refused(
            running,
            billing.ReconcileUsage(billing_pb2.ReconcileUsageRequest(at=bad), metadata=METADATA),
            "at",
        )
        await refused(
            running,
            usage.GetUsageTotals(
                usage_pb2.GetUsageTotalsRequest(start_time=fine, end_time=bad), metadata=METADATA
            ),
            "end_time",
        )
        await refused(
            running,
            quota.GetSubscriptionQuota(
                throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=ids.subscription_id, at=bad),
                metadata=METADATA,
            ),
            "at",
        )
    assert await dump(running.db) == before


def raw_unary(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


GARBAGE = b"\xff\xff\xff\xff\x0f"


async def test_undecodable_messages_leave_a_rate_limited_summary_and_no_traceback(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    calls = {
        running.envoy_facing: (
            "/envoy.service.auth.v3.Authorization/Check",
            "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        ),
        running.admin: ("/tollway.catalog.v1.CatalogService/CreatePlan",),
    }
    for channel, methods in calls.items():
        for method in methods:
            for _ in range(50):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await raw_unary(channel, method)(GARBAGE, metadata=METADATA)
                assert caught.value.code() == Code.INVALID_ARGUMENT, caught.value.details()
    # ADS: a stream whose message does not decode.
    ads = running.envoy_facing.stream_stream(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        request_serializer=None,
        response_deserializer=None,
    )
    for _ in range(20):
        stream = ads()
        await stream.write(GARBAGE)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _response in stream:
                pass
        assert caught.value.code() == Code.INVALID_ARGUMENT, caught.value.details()

    # Access logs: streams whose messages are garbage, each refused.
    access_logs = running.envoy_facing.stream_unary(
        "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs",
        request_serializer=None,
        response_deserializer=None,
    )
    for _ in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await access_logs(iter([GARBAGE]))
        assert caught.value.code() == Code.INVALID_ARGUMENT, caught.value.details()
    # ADS: one stream of a known node asking again and again for a type Tollway does not serve.
    unknown = discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id=running.process.settings.envoy_node_id),
        type_url="type.googleapis.com/unknown.Type",
    )
    stream = ads()
    for _ in range(30):
        await stream.write(unknown.SerializeToString())
    await stream.done_writing()
    async for _response in stream:
        pass

    assert not [record for record in caplog.records if record.exc_info or "Traceback" in record.getMessage()]
    unknown_type = [record for record in caplog.records if "does not serve" in record.getMessage()]
    assert len(unknown_type) == 1
    summaries = [record for record in caplog.records if "undecodable" in record.getMessage()]
    # One report per method within the interval (the counts follow in the next one).
    assert 1 <= len(summaries) <= 4, [record.getMessage() for record in summaries]
