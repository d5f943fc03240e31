import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tollway.billing.v1 import accounts_pb2 as _accounts_pb2
from tollway.store.v1 import store_pb2 as _store_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvoiceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_STATE_UNSPECIFIED: _ClassVar[InvoiceState]
    INVOICE_STATE_DRAFT: _ClassVar[InvoiceState]
    INVOICE_STATE_FINALIZED: _ClassVar[InvoiceState]
    INVOICE_STATE_VOID: _ClassVar[InvoiceState]

class UsageCompleteness(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_COMPLETENESS_UNSPECIFIED: _ClassVar[UsageCompleteness]
    USAGE_COMPLETENESS_COMPLETE: _ClassVar[UsageCompleteness]
    USAGE_COMPLETENESS_INCOMPLETE: _ClassVar[UsageCompleteness]
    USAGE_COMPLETENESS_UNKNOWN: _ClassVar[UsageCompleteness]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSONL: _ClassVar[ExportFormat]

class WebhookEndpointState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_ENDPOINT_STATE_UNSPECIFIED: _ClassVar[WebhookEndpointState]
    WEBHOOK_ENDPOINT_STATE_ENABLED: _ClassVar[WebhookEndpointState]
    WEBHOOK_ENDPOINT_STATE_DISABLED: _ClassVar[WebhookEndpointState]

class WebhookDeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_DELIVERY_STATE_UNSPECIFIED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_PENDING: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_DELIVERED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_FAILED: _ClassVar[WebhookDeliveryState]
INVOICE_STATE_UNSPECIFIED: InvoiceState
INVOICE_STATE_DRAFT: InvoiceState
INVOICE_STATE_FINALIZED: InvoiceState
INVOICE_STATE_VOID: InvoiceState
USAGE_COMPLETENESS_UNSPECIFIED: UsageCompleteness
USAGE_COMPLETENESS_COMPLETE: UsageCompleteness
USAGE_COMPLETENESS_INCOMPLETE: UsageCompleteness
USAGE_COMPLETENESS_UNKNOWN: UsageCompleteness
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_JSONL: ExportFormat
WEBHOOK_ENDPOINT_STATE_UNSPECIFIED: WebhookEndpointState
WEBHOOK_ENDPOINT_STATE_ENABLED: WebhookEndpointState
WEBHOOK_ENDPOINT_STATE_DISABLED: WebhookEndpointState
WEBHOOK_DELIVERY_STATE_UNSPECIFIED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_PENDING: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_DELIVERED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_FAILED: WebhookDeliveryState

class UsageCounts(_message.Message):
    __slots__ = ("success", "overage", "client_error", "upstream_fault", "throttled", "unauthorized", "ratelimit_error")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ERROR_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FAULT_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    UNAUTHORIZED_FIELD_NUMBER: _ClassVar[int]
    RATELIMIT_ERROR_FIELD_NUMBER: _ClassVar[int]
    success: int
    overage: int
    client_error: int
    upstream_fault: int
    throttled: int
    unauthorized: int
    ratelimit_error: int
    def __init__(self, success: _Optional[int] = ..., overage: _Optional[int] = ..., client_error: _Optional[int] = ..., upstream_fault: _Optional[int] = ..., throttled: _Optional[int] = ..., unauthorized: _Optional[int] = ..., ratelimit_error: _Optional[int] = ...) -> None: ...

class PlanUsage(_message.Message):
    __slots__ = ("plan_id", "counts")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    counts: UsageCounts
    def __init__(self, plan_id: _Optional[str] = ..., counts: _Optional[_Union[UsageCounts, _Mapping]] = ...) -> None: ...

class InvoiceLine(_message.Message):
    __slots__ = ("position", "subscription_id", "api_id", "plan_id", "kind", "description", "quantity", "unit_price", "amount", "plan_version", "details_json")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    position: int
    subscription_id: str
    api_id: str
    plan_id: str
    kind: str
    description: str
    quantity: str
    unit_price: str
    amount: str
    plan_version: int
    details_json: str
    def __init__(self, position: _Optional[int] = ..., subscription_id: _Optional[str] = ..., api_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., kind: _Optional[str] = ..., description: _Optional[str] = ..., quantity: _Optional[str] = ..., unit_price: _Optional[str] = ..., amount: _Optional[str] = ..., plan_version: _Optional[int] = ..., details_json: _Optional[str] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("id", "number", "state", "application_id", "currency", "period_start", "period_end", "total", "usage_completeness", "completeness_note", "lines", "create_time", "finalize_time", "void_time", "void_reason", "completeness_override", "paid_from_credit", "amount_due", "subtotal", "tax_total", "taxes", "customer")
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    USAGE_COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_NOTE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FINALIZE_TIME_FIELD_NUMBER: _ClassVar[int]
    VOID_TIME_FIELD_NUMBER: _ClassVar[int]
    VOID_REASON_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    PAID_FROM_CREDIT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAXES_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: str
    state: InvoiceState
    application_id: str
    currency: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    total: str
    usage_completeness: UsageCompleteness
    completeness_note: str
    lines: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    create_time: _timestamp_pb2.Timestamp
    finalize_time: _timestamp_pb2.Timestamp
    void_time: _timestamp_pb2.Timestamp
    void_reason: str
    completeness_override: CompletenessOverride
    paid_from_credit: str
    amount_due: str
    subtotal: str
    tax_total: str
    taxes: _containers.RepeatedCompositeFieldContainer[_accounts_pb2.InvoiceTax]
    customer: _accounts_pb2.Customer
    def __init__(self, id: _Optional[str] = ..., number: _Optional[str] = ..., state: _Optional[_Union[InvoiceState, str]] = ..., application_id: _Optional[str] = ..., currency: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total: _Optional[str] = ..., usage_completeness: _Optional[_Union[UsageCompleteness, str]] = ..., completeness_note: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finalize_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., void_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., void_reason: _Optional[str] = ..., completeness_override: _Optional[_Union[CompletenessOverride, _Mapping]] = ..., paid_from_credit: _Optional[str] = ..., amount_due: _Optional[str] = ..., subtotal: _Optional[str] = ..., tax_total: _Optional[str] = ..., taxes: _Optional[_Iterable[_Union[_accounts_pb2.InvoiceTax, _Mapping]]] = ..., customer: _Optional[_Union[_accounts_pb2.Customer, _Mapping]] = ...) -> None: ...

class CompletenessOverride(_message.Message):
    __slots__ = ("by", "reason", "time", "completeness", "completeness_note")
    BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_NOTE_FIELD_NUMBER: _ClassVar[int]
    by: str
    reason: str
    time: _timestamp_pb2.Timestamp
    completeness: float
    completeness_note: str
    def __init__(self, by: _Optional[str] = ..., reason: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completeness: _Optional[float] = ..., completeness_note: _Optional[str] = ...) -> None: ...

class CreditNoteLine(_message.Message):
    __slots__ = ("position", "invoice_line", "subscription_id", "plan_id", "plan_version", "kind", "description", "amount")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    INVOICE_LINE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    position: int
    invoice_line: int
    subscription_id: str
    plan_id: str
    plan_version: int
    kind: str
    description: str
    amount: str
    def __init__(self, position: _Optional[int] = ..., invoice_line: _Optional[int] = ..., subscription_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., plan_version: _Optional[int] = ..., kind: _Optional[str] = ..., description: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class CreditNote(_message.Message):
    __slots__ = ("id", "number", "invoice_id", "invoice_number", "application_id", "currency", "total", "reason", "lines", "issue_time", "subtotal", "tax_total", "taxes")
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAXES_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: str
    invoice_id: str
    invoice_number: str
    application_id: str
    currency: str
    total: str
    reason: str
    lines: _containers.RepeatedCompositeFieldContainer[CreditNoteLine]
    issue_time: _timestamp_pb2.Timestamp
    subtotal: str
    tax_total: str
    taxes: _containers.RepeatedCompositeFieldContainer[_accounts_pb2.InvoiceTax]
    def __init__(self, id: _Optional[str] = ..., number: _Optional[str] = ..., invoice_id: _Optional[str] = ..., invoice_number: _Optional[str] = ..., application_id: _Optional[str] = ..., currency: _Optional[str] = ..., total: _Optional[str] = ..., reason: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[CreditNoteLine, _Mapping]]] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subtotal: _Optional[str] = ..., tax_total: _Optional[str] = ..., taxes: _Optional[_Iterable[_Union[_accounts_pb2.InvoiceTax, _Mapping]]] = ...) -> None: ...

class SubscriptionEvent(_message.Message):
    __slots__ = ("subscription_id", "time", "kind", "from_state", "to_state", "from_plan_id", "to_plan_id", "reason")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    FROM_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    TO_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    time: _timestamp_pb2.Timestamp
    kind: str
    from_state: str
    to_state: str
    from_plan_id: str
    to_plan_id: str
    reason: str
    def __init__(self, subscription_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., from_plan_id: _Optional[str] = ..., to_plan_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetUsageSummaryRequest(_message.Message):
    __slots__ = ("subscription_id", "period_start", "period_end", "at")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    at: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetUsageSummaryResponse(_message.Message):
    __slots__ = ("subscription_id", "period_start", "period_end", "total", "plans")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    total: UsageCounts
    plans: _containers.RepeatedCompositeFieldContainer[PlanUsage]
    def __init__(self, subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total: _Optional[_Union[UsageCounts, _Mapping]] = ..., plans: _Optional[_Iterable[_Union[PlanUsage, _Mapping]]] = ...) -> None: ...

class GenerateInvoicesRequest(_message.Message):
    __slots__ = ("billing_month", "period_start", "period_end", "application_id", "subscription_id", "request_id")
    BILLING_MONTH_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    billing_month: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    application_id: str
    subscription_id: str
    request_id: str
    def __init__(self, billing_month: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., application_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GenerateInvoicesResponse(_message.Message):
    __slots__ = ("invoices",)
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ...) -> None: ...

class ListInvoicesRequest(_message.Message):
    __slots__ = ("state", "application_id", "period_start", "period_end", "include_lines")
    STATE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LINES_FIELD_NUMBER: _ClassVar[int]
    state: InvoiceState
    application_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    include_lines: bool
    def __init__(self, state: _Optional[_Union[InvoiceState, str]] = ..., application_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., include_lines: _Optional[bool] = ...) -> None: ...

class ListInvoicesResponse(_message.Message):
    __slots__ = ("invoices",)
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class FinalizeInvoiceRequest(_message.Message):
    __slots__ = ("id", "allow_incomplete")
    ID_FIELD_NUMBER: _ClassVar[int]
    ALLOW_INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    id: str
    allow_incomplete: AllowIncompleteUsage
    def __init__(self, id: _Optional[str] = ..., allow_incomplete: _Optional[_Union[AllowIncompleteUsage, _Mapping]] = ...) -> None: ...

class AllowIncompleteUsage(_message.Message):
    __slots__ = ("by", "reason")
    BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    by: str
    reason: str
    def __init__(self, by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FinalizeInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class VoidInvoiceRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class VoidInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class ExportInvoicesRequest(_message.Message):
    __slots__ = ("period_start", "period_end", "format", "state")
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    format: ExportFormat
    state: InvoiceState
    def __init__(self, period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., state: _Optional[_Union[InvoiceState, str]] = ...) -> None: ...

class ExportInvoicesResponse(_message.Message):
    __slots__ = ("content_type", "content")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    content: str
    def __init__(self, content_type: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class CreditLine(_message.Message):
    __slots__ = ("invoice_line", "amount")
    INVOICE_LINE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    invoice_line: int
    amount: str
    def __init__(self, invoice_line: _Optional[int] = ..., amount: _Optional[str] = ...) -> None: ...

class IssueCreditNoteRequest(_message.Message):
    __slots__ = ("invoice_id", "reason", "lines", "request_id")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    reason: str
    lines: _containers.RepeatedCompositeFieldContainer[CreditLine]
    request_id: str
    def __init__(self, invoice_id: _Optional[str] = ..., reason: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[CreditLine, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class IssueCreditNoteResponse(_message.Message):
    __slots__ = ("credit_note",)
    CREDIT_NOTE_FIELD_NUMBER: _ClassVar[int]
    credit_note: CreditNote
    def __init__(self, credit_note: _Optional[_Union[CreditNote, _Mapping]] = ...) -> None: ...

class GetCreditNoteRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetCreditNoteResponse(_message.Message):
    __slots__ = ("credit_note",)
    CREDIT_NOTE_FIELD_NUMBER: _ClassVar[int]
    credit_note: CreditNote
    def __init__(self, credit_note: _Optional[_Union[CreditNote, _Mapping]] = ...) -> None: ...

class ListCreditNotesRequest(_message.Message):
    __slots__ = ("invoice_id",)
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    def __init__(self, invoice_id: _Optional[str] = ...) -> None: ...

class ListCreditNotesResponse(_message.Message):
    __slots__ = ("credit_notes",)
    CREDIT_NOTES_FIELD_NUMBER: _ClassVar[int]
    credit_notes: _containers.RepeatedCompositeFieldContainer[CreditNote]
    def __init__(self, credit_notes: _Optional[_Iterable[_Union[CreditNote, _Mapping]]] = ...) -> None: ...

class ListPendingSubscriptionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPendingSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions",)
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[_store_pb2.Subscription]
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[_store_pb2.Subscription, _Mapping]]] = ...) -> None: ...

class WatchPendingSubscriptionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchPendingSubscriptionsResponse(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _store_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_store_pb2.Subscription, _Mapping]] = ...) -> None: ...

class ApproveSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "reason")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    reason: str
    def __init__(self, subscription_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ApproveSubscriptionResponse(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _store_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_store_pb2.Subscription, _Mapping]] = ...) -> None: ...

class RejectSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "reason")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    reason: str
    def __init__(self, subscription_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RejectSubscriptionResponse(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _store_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_store_pb2.Subscription, _Mapping]] = ...) -> None: ...

class SuspendSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "reason")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    reason: str
    def __init__(self, subscription_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SuspendSubscriptionResponse(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _store_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_store_pb2.Subscription, _Mapping]] = ...) -> None: ...

class ResumeSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "reason")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    reason: str
    def __init__(self, subscription_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeSubscriptionResponse(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _store_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_store_pb2.Subscription, _Mapping]] = ...) -> None: ...

class ChangeSubscriptionPlanRequest(_message.Message):
    __slots__ = ("subscription_id", "plan_id")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    plan_id: str
    def __init__(self, subscription_id: _Optional[str] = ..., plan_id: _Optional[str] = ...) -> None: ...

class ChangeSubscriptionPlanResponse(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _store_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_store_pb2.Subscription, _Mapping]] = ...) -> None: ...

class ListSubscriptionEventsRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class ListSubscriptionEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[SubscriptionEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[SubscriptionEvent, _Mapping]]] = ...) -> None: ...

class ReconcileUsageRequest(_message.Message):
    __slots__ = ("at", "application_id", "subscription_id")
    AT_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    application_id: str
    subscription_id: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., application_id: _Optional[str] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class Reconciliation(_message.Message):
    __slots__ = ("subscription_id", "period_start", "period_end", "metered_admitted", "billed_successful", "limiter_admitted", "difference", "limiter_available", "note")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    METERED_ADMITTED_FIELD_NUMBER: _ClassVar[int]
    BILLED_SUCCESSFUL_FIELD_NUMBER: _ClassVar[int]
    LIMITER_ADMITTED_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    LIMITER_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    metered_admitted: int
    billed_successful: int
    limiter_admitted: int
    difference: int
    limiter_available: bool
    note: str
    def __init__(self, subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metered_admitted: _Optional[int] = ..., billed_successful: _Optional[int] = ..., limiter_admitted: _Optional[int] = ..., difference: _Optional[int] = ..., limiter_available: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class ReconcileUsageResponse(_message.Message):
    __slots__ = ("subscriptions",)
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Reconciliation]
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Reconciliation, _Mapping]]] = ...) -> None: ...

