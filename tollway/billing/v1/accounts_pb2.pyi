import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaxRate(_message.Message):
    __slots__ = ("id", "billing_account_id", "plan_id", "name", "rate", "inclusive", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    billing_account_id: str
    plan_id: str
    name: str
    rate: str
    inclusive: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., billing_account_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., name: _Optional[str] = ..., rate: _Optional[str] = ..., inclusive: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BillingAccount(_message.Message):
    __slots__ = ("id", "name", "email", "address", "tax_id", "application_ids", "tax_rates", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_IDS_FIELD_NUMBER: _ClassVar[int]
    TAX_RATES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    email: str
    address: str
    tax_id: str
    application_ids: _containers.RepeatedScalarFieldContainer[str]
    tax_rates: _containers.RepeatedCompositeFieldContainer[TaxRate]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., email: _Optional[str] = ..., address: _Optional[str] = ..., tax_id: _Optional[str] = ..., application_ids: _Optional[_Iterable[str]] = ..., tax_rates: _Optional[_Iterable[_Union[TaxRate, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("billing_account_id", "name", "email", "address", "tax_id")
    BILLING_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    billing_account_id: str
    name: str
    email: str
    address: str
    tax_id: str
    def __init__(self, billing_account_id: _Optional[str] = ..., name: _Optional[str] = ..., email: _Optional[str] = ..., address: _Optional[str] = ..., tax_id: _Optional[str] = ...) -> None: ...

class InvoiceTax(_message.Message):
    __slots__ = ("tax_rate_id", "name", "rate", "inclusive", "taxable", "amount")
    TAX_RATE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    TAXABLE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    tax_rate_id: str
    name: str
    rate: str
    inclusive: bool
    taxable: str
    amount: str
    def __init__(self, tax_rate_id: _Optional[str] = ..., name: _Optional[str] = ..., rate: _Optional[str] = ..., inclusive: _Optional[bool] = ..., taxable: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class CreateBillingAccountRequest(_message.Message):
    __slots__ = ("name", "email", "address", "tax_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    email: str
    address: str
    tax_id: str
    def __init__(self, name: _Optional[str] = ..., email: _Optional[str] = ..., address: _Optional[str] = ..., tax_id: _Optional[str] = ...) -> None: ...

class CreateBillingAccountResponse(_message.Message):
    __slots__ = ("billing_account",)
    BILLING_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    billing_account: BillingAccount
    def __init__(self, billing_account: _Optional[_Union[BillingAccount, _Mapping]] = ...) -> None: ...

class GetBillingAccountRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetBillingAccountResponse(_message.Message):
    __slots__ = ("billing_account",)
    BILLING_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    billing_account: BillingAccount
    def __init__(self, billing_account: _Optional[_Union[BillingAccount, _Mapping]] = ...) -> None: ...

class ListBillingAccountsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBillingAccountsResponse(_message.Message):
    __slots__ = ("billing_accounts",)
    BILLING_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    billing_accounts: _containers.RepeatedCompositeFieldContainer[BillingAccount]
    def __init__(self, billing_accounts: _Optional[_Iterable[_Union[BillingAccount, _Mapping]]] = ...) -> None: ...

class UpdateBillingAccountRequest(_message.Message):
    __slots__ = ("id", "name", "email", "address", "tax_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    email: str
    address: str
    tax_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., email: _Optional[str] = ..., address: _Optional[str] = ..., tax_id: _Optional[str] = ...) -> None: ...

class UpdateBillingAccountResponse(_message.Message):
    __slots__ = ("billing_account",)
    BILLING_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    billing_account: BillingAccount
    def __init__(self, billing_account: _Optional[_Union[BillingAccount, _Mapping]] = ...) -> None: ...

class DeleteBillingAccountRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteBillingAccountResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetApplicationBillingAccountRequest(_message.Message):
    __slots__ = ("application_id", "billing_account_id")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    billing_account_id: str
    def __init__(self, application_id: _Optional[str] = ..., billing_account_id: _Optional[str] = ...) -> None: ...

class SetApplicationBillingAccountResponse(_message.Message):
    __slots__ = ("application_id", "billing_account_id")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    billing_account_id: str
    def __init__(self, application_id: _Optional[str] = ..., billing_account_id: _Optional[str] = ...) -> None: ...

class CreateTaxRateRequest(_message.Message):
    __slots__ = ("billing_account_id", "plan_id", "name", "rate", "inclusive")
    BILLING_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    billing_account_id: str
    plan_id: str
    name: str
    rate: str
    inclusive: bool
    def __init__(self, billing_account_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., name: _Optional[str] = ..., rate: _Optional[str] = ..., inclusive: _Optional[bool] = ...) -> None: ...

class CreateTaxRateResponse(_message.Message):
    __slots__ = ("tax_rate",)
    TAX_RATE_FIELD_NUMBER: _ClassVar[int]
    tax_rate: TaxRate
    def __init__(self, tax_rate: _Optional[_Union[TaxRate, _Mapping]] = ...) -> None: ...

class ListTaxRatesRequest(_message.Message):
    __slots__ = ("billing_account_id", "plan_id")
    BILLING_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    billing_account_id: str
    plan_id: str
    def __init__(self, billing_account_id: _Optional[str] = ..., plan_id: _Optional[str] = ...) -> None: ...

class ListTaxRatesResponse(_message.Message):
    __slots__ = ("tax_rates",)
    TAX_RATES_FIELD_NUMBER: _ClassVar[int]
    tax_rates: _containers.RepeatedCompositeFieldContainer[TaxRate]
    def __init__(self, tax_rates: _Optional[_Iterable[_Union[TaxRate, _Mapping]]] = ...) -> None: ...

class DeleteTaxRateRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteTaxRateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
