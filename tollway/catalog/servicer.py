"""CatalogService over gRPC: converts requests to drafts, calls the store, converts rows back.

All rules live in tollway.catalog.validation and tollway.catalog.store; errors become gRPC statuses
through map_grpc_errors.
"""

from __future__ import annotations

import grpc

from tollway import schema
from tollway.catalog.documents import ApiDocuments
from tollway.catalog.limits import PlanLimits
from tollway.catalog.store import ApiRecord, CatalogStore
from tollway.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tollway.catalog.validation import (
    API_FIELDS,
    PLAN_FIELDS,
    ApiDraft,
    PlanDraft,
    PriceTierDraft,
    PricingDraft,
)
from tollway.errors import InvalidArgument, map_grpc_errors
from tollway.protoconv import mask_fields, timestamp, to_datetime
from tollway.schema_portal import ApiDocument
from tollway.vocabulary import TierMode, VersionEffect

_TIER_MODES = {
    catalog_pb2.TIER_MODE_UNSPECIFIED: "",
    catalog_pb2.TIER_MODE_GRADUATED: TierMode.GRADUATED,
    catalog_pb2.TIER_MODE_VOLUME: TierMode.VOLUME,
}
_TIER_MODE_VALUES = {name: value for value, name in _TIER_MODES.items() if name}


def pricing_from_proto(pricing: catalog_pb2.PlanPricing) -> PricingDraft:
    return PricingDraft(
        currency=pricing.currency,
        recurring_fee=pricing.recurring_fee,
        included_requests=pricing.included_requests,
        unit_price=pricing.unit_price,
        tiers=tuple(
            PriceTierDraft(up_to=tier.up_to, unit_price=tier.unit_price, flat_fee=tier.flat_fee)
            for tier in pricing.tiers
        ),
        overage_price=pricing.overage_price,
        minimum_charge=pricing.minimum_charge,
        billable_classes=tuple(pricing.billable_classes),
        # An enum number this server does not know stays visible, so validation can reject it.
        tier_mode=_TIER_MODES.get(pricing.tier_mode, str(pricing.tier_mode)),
        package_size=pricing.package_size,
        package_price=pricing.package_price,
        trial_days=pricing.trial_days,
    )


def pricing_to_proto(pricing: PricingDraft) -> catalog_pb2.PlanPricing:
    return catalog_pb2.PlanPricing(
        currency=pricing.currency,
        recurring_fee=pricing.recurring_fee,
        included_requests=pricing.included_requests,
        unit_price=pricing.unit_price,
        tiers=[
            catalog_pb2.PriceTier(up_to=tier.up_to, unit_price=tier.unit_price, flat_fee=tier.flat_fee)
            for tier in pricing.tiers
        ],
        overage_price=pricing.overage_price,
        minimum_charge=pricing.minimum_charge,
        billable_classes=list(pricing.billable_classes),
        tier_mode=_TIER_MODE_VALUES.get(pricing.tier_mode, catalog_pb2.TIER_MODE_UNSPECIFIED),
        package_size=pricing.package_size,
        package_price=pricing.package_price,
        trial_days=pricing.trial_days,
    )


def plan_from_proto(plan: catalog_pb2.Plan) -> PlanDraft:
    return PlanDraft(
        name=plan.name,
        description=plan.description,
        limits=PlanLimits.from_proto(plan.limits),
        pricing=pricing_from_proto(plan.pricing),
        approval_required=plan.approval_required,
        prepaid=plan.prepaid,
    )


def plan_to_proto(row: schema.Plan) -> catalog_pb2.Plan:
    return catalog_pb2.Plan(
        id=row.id,
        name=row.name,
        description=row.description,
        limits=PlanLimits.from_row(row).to_proto(),
        pricing=pricing_to_proto(PricingDraft.from_columns(row)),
        approval_required=row.approval_required,
        prepaid=row.prepaid,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        version=max(row.version or 1, 1),
    )


_VERSION_EFFECTS = {
    catalog_pb2.VERSION_EFFECT_UNSPECIFIED: VersionEffect.NEXT_PERIOD,
    catalog_pb2.VERSION_EFFECT_NEXT_PERIOD: VersionEffect.NEXT_PERIOD,
    catalog_pb2.VERSION_EFFECT_INSTANT: VersionEffect.INSTANT,
}
_VERSION_EFFECT_VALUES = {
    VersionEffect.NEXT_PERIOD: catalog_pb2.VERSION_EFFECT_NEXT_PERIOD,
    VersionEffect.INSTANT: catalog_pb2.VERSION_EFFECT_INSTANT,
}


