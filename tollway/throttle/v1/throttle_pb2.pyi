import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LimitScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_SCOPE_UNSPECIFIED: _ClassVar[LimitScope]
    LIMIT_SCOPE_SUBSCRIPTION: _ClassVar[LimitScope]
    LIMIT_SCOPE_API: _ClassVar[LimitScope]
    LIMIT_SCOPE_APPLICATION: _ClassVar[LimitScope]

class Window(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_UNSPECIFIED: _ClassVar[Window]
    WINDOW_SECOND: _ClassVar[Window]
    WINDOW_MINUTE: _ClassVar[Window]
    WINDOW_HOUR: _ClassVar[Window]
    WINDOW_DAY: _ClassVar[Window]
    WINDOW_BILLING_PERIOD: _ClassVar[Window]
LIMIT_SCOPE_UNSPECIFIED: LimitScope
LIMIT_SCOPE_SUBSCRIPTION: LimitScope
LIMIT_SCOPE_API: LimitScope
LIMIT_SCOPE_APPLICATION: LimitScope
WINDOW_UNSPECIFIED: Window
WINDOW_SECOND: Window
WINDOW_MINUTE: Window
WINDOW_HOUR: Window
WINDOW_DAY: Window
WINDOW_BILLING_PERIOD: Window

class TrafficLimit(_message.Message):
    __slots__ = ("scope", "target_id", "requests_per_second", "requests_per_minute", "requests_per_hour", "requests_per_day")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    scope: LimitScope
    target_id: str
    requests_per_second: int
    requests_per_minute: int
    requests_per_hour: int
    requests_per_day: int
    def __init__(self, scope: _Optional[_Union[LimitScope, str]] = ..., target_id: _Optional[str] = ..., requests_per_second: _Optional[int] = ..., requests_per_minute: _Optional[int] = ..., requests_per_hour: _Optional[int] = ..., requests_per_day: _Optional[int] = ...) -> None: ...

class SetTrafficLimitRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: TrafficLimit
    def __init__(self, limit: _Optional[_Union[TrafficLimit, _Mapping]] = ...) -> None: ...

class SetTrafficLimitResponse(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: TrafficLimit
    def __init__(self, limit: _Optional[_Union[TrafficLimit, _Mapping]] = ...) -> None: ...

class ListTrafficLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTrafficLimitsResponse(_message.Message):
    __slots__ = ("limits",)
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[TrafficLimit]
    def __init__(self, limits: _Optional[_Iterable[_Union[TrafficLimit, _Mapping]]] = ...) -> None: ...

class DeleteTrafficLimitRequest(_message.Message):
    __slots__ = ("scope", "target_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    scope: LimitScope
    target_id: str
    def __init__(self, scope: _Optional[_Union[LimitScope, str]] = ..., target_id: _Optional[str] = ...) -> None: ...

class DeleteTrafficLimitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSubscriptionQuotaRequest(_message.Message):
    __slots__ = ("subscription_id", "at")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QuotaWindow(_message.Message):
    __slots__ = ("window", "limit", "used", "remaining", "start_time", "reset_time", "overage", "soft", "scope", "target_id")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    RESET_TIME_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    window: Window
    limit: int
    used: int
    remaining: int
    start_time: _timestamp_pb2.Timestamp
    reset_time: _timestamp_pb2.Timestamp
    overage: int
    soft: bool
    scope: LimitScope
    target_id: str
    def __init__(self, window: _Optional[_Union[Window, str]] = ..., limit: _Optional[int] = ..., used: _Optional[int] = ..., remaining: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reset_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., overage: _Optional[int] = ..., soft: _Optional[bool] = ..., scope: _Optional[_Union[LimitScope, str]] = ..., target_id: _Optional[str] = ...) -> None: ...

class GetSubscriptionQuotaResponse(_message.Message):
    __slots__ = ("subscription_id", "plan_id", "shadow_mode", "windows")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    SHADOW_MODE_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    plan_id: str
    shadow_mode: bool
    windows: _containers.RepeatedCompositeFieldContainer[QuotaWindow]
    def __init__(self, subscription_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., shadow_mode: _Optional[bool] = ..., windows: _Optional[_Iterable[_Union[QuotaWindow, _Mapping]]] = ...) -> None: ...
