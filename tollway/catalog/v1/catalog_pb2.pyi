import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QuotaPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUOTA_POLICY_UNSPECIFIED: _ClassVar[QuotaPolicy]
    QUOTA_POLICY_HARD: _ClassVar[QuotaPolicy]
    QUOTA_POLICY_SOFT: _ClassVar[QuotaPolicy]

class TierMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_MODE_UNSPECIFIED: _ClassVar[TierMode]
    TIER_MODE_GRADUATED: _ClassVar[TierMode]
    TIER_MODE_VOLUME: _ClassVar[TierMode]

class VersionEffect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_EFFECT_UNSPECIFIED: _ClassVar[VersionEffect]
    VERSION_EFFECT_NEXT_PERIOD: _ClassVar[VersionEffect]
    VERSION_EFFECT_INSTANT: _ClassVar[VersionEffect]
QUOTA_POLICY_UNSPECIFIED: QuotaPolicy
QUOTA_POLICY_HARD: QuotaPolicy
QUOTA_POLICY_SOFT: QuotaPolicy
TIER_MODE_UNSPECIFIED: TierMode
TIER_MODE_GRADUATED: TierMode
TIER_MODE_VOLUME: TierMode
VERSION_EFFECT_UNSPECIFIED: VersionEffect
VERSION_EFFECT_NEXT_PERIOD: VersionEffect
VERSION_EFFECT_INSTANT: VersionEffect

class PlanLimits(_message.Message):
    __slots__ = ("requests_per_second", "requests_per_minute", "requests_per_hour", "requests_per_day", "monthly_quota", "quota_policy", "shadow_mode")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_QUOTA_FIELD_NUMBER: _ClassVar[int]
    QUOTA_POLICY_FIELD_NUMBER: _ClassVar[int]
    SHADOW_MODE_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: int
    requests_per_minute: int
    requests_per_hour: int
    requests_per_day: int
    monthly_quota: int
    quota_policy: QuotaPolicy
    shadow_mode: bool
    def __init__(self, requests_per_second: _Optional[int] = ..., requests_per_minute: _Optional[int] = ..., requests_per_hour: _Optional[int] = ..., requests_per_day: _Optional[int] = ..., monthly_quota: _Optional[int] = ..., quota_policy: _Optional[_Union[QuotaPolicy, str]] = ..., shadow_mode: _Optional[bool] = ...) -> None: ...

class PriceTier(_message.Message):
    __slots__ = ("up_to", "unit_price", "flat_fee")
    UP_TO_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    FLAT_FEE_FIELD_NUMBER: _ClassVar[int]
    up_to: int
    unit_price: str
    flat_fee: str
    def __init__(self, up_to: _Optional[int] = ..., unit_price: _Optional[str] = ..., flat_fee: _Optional[str] = ...) -> None: ...

class PlanPricing(_message.Message):
    __slots__ = ("currency", "recurring_fee", "included_requests", "unit_price", "tiers", "overage_price", "minimum_charge", "billable_classes", "tier_mode", "package_size", "package_price", "trial_days")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    RECURRING_FEE_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_CHARGE_FIELD_NUMBER: _ClassVar[int]
    BILLABLE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    TIER_MODE_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    TRIAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    currency: str
    recurring_fee: str
    included_requests: int
    unit_price: str
    tiers: _containers.RepeatedCompositeFieldContainer[PriceTier]
    overage_price: str
    minimum_charge: str
    billable_classes: _containers.RepeatedScalarFieldContainer[str]
    tier_mode: TierMode
    package_size: int
    package_price: str
    trial_days: int
    def __init__(self, currency: _Optional[str] = ..., recurring_fee: _Optional[str] = ..., included_requests: _Optional[int] = ..., unit_price: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[PriceTier, _Mapping]]] = ..., overage_price: _Optional[str] = ..., minimum_charge: _Optional[str] = ..., billable_classes: _Optional[_Iterable[str]] = ..., tier_mode: _Optional[_Union[TierMode, str]] = ..., package_size: _Optional[int] = ..., package_price: _Optional[str] = ..., trial_days: _Optional[int] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("id", "name", "description", "limits", "pricing", "approval_required", "create_time", "update_time", "version", "prepaid")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREPAID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    limits: PlanLimits
    pricing: PlanPricing
    approval_required: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    version: int
    prepaid: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., limits: _Optional[_Union[PlanLimits, _Mapping]] = ..., pricing: _Optional[_Union[PlanPricing, _Mapping]] = ..., approval_required: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., prepaid: _Optional[bool] = ...) -> None: ...