def version_to_proto(row: schema.PlanVersion) -> catalog_pb2.PlanVersion:
    return catalog_pb2.PlanVersion(
        plan_id=row.plan_id,
        version=row.version,
        limits=PlanLimits.from_columns(row.limits).to_proto(),
        pricing=pricing_to_proto(PricingDraft.from_columns(row.pricing)),
        effect=_VERSION_EFFECT_VALUES.get(VersionEffect(row.effect), catalog_pb2.VERSION_EFFECT_UNSPECIFIED),
        effective_time=timestamp(row.effective_at),
        create_time=timestamp(row.created_at),
    )


def api_from_proto(api: catalog_pb2.Api) -> ApiDraft:
    return ApiDraft(
        name=api.name,
        version=api.version,
        context_path=api.context_path,
        upstream_urls=tuple(api.upstream_urls),
        plan_ids=tuple(api.plan_ids),
        description=api.description,
    )


def api_to_proto(record: ApiRecord) -> catalog_pb2.Api:
    api = record.api
    return catalog_pb2.Api(
        id=api.id,
        name=api.name,
        version=api.version,
        context_path=api.context_path,
        upstream_urls=list(api.upstream_urls),
        plan_ids=list(record.plan_ids),
        published=api.published,
        description=api.description,
        create_time=timestamp(api.created_at),
        update_time=timestamp(api.updated_at),
    )


def _required_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    return value


def document_to_proto(row: ApiDocument) -> catalog_pb2.ApiDocument:
    return catalog_pb2.ApiDocument(
        api_id=row.api_id,
        content=row.content,
        media_type=row.media_type,
        title=row.title,
        version=row.version,
        update_time=timestamp(row.updated_at),
    )


