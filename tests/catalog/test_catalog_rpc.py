"""CatalogService through a real grpc.aio server: conversions, update masks, status codes and messages,
and that every rejected call left the database exactly as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from tests.catalog.catalog_helpers import add_subscription, dump
from tests.support import grpc_server
from tollway.catalog.servicer import CatalogServicer
from tollway.catalog.store import CatalogStore
from tollway.catalog.v1 import catalog_pb2 as pb
from tollway.catalog.v1 import catalog_pb2_grpc
from tollway.db import Database


@pytest.fixture
async def stub(database: Database) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    servicer = CatalogServicer(CatalogStore(database, on_commit=lambda: None))
    async with grpc_server(
        lambda server: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server)
    ) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


async def refused(db: Database, call: Awaitable[Any], code: grpc.StatusCode, message: str) -> str:
    """Awaits an RPC that must fail with `code` and a message containing `message`, changing nothing."""
    before = await dump(db)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    details = caught.value.details() or ""
    assert message in details
    assert await dump(db) == before
    return details


def gold_plan() -> pb.Plan:
    return pb.Plan(
        name="gold",
        description="for serious users",
        limits=pb.PlanLimits(
            requests_per_second=10,
            requests_per_day=50_000,
            monthly_quota=1_000_000,
            quota_policy=pb.QUOTA_POLICY_SOFT,
        ),
        pricing=pb.PlanPricing(
            currency="EUR",
            recurring_fee="49.00",
            included_requests=100_000,
            tiers=[pb.PriceTier(up_to=500_000, unit_price="0.0004"), pb.PriceTier(unit_price="0.0002")],
            overage_price="0.001",
            minimum_charge="49.00",
        ),
        approval_required=True,
    )


def weather_api(*plan_ids: str) -> pb.Api:
    return pb.Api(
        name="weather",
        version="v1",
        context_path="/weather/v1",
        upstream_urls=["http://127.0.0.1:9000/forecast"],
        plan_ids=list(plan_ids),
        description="forecasts",
    )


async def test_plan_round_trip(stub: catalog_pb2_grpc.CatalogServiceStub) -> None:
    created = (await stub.CreatePlan(pb.CreatePlanRequest(plan=gold_plan()))).plan
    assert created.id.startswith("plan_")
    assert created.HasField("create_time") and created.HasField("update_time")
    expected = gold_plan()
    expected.id = created.id
    # Unset money comes back as an explicit zero, unset tier mode as the default (graduated).
    expected.pricing.unit_price = expected.pricing.package_price = "0"
    for tier in expected.pricing.tiers:
        tier.flat_fee = "0"
    expected.pricing.tier_mode = pb.TIER_MODE_GRADUATED
    expected.version = 1
    expected.create_time.CopyFrom(created.create_time)
    expected.update_time.CopyFrom(created.update_time)
    assert created == expected

    assert (await stub.GetPlan(pb.GetPlanRequest(id="gold"))).plan == created
    assert (await stub.GetPlan(pb.GetPlanRequest(id=created.id))).plan == created
    free = (await stub.CreatePlan(pb.CreatePlanRequest(plan=pb.Plan(name="free")))).plan
    # Defaults come back explicit: HARD quota, zero amounts.
    assert free.limits.quota_policy == pb.QUOTA_POLICY_HARD
    assert (free.pricing.recurring_fee, free.pricing.unit_price) == ("0", "0")
    listed = (await stub.ListPlans(pb.ListPlansRequest())).plans
    assert [p.name for p in listed] == ["free", "gold"]


async def test_update_plan_with_mask(stub: catalog_pb2_grpc.CatalogServiceStub, database: Database) -> None:
    created = (await stub.CreatePlan(pb.CreatePlanRequest(plan=gold_plan()))).plan
    change = pb.Plan(id=created.id, name="ignored", description="new words")
    updated = (
        await stub.UpdatePlan(pb.UpdatePlanRequest(plan=change, update_mask=FieldMask(paths=["description"])))
    ).plan
    assert (updated.name, updated.description) == ("gold", "new words")
    assert updated.pricing == created.pricing

    # An empty mask replaces every mutable field.
    replaced = (await stub.UpdatePlan(pb.UpdatePlanRequest(plan=pb.Plan(id="gold", name="basic")))).plan
    assert replaced.id == created.id
    assert (replaced.name, replaced.description, replaced.approval_required) == ("basic", "", False)
    assert replaced.pricing == pb.PlanPricing(
        recurring_fee="0", unit_price="0", overage_price="0", minimum_charge="0", package_price="0"
    )

    await refused(
        database,
        stub.UpdatePlan(
            pb.UpdatePlanRequest(
                plan=pb.Plan(id=created.id), update_mask=FieldMask(paths=["limits.rps", "id"])
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask names unknown or immutable fields: id, limits.rps",
    )
    await refused(
        database,
        stub.UpdatePlan(pb.UpdatePlanRequest(plan=pb.Plan(name="x"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "plan.id is required",
    )
    await refused(
        database,
        stub.UpdatePlan(pb.UpdatePlanRequest(plan=pb.Plan(id="plan_nope", name="x"))),
        grpc.StatusCode.NOT_FOUND,
        "plan 'plan_nope' not found",
    )


@pytest.mark.parametrize(
    ("plan", "code", "message"),
    [
        (pb.Plan(), grpc.StatusCode.INVALID_ARGUMENT, "name is required"),
        (
            pb.Plan(name="x", pricing=pb.PlanPricing(currency="EUR", recurring_fee="49,00")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "pricing.recurring_fee must be a decimal amount",
        ),
        (
            pb.Plan(name="x", pricing=pb.PlanPricing(unit_price="0.01")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "pricing.currency is required for a priced plan",
        ),
        (
            pb.Plan(name="x", pricing=pb.PlanPricing(currency="EUR", tiers=[pb.PriceTier(up_to=5)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "the last tier must be unbounded",
        ),
        (
            pb.Plan(name="x", limits=pb.PlanLimits(quota_policy=7)),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
            "limits.quota_policy must be HARD or SOFT, got '7'",
        ),
        (
            pb.Plan(name="x", limits=pb.PlanLimits(requests_per_minute=2**63)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "limits.requests_per_minute must be at most 1000000000000",
        ),
        (pb.Plan(name="gold"), grpc.StatusCode.ALREADY_EXISTS, "a plan named 'gold' already exists"),
    ],
)
async def test_create_plan_refusals(
    stub: catalog_pb2_grpc.CatalogServiceStub, database: Database, plan: pb.Plan, code: Any, message: str
) -> None:
    await stub.CreatePlan(pb.CreatePlanRequest(plan=gold_plan()))
    await refused(database, stub.CreatePlan(pb.CreatePlanRequest(plan=plan)), code, message)


async def test_api_lifecycle(stub: catalog_pb2_grpc.CatalogServiceStub, database: Database) -> None:
    plan = (await stub.CreatePlan(pb.CreatePlanRequest(plan=gold_plan()))).plan
    api = (await stub.CreateApi(pb.CreateApiRequest(api=weather_api("gold")))).api
    assert api.id.startswith("api_")
    assert list(api.plan_ids) == [plan.id]  # names resolve to identifiers
    assert not api.published
    assert list(api.upstream_urls) == ["http://127.0.0.1:9000/forecast"]

    published = (await stub.PublishApi(pb.PublishApiRequest(id=api.id))).api
    assert published.published
    listed = (await stub.ListApis(pb.ListApisRequest(published_only=True))).apis
    assert [a.id for a in listed] == [api.id]

    await refused(
        database,
        stub.DeleteApi(pb.DeleteApiRequest(id=api.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        f"API weather ({api.id}) is published; unpublish it first",
    )
    await refused(
        database,
        stub.DeletePlan(pb.DeletePlanRequest(id=plan.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        f"plan gold ({plan.id}) is offered by API weather ({api.id})",
    )

    change = pb.Api(id=api.id, context_path="/weather/v2", version="v2")
    updated = (
        await stub.UpdateApi(
            pb.UpdateApiRequest(api=change, update_mask=FieldMask(paths=["context_path", "version"]))
        )
    ).api
    assert (updated.context_path, updated.version, updated.description) == ("/weather/v2", "v2", "forecasts")
    assert updated.published  # updates leave publishing alone

    unpublished = (await stub.UnpublishApi(pb.UnpublishApiRequest(id="weather:v2"))).api
    assert not unpublished.published
    assert (await stub.ListApis(pb.ListApisRequest(published_only=True))).apis == []
    assert len((await stub.ListApis(pb.ListApisRequest())).apis) == 1

    await stub.DeleteApi(pb.DeleteApiRequest(id=api.id))
    await stub.DeletePlan(pb.DeletePlanRequest(id="gold"))
    assert (await stub.ListApis(pb.ListApisRequest())).apis == []
    assert (await stub.ListPlans(pb.ListPlansRequest())).plans == []


async def test_api_refusals(stub: catalog_pb2_grpc.CatalogServiceStub, database: Database) -> None:
    plan = (await stub.CreatePlan(pb.CreatePlanRequest(plan=gold_plan()))).plan
    api = (await stub.CreateApi(pb.CreateApiRequest(api=weather_api(plan.id)))).api

    def create(**fields: Any) -> Awaitable[pb.CreateApiResponse]:
        draft = weather_api(plan.id)
        draft.name = "other"
        for name, value in fields.items():
            if isinstance(value, list):
                del getattr(draft, name)[:]
                getattr(draft, name).extend(value)
            else:
                setattr(draft, name, value)
        return stub.CreateApi(pb.CreateApiRequest(api=draft))

    details = await refused(
        database, create(context_path="/weather"), grpc.StatusCode.ALREADY_EXISTS, "overlaps"
    )
    assert details == f'context_path "/weather" overlaps "/weather/v1" of API weather ({api.id})'
    await refused(
        database,
        create(context_path="/weather/"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "context_path must not end with \"/\": use '/weather'",
    )
    await refused(
        database,
        create(context_path="/x", plan_ids=["plan_gone"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "plan_ids names unknown plans: plan_gone",
    )
    await refused(
        database,
        create(context_path="/x", upstream_urls=["http://a:1/p", "https://b:1/p"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "every URL of an API must share scheme and path",
    )
    await refused(
        database,
        create(context_path="/x", upstream_urls=["http://admin:secret@a"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must not contain user information",
    )
    await refused(
        database,
        stub.UpdateApi(
            pb.UpdateApiRequest(
                api=pb.Api(id=api.id, published=True), update_mask=FieldMask(paths=["published"])
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask names unknown or immutable fields: published",
    )
    await refused(
        database,
        stub.UpdateApi(pb.UpdateApiRequest(api=pb.Api(context_path="/y"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "api.id is required",
    )
    await refused(
        database, stub.GetApi(pb.GetApiRequest(id="nope")), grpc.StatusCode.NOT_FOUND, "API 'nope' not found"
    )
    await refused(
        database, stub.GetApi(pb.GetApiRequest()), grpc.StatusCode.INVALID_ARGUMENT, "id is required"
    )
    await refused(
        database,
        stub.GetPlan(pb.GetPlanRequest(id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "plan 'nope' not found",
    )

    bare = (
        await stub.CreateApi(pb.CreateApiRequest(api=pb.Api(name="bare", version="v1", context_path="/bare")))
    ).api
    await refused(
        database,
        stub.PublishApi(pb.PublishApiRequest(id=bare.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "offers no plan",
    )
    await stub.CreateApi(pb.CreateApiRequest(api=pb.Api(name="bare", version="v2", context_path="/bare2")))
    await refused(
        database,
        stub.PublishApi(pb.PublishApiRequest(id="bare")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "API name 'bare' is ambiguous",
    )

    await add_subscription(database, api.id, plan.id)
    await refused(
        database,
        stub.DeleteApi(pb.DeleteApiRequest(id=api.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "has 1 live subscription(s)",
    )
    await refused(
        database,
        stub.DeletePlan(pb.DeletePlanRequest(id=plan.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "is offered by API weather",
    )


async def test_price_changes_are_versions_listed_in_the_plans_history(
    stub: catalog_pb2_grpc.CatalogServiceStub, database: Database
) -> None:
    created = (await stub.CreatePlan(pb.CreatePlanRequest(plan=gold_plan()))).plan
    cheaper = pb.Plan(id=created.id, pricing=gold_plan().pricing)
    cheaper.pricing.recurring_fee = "39.00"
    mask = FieldMask(paths=["pricing"])
    updated = (await stub.UpdatePlan(pb.UpdatePlanRequest(plan=cheaper, update_mask=mask))).plan
    assert (updated.version, updated.pricing.recurring_fee) == (2, "39.00")
    faster = pb.Plan(id=created.id, limits=gold_plan().limits)
    faster.limits.requests_per_second = 20
    now = pb.UpdatePlanRequest(
        plan=faster, update_mask=FieldMask(paths=["limits"]), effect=pb.VERSION_EFFECT_INSTANT
    )
    assert (await stub.UpdatePlan(now)).plan.version == 3

    versions = (await stub.ListPlanVersions(pb.ListPlanVersionsRequest(id="gold"))).versions
    assert [
        (v.version, v.effect, v.pricing.recurring_fee, v.limits.requests_per_second) for v in versions
    ] == [
        (1, pb.VERSION_EFFECT_INSTANT, "49.00", 10),
        (2, pb.VERSION_EFFECT_NEXT_PERIOD, "39.00", 10),
        (3, pb.VERSION_EFFECT_INSTANT, "39.00", 20),
    ]
    assert versions[2].effective_time.ToDatetime().second == 0  # the next whole minute
    assert versions[2].pricing.tiers == created.pricing.tiers

    past = pb.UpdatePlanRequest(plan=cheaper, update_mask=mask, effect=pb.VERSION_EFFECT_INSTANT)
    past.effective_time.FromSeconds(1_699_999_980)  # a whole minute in 2023
    await refused(
        database, stub.UpdatePlan(past), grpc.StatusCode.INVALID_ARGUMENT, "never applies retroactively"
    )
    await refused(
        database,
        stub.UpdatePlan(pb.UpdatePlanRequest(plan=cheaper, update_mask=mask, effect=7)),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
        "effect must be a VersionEffect",
    )
    await refused(
        database,
        stub.ListPlanVersions(pb.ListPlanVersionsRequest(id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "nope",
    )