class PlanVersion(_message.Message):
    __slots__ = ("plan_id", "version", "limits", "pricing", "effect", "effective_time", "create_time")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    version: int
    limits: PlanLimits
    pricing: PlanPricing
    effect: VersionEffect
    effective_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, plan_id: _Optional[str] = ..., version: _Optional[int] = ..., limits: _Optional[_Union[PlanLimits, _Mapping]] = ..., pricing: _Optional[_Union[PlanPricing, _Mapping]] = ..., effect: _Optional[_Union[VersionEffect, str]] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Api(_message.Message):
    __slots__ = ("id", "name", "version", "context_path", "upstream_urls", "plan_ids", "published", "description", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_PATH_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_URLS_FIELD_NUMBER: _ClassVar[int]
    PLAN_IDS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    version: str
    context_path: str
    upstream_urls: _containers.RepeatedScalarFieldContainer[str]
    plan_ids: _containers.RepeatedScalarFieldContainer[str]
    published: bool
    description: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., context_path: _Optional[str] = ..., upstream_urls: _Optional[_Iterable[str]] = ..., plan_ids: _Optional[_Iterable[str]] = ..., published: _Optional[bool] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreatePlanRequest(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class CreatePlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("plans",)
    PLANS_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    def __init__(self, plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ...) -> None: ...

class UpdatePlanRequest(_message.Message):
    __slots__ = ("plan", "update_mask", "effect", "effective_time")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    update_mask: _field_mask_pb2.FieldMask
    effect: VersionEffect
    effective_time: _timestamp_pb2.Timestamp
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., effect: _Optional[_Union[VersionEffect, str]] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPlanVersionsRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListPlanVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[PlanVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[PlanVersion, _Mapping]]] = ...) -> None: ...

class UpdatePlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class DeletePlanRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeletePlanResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateApiRequest(_message.Message):
    __slots__ = ("api",)
    API_FIELD_NUMBER: _ClassVar[int]
    api: Api
    def __init__(self, api: _Optional[_Union[Api, _Mapping]] = ...) -> None: ...

class CreateApiResponse(_message.Message):
    __slots__ = ("api",)
    API_FIELD_NUMBER: _ClassVar[int]
    api: Api
    def __init__(self, api: _Optional[_Union[Api, _Mapping]] = ...) -> None: ...

class GetApiRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetApiResponse(_message.Message):
    __slots__ = ("api",)
    API_FIELD_NUMBER: _ClassVar[int]
    api: Api
    def __init__(self, api: _Optional[_Union[Api, _Mapping]] = ...) -> None: ...

class ListApisRequest(_message.Message):
    __slots__ = ("published_only",)
    PUBLISHED_ONLY_FIELD_NUMBER: _ClassVar[int]
    published_only: bool
    def __init__(self, published_only: _Optional[bool] = ...) -> None: ...

class ListApisResponse(_message.Message):
    __slots__ = ("apis",)
    APIS_FIELD_NUMBER: _ClassVar[int]
    apis: _containers.RepeatedCompositeFieldContainer[Api]
    def __init__(self, apis: _Optional[_Iterable[_Union[Api, _Mapping]]] = ...) -> None: ...

class UpdateApiRequest(_message.Message):
    __slots__ = ("api", "update_mask")
    API_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    api: Api
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, api: _Optional[_Union[Api, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateApiResponse(_message.Message):
    __slots__ = ("api",)
    API_FIELD_NUMBER: _ClassVar[int]
    api: Api
    def __init__(self, api: _Optional[_Union[Api, _Mapping]] = ...) -> None: ...

class DeleteApiRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteApiResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PublishApiRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PublishApiResponse(_message.Message):
    __slots__ = ("api",)
    API_FIELD_NUMBER: _ClassVar[int]
    api: Api
    def __init__(self, api: _Optional[_Union[Api, _Mapping]] = ...) -> None: ...

class UnpublishApiRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UnpublishApiResponse(_message.Message):
    __slots__ = ("api",)
    API_FIELD_NUMBER: _ClassVar[int]
    api: Api
    def __init__(self, api: _Optional[_Union[Api, _Mapping]] = ...) -> None: ...

class ApiDocument(_message.Message):
    __slots__ = ("api_id", "content", "media_type", "title", "version", "update_time")
    API_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    api_id: str
    content: bytes
    media_type: str
    title: str
    version: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, api_id: _Optional[str] = ..., content: _Optional[bytes] = ..., media_type: _Optional[str] = ..., title: _Optional[str] = ..., version: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetApiDocumentRequest(_message.Message):
    __slots__ = ("api_id", "content")
    API_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    api_id: str
    content: bytes
    def __init__(self, api_id: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class SetApiDocumentResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: ApiDocument
    def __init__(self, document: _Optional[_Union[ApiDocument, _Mapping]] = ...) -> None: ...

class GetApiDocumentRequest(_message.Message):
    __slots__ = ("api_id",)
    API_ID_FIELD_NUMBER: _ClassVar[int]
    api_id: str
    def __init__(self, api_id: _Optional[str] = ...) -> None: ...

class GetApiDocumentResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: ApiDocument
    def __init__(self, document: _Optional[_Union[ApiDocument, _Mapping]] = ...) -> None: ...

class DeleteApiDocumentRequest(_message.Message):
    __slots__ = ("api_id",)
    API_ID_FIELD_NUMBER: _ClassVar[int]
    api_id: str
    def __init__(self, api_id: _Optional[str] = ...) -> None: ...

class DeleteApiDocumentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