@map_grpc_errors
class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, store: CatalogStore, documents: ApiDocuments | None = None) -> None:
        self._store = store
        # The API documents live beside the catalog, in the same database.
        self._documents = documents or ApiDocuments(store.db, store)

    async def CreatePlan(
        self,
        request: catalog_pb2.CreatePlanRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.CreatePlanRequest, catalog_pb2.CreatePlanResponse],
    ) -> catalog_pb2.CreatePlanResponse:
        row = await self._store.create_plan(plan_from_proto(request.plan))
        return catalog_pb2.CreatePlanResponse(plan=plan_to_proto(row))

    async def GetPlan(
        self,
        request: catalog_pb2.GetPlanRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.GetPlanRequest, catalog_pb2.GetPlanResponse],
    ) -> catalog_pb2.GetPlanResponse:
        row = await self._store.get_plan(_required_id(request.id, "id"))
        return catalog_pb2.GetPlanResponse(plan=plan_to_proto(row))

    async def ListPlans(
        self,
        request: catalog_pb2.ListPlansRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.ListPlansRequest, catalog_pb2.ListPlansResponse],
    ) -> catalog_pb2.ListPlansResponse:
        rows = await self._store.list_plans()
        return catalog_pb2.ListPlansResponse(plans=[plan_to_proto(row) for row in rows])

    async def UpdatePlan(
        self,
        request: catalog_pb2.UpdatePlanRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.UpdatePlanRequest, catalog_pb2.UpdatePlanResponse],
    ) -> catalog_pb2.UpdatePlanResponse:
        plan_id = _required_id(request.plan.id, "plan.id")
        fields = mask_fields(request.update_mask, PLAN_FIELDS)
        effect = _VERSION_EFFECTS.get(request.effect)
        if effect is None:
            raise InvalidArgument(f"effect must be a VersionEffect, got {request.effect}")
        effective_time = (
            to_datetime(request.effective_time, "effective_time")
            if request.HasField("effective_time")
            else None
        )
        row = await self._store.update_plan(
            plan_id, plan_from_proto(request.plan), fields, effect, effective_time
        )
        return catalog_pb2.UpdatePlanResponse(plan=plan_to_proto(row))

    async def ListPlanVersions(
        self,
        request: catalog_pb2.ListPlanVersionsRequest,
        context: grpc.aio.ServicerContext[
            catalog_pb2.ListPlanVersionsRequest, catalog_pb2.ListPlanVersionsResponse
        ],
    ) -> catalog_pb2.ListPlanVersionsResponse:
        rows = await self._store.plan_versions(_required_id(request.id, "id"))
        return catalog_pb2.ListPlanVersionsResponse(versions=[version_to_proto(row) for row in rows])

    async def DeletePlan(
        self,
        request: catalog_pb2.DeletePlanRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.DeletePlanRequest, catalog_pb2.DeletePlanResponse],
    ) -> catalog_pb2.DeletePlanResponse:
        await self._store.delete_plan(_required_id(request.id, "id"))
        return catalog_pb2.DeletePlanResponse()

    async def CreateApi(
        self,
        request: catalog_pb2.CreateApiRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.CreateApiRequest, catalog_pb2.CreateApiResponse],
    ) -> catalog_pb2.CreateApiResponse:
        record = await self._store.create_api(api_from_proto(request.api))
        return catalog_pb2.CreateApiResponse(api=api_to_proto(record))

    async def GetApi(
        self,
        request: catalog_pb2.GetApiRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.GetApiRequest, catalog_pb2.GetApiResponse],
    ) -> catalog_pb2.GetApiResponse:
        record = await self._store.get_api(_required_id(request.id, "id"))
        return catalog_pb2.GetApiResponse(api=api_to_proto(record))

    async def ListApis(
        self,
        request: catalog_pb2.ListApisRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.ListApisRequest, catalog_pb2.ListApisResponse],
    ) -> catalog_pb2.ListApisResponse:
        records = await self._store.list_apis(published_only=request.published_only)
        return catalog_pb2.ListApisResponse(apis=[api_to_proto(record) for record in records])

    async def UpdateApi(
        self,
        request: catalog_pb2.UpdateApiRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.UpdateApiRequest, catalog_pb2.UpdateApiResponse],
    ) -> catalog_pb2.UpdateApiResponse:
        api_id = _required_id(request.api.id, "api.id")
        fields = mask_fields(request.update_mask, API_FIELDS)
        record = await self._store.update_api(api_id, api_from_proto(request.api), fields)
        return catalog_pb2.UpdateApiResponse(api=api_to_proto(record))

    async def DeleteApi(
        self,
        request: catalog_pb2.DeleteApiRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.DeleteApiRequest, catalog_pb2.DeleteApiResponse],
    ) -> catalog_pb2.DeleteApiResponse:
        await self._store.delete_api(_required_id(request.id, "id"))
        return catalog_pb2.DeleteApiResponse()

    async def PublishApi(
        self,
        request: catalog_pb2.PublishApiRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.PublishApiRequest, catalog_pb2.PublishApiResponse],
    ) -> catalog_pb2.PublishApiResponse:
        record = await self._store.publish_api(_required_id(request.id, "id"))
        return catalog_pb2.PublishApiResponse(api=api_to_proto(record))

    async def UnpublishApi(
        self,
        request: catalog_pb2.UnpublishApiRequest,
        context: grpc.aio.ServicerContext[catalog_pb2.UnpublishApiRequest, catalog_pb2.UnpublishApiResponse],
    ) -> catalog_pb2.UnpublishApiResponse:
        record = await self._store.unpublish_api(_required_id(request.id, "id"))
        return catalog_pb2.UnpublishApiResponse(api=api_to_proto(record))

    async def SetApiDocument(
        self,
        request: catalog_pb2.SetApiDocumentRequest,
        context: grpc.aio.ServicerContext[
            catalog_pb2.SetApiDocumentRequest, catalog_pb2.SetApiDocumentResponse
        ],
    ) -> catalog_pb2.SetApiDocumentResponse:
        row = await self._documents.set_document(request.api_id, request.content)
        return catalog_pb2.SetApiDocumentResponse(document=document_to_proto(row))

    async def GetApiDocument(
        self,
        request: catalog_pb2.GetApiDocumentRequest,
        context: grpc.aio.ServicerContext[
            catalog_pb2.GetApiDocumentRequest, catalog_pb2.GetApiDocumentResponse
        ],
    ) -> catalog_pb2.GetApiDocumentResponse:
        row = await self._documents.get_document(request.api_id)
        return catalog_pb2.GetApiDocumentResponse(document=document_to_proto(row))

    async def DeleteApiDocument(
        self,
        request: catalog_pb2.DeleteApiDocumentRequest,
        context: grpc.aio.ServicerContext[
            catalog_pb2.DeleteApiDocumentRequest, catalog_pb2.DeleteApiDocumentResponse
        ],
    ) -> catalog_pb2.DeleteApiDocumentResponse:
        await self._documents.delete_document(request.api_id)
        return catalog_pb2.DeleteApiDocumentResponse()