class WebhookEndpoint(_message.Message):
    __slots__ = ("id", "url", "description", "event_types", "state", "create_time", "disable_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DISABLE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    url: str
    description: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    state: WebhookEndpointState
    create_time: _timestamp_pb2.Timestamp
    disable_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., url: _Optional[str] = ..., description: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[WebhookEndpointState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disable_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateWebhookEndpointRequest(_message.Message):
    __slots__ = ("url", "event_types", "description")
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    url: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, url: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class CreateWebhookEndpointResponse(_message.Message):
    __slots__ = ("endpoint", "signing_secret")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    endpoint: WebhookEndpoint
    signing_secret: str
    def __init__(self, endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ..., signing_secret: _Optional[str] = ...) -> None: ...

class ListWebhookEndpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWebhookEndpointsResponse(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[WebhookEndpoint]
    def __init__(self, endpoints: _Optional[_Iterable[_Union[WebhookEndpoint, _Mapping]]] = ...) -> None: ...

class DisableWebhookEndpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DisableWebhookEndpointResponse(_message.Message):
    __slots__ = ("endpoint",)
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    endpoint: WebhookEndpoint
    def __init__(self, endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ...) -> None: ...

class EnableWebhookEndpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class EnableWebhookEndpointResponse(_message.Message):
    __slots__ = ("endpoint",)
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    endpoint: WebhookEndpoint
    def __init__(self, endpoint: _Optional[_Union[WebhookEndpoint, _Mapping]] = ...) -> None: ...

class DeleteWebhookEndpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteWebhookEndpointResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WebhookAttempt(_message.Message):
    __slots__ = ("attempt", "start_time", "duration_ms", "status_code", "error", "response_prefix")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    start_time: _timestamp_pb2.Timestamp
    duration_ms: int
    status_code: int
    error: str
    response_prefix: str
    def __init__(self, attempt: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ms: _Optional[int] = ..., status_code: _Optional[int] = ..., error: _Optional[str] = ..., response_prefix: _Optional[str] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("id", "endpoint_id", "event_id", "event_type", "event_sequence", "state", "attempts", "next_attempt_time", "deliver_time", "last_status_code", "last_error", "create_time", "attempt_log")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    DELIVER_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_LOG_FIELD_NUMBER: _ClassVar[int]
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    event_sequence: int
    state: WebhookDeliveryState
    attempts: int
    next_attempt_time: _timestamp_pb2.Timestamp
    deliver_time: _timestamp_pb2.Timestamp
    last_status_code: int
    last_error: str
    create_time: _timestamp_pb2.Timestamp
    attempt_log: _containers.RepeatedCompositeFieldContainer[WebhookAttempt]
    def __init__(self, id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., event_sequence: _Optional[int] = ..., state: _Optional[_Union[WebhookDeliveryState, str]] = ..., attempts: _Optional[int] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deliver_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_status_code: _Optional[int] = ..., last_error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt_log: _Optional[_Iterable[_Union[WebhookAttempt, _Mapping]]] = ...) -> None: ...

class ListWebhookDeliveriesRequest(_message.Message):
    __slots__ = ("endpoint_id", "page_size", "state")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    page_size: int
    state: WebhookDeliveryState
    def __init__(self, endpoint_id: _Optional[str] = ..., page_size: _Optional[int] = ..., state: _Optional[_Union[WebhookDeliveryState, str]] = ...) -> None: ...

class ListWebhookDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("from_sequence", "event_types")
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    event_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, from_sequence: _Optional[int] = ..., event_types: _Optional[_Iterable[str]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "id", "type", "create_time", "data_json")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    id: str
    type: str
    create_time: _timestamp_pb2.Timestamp
    data_json: str
    def __init__(self, sequence: _Optional[int] = ..., id: _Optional[str] = ..., type: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data_json: _Optional[str] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class CreditBalance(_message.Message):
    __slots__ = ("application_id", "currency", "balance", "funded", "update_time")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    FUNDED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    currency: str
    balance: str
    funded: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, application_id: _Optional[str] = ..., currency: _Optional[str] = ..., balance: _Optional[str] = ..., funded: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreditEntry(_message.Message):
    __slots__ = ("id", "application_id", "currency", "kind", "amount", "balance_after", "subscription_id", "period_start", "requests", "note", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: int
    application_id: str
    currency: str
    kind: str
    amount: str
    balance_after: str
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    requests: int
    note: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., application_id: _Optional[str] = ..., currency: _Optional[str] = ..., kind: _Optional[str] = ..., amount: _Optional[str] = ..., balance_after: _Optional[str] = ..., subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., note: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TopUpCreditRequest(_message.Message):
    __slots__ = ("application_id", "currency", "amount", "request_id", "note")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    currency: str
    amount: str
    request_id: str
    note: str
    def __init__(self, application_id: _Optional[str] = ..., currency: _Optional[str] = ..., amount: _Optional[str] = ..., request_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class TopUpCreditResponse(_message.Message):
    __slots__ = ("entry", "balance", "created")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    entry: CreditEntry
    balance: CreditBalance
    created: bool
    def __init__(self, entry: _Optional[_Union[CreditEntry, _Mapping]] = ..., balance: _Optional[_Union[CreditBalance, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetCreditBalanceRequest(_message.Message):
    __slots__ = ("application_id", "currency")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    currency: str
    def __init__(self, application_id: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class GetCreditBalanceResponse(_message.Message):
    __slots__ = ("balances",)
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    balances: _containers.RepeatedCompositeFieldContainer[CreditBalance]
    def __init__(self, balances: _Optional[_Iterable[_Union[CreditBalance, _Mapping]]] = ...) -> None: ...

class ListCreditEntriesRequest(_message.Message):
    __slots__ = ("application_id", "currency", "limit")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    currency: str
    limit: int
    def __init__(self, application_id: _Optional[str] = ..., currency: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListCreditEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CreditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[CreditEntry, _Mapping]]] = ...) -> None: ...

class SpendCap(_message.Message):
    __slots__ = ("scope", "target_id", "kind", "limit", "currency", "update_time", "spent")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    scope: str
    target_id: str
    kind: str
    limit: str
    currency: str
    update_time: _timestamp_pb2.Timestamp
    spent: str
    def __init__(self, scope: _Optional[str] = ..., target_id: _Optional[str] = ..., kind: _Optional[str] = ..., limit: _Optional[str] = ..., currency: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., spent: _Optional[str] = ...) -> None: ...

class SetSpendCapRequest(_message.Message):
    __slots__ = ("cap",)
    CAP_FIELD_NUMBER: _ClassVar[int]
    cap: SpendCap
    def __init__(self, cap: _Optional[_Union[SpendCap, _Mapping]] = ...) -> None: ...

class SetSpendCapResponse(_message.Message):
    __slots__ = ("cap",)
    CAP_FIELD_NUMBER: _ClassVar[int]
    cap: SpendCap
    def __init__(self, cap: _Optional[_Union[SpendCap, _Mapping]] = ...) -> None: ...

class ClearSpendCapRequest(_message.Message):
    __slots__ = ("scope", "target_id", "kind")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    scope: str
    target_id: str
    kind: str
    def __init__(self, scope: _Optional[str] = ..., target_id: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class ClearSpendCapResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: bool
    def __init__(self, cleared: _Optional[bool] = ...) -> None: ...

class ListSpendCapsRequest(_message.Message):
    __slots__ = ("scope", "target_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    scope: str
    target_id: str
    def __init__(self, scope: _Optional[str] = ..., target_id: _Optional[str] = ...) -> None: ...

class ListSpendCapsResponse(_message.Message):
    __slots__ = ("caps",)
    CAPS_FIELD_NUMBER: _ClassVar[int]
    caps: _containers.RepeatedCompositeFieldContainer[SpendCap]
    def __init__(self, caps: _Optional[_Iterable[_Union[SpendCap, _Mapping]]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("id", "scope", "target_id", "period", "kind", "threshold", "value", "raise_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RAISE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: int
    scope: str
    target_id: str
    period: str
    kind: str
    threshold: int
    value: str
    raise_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., scope: _Optional[str] = ..., target_id: _Optional[str] = ..., period: _Optional[str] = ..., kind: _Optional[str] = ..., threshold: _Optional[int] = ..., value: _Optional[str] = ..., raise_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("scope", "target_id", "kinds", "limit")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    scope: str
    target_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, scope: _Optional[str] = ..., target_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...
