import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Granularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANULARITY_UNSPECIFIED: _ClassVar[Granularity]
    GRANULARITY_MINUTE: _ClassVar[Granularity]
    GRANULARITY_HOUR: _ClassVar[Granularity]
    GRANULARITY_DAY: _ClassVar[Granularity]

class Dimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIMENSION_UNSPECIFIED: _ClassVar[Dimension]
    DIMENSION_API: _ClassVar[Dimension]
    DIMENSION_SUBSCRIPTION: _ClassVar[Dimension]
    DIMENSION_APPLICATION: _ClassVar[Dimension]
    DIMENSION_PLAN: _ClassVar[Dimension]
    DIMENSION_KEY: _ClassVar[Dimension]
GRANULARITY_UNSPECIFIED: Granularity
GRANULARITY_MINUTE: Granularity
GRANULARITY_HOUR: Granularity
GRANULARITY_DAY: Granularity
DIMENSION_UNSPECIFIED: Dimension
DIMENSION_API: Dimension
DIMENSION_SUBSCRIPTION: Dimension
DIMENSION_APPLICATION: Dimension
DIMENSION_PLAN: Dimension
DIMENSION_KEY: Dimension

class UsageCounts(_message.Message):
    __slots__ = ("requests", "success", "overage", "client_error", "upstream_fault", "throttled", "unauthorized", "ratelimit_error", "request_bytes", "response_bytes", "latency_us_sum", "latency_us_max", "latency_us_p50", "latency_us_p95", "latency_us_p99")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ERROR_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FAULT_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    UNAUTHORIZED_FIELD_NUMBER: _ClassVar[int]
    RATELIMIT_ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_SUM_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_MAX_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_P50_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_P95_FIELD_NUMBER: _ClassVar[int]
    LATENCY_US_P99_FIELD_NUMBER: _ClassVar[int]
    requests: int
    success: int
    overage: int
    client_error: int
    upstream_fault: int
    throttled: int
    unauthorized: int
    ratelimit_error: int
    request_bytes: int
    response_bytes: int
    latency_us_sum: int
    latency_us_max: int
    latency_us_p50: int
    latency_us_p95: int
    latency_us_p99: int
    def __init__(self, requests: _Optional[int] = ..., success: _Optional[int] = ..., overage: _Optional[int] = ..., client_error: _Optional[int] = ..., upstream_fault: _Optional[int] = ..., throttled: _Optional[int] = ..., unauthorized: _Optional[int] = ..., ratelimit_error: _Optional[int] = ..., request_bytes: _Optional[int] = ..., response_bytes: _Optional[int] = ..., latency_us_sum: _Optional[int] = ..., latency_us_max: _Optional[int] = ..., latency_us_p50: _Optional[int] = ..., latency_us_p95: _Optional[int] = ..., latency_us_p99: _Optional[int] = ...) -> None: ...

class UsageWindow(_message.Message):
    __slots__ = ("granularity", "start_time", "api_id", "subscription_id", "application_id", "plan_id", "key_id", "counts")
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    granularity: Granularity
    start_time: _timestamp_pb2.Timestamp
    api_id: str
    subscription_id: str
    application_id: str
    plan_id: str
    key_id: str
    counts: UsageCounts
    def __init__(self, granularity: _Optional[_Union[Granularity, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., api_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., application_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., key_id: _Optional[str] = ..., counts: _Optional[_Union[UsageCounts, _Mapping]] = ...) -> None: ...

class UsageFilter(_message.Message):
    __slots__ = ("api_id", "application_id", "subscription_id")
    API_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    api_id: str
    application_id: str
    subscription_id: str
    def __init__(self, api_id: _Optional[str] = ..., application_id: _Optional[str] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class ListUsageWindowsRequest(_message.Message):
    __slots__ = ("granularity", "start_time", "end_time", "filter", "page_size", "page_token")
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    granularity: Granularity
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    filter: UsageFilter
    page_size: int
    page_token: str
    def __init__(self, granularity: _Optional[_Union[Granularity, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListUsageWindowsResponse(_message.Message):
    __slots__ = ("windows", "next_page_token")
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    windows: _containers.RepeatedCompositeFieldContainer[UsageWindow]
    next_page_token: str
    def __init__(self, windows: _Optional[_Iterable[_Union[UsageWindow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UsageGroup(_message.Message):
    __slots__ = ("api_id", "subscription_id", "application_id", "plan_id", "key_id", "counts")
    API_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    api_id: str
    subscription_id: str
    application_id: str
    plan_id: str
    key_id: str
    counts: UsageCounts
    def __init__(self, api_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., application_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., key_id: _Optional[str] = ..., counts: _Optional[_Union[UsageCounts, _Mapping]] = ...) -> None: ...

class NodeCompleteness(_message.Message):
    __slots__ = ("node_id", "received", "logs_written", "logs_dropped", "completeness", "sampled", "skipped", "accounted")
    class SkippedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    LOGS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    LOGS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    received: int
    logs_written: int
    logs_dropped: int
    completeness: float
    sampled: bool
    skipped: _containers.ScalarMap[str, int]
    accounted: int
    def __init__(self, node_id: _Optional[str] = ..., received: _Optional[int] = ..., logs_written: _Optional[int] = ..., logs_dropped: _Optional[int] = ..., completeness: _Optional[float] = ..., sampled: _Optional[bool] = ..., skipped: _Optional[_Mapping[str, int]] = ..., accounted: _Optional[int] = ...) -> None: ...

class GetUsageTotalsRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "filter", "group_by")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    filter: UsageFilter
    group_by: _containers.RepeatedScalarFieldContainer[Dimension]
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., group_by: _Optional[_Iterable[_Union[Dimension, str]]] = ...) -> None: ...

class GetUsageTotalsResponse(_message.Message):
    __slots__ = ("groups", "completeness")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[UsageGroup]
    completeness: _containers.RepeatedCompositeFieldContainer[NodeCompleteness]
    def __init__(self, groups: _Optional[_Iterable[_Union[UsageGroup, _Mapping]]] = ..., completeness: _Optional[_Iterable[_Union[NodeCompleteness, _Mapping]]] = ...) -> None: ...

class ListTopConsumersRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "dimension", "filter", "limit")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    dimension: Dimension
    filter: UsageFilter
    limit: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dimension: _Optional[_Union[Dimension, str]] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTopConsumersResponse(_message.Message):
    __slots__ = ("consumers",)
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    consumers: _containers.RepeatedCompositeFieldContainer[UsageGroup]
    def __init__(self, consumers: _Optional[_Iterable[_Union[UsageGroup, _Mapping]]] = ...) -> None: ...

class ThrottledWindow(_message.Message):
    __slots__ = ("start_time", "api_id", "subscription_id", "application_id", "plan_id", "limit", "throttled")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    api_id: str
    subscription_id: str
    application_id: str
    plan_id: str
    limit: str
    throttled: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., api_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., application_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., limit: _Optional[str] = ..., throttled: _Optional[int] = ...) -> None: ...

class ListThrottledWindowsRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "filter", "limit")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    filter: UsageFilter
    limit: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListThrottledWindowsResponse(_message.Message):
    __slots__ = ("windows",)
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    windows: _containers.RepeatedCompositeFieldContainer[ThrottledWindow]
    def __init__(self, windows: _Optional[_Iterable[_Union[ThrottledWindow, _Mapping]]] = ...) -> None: ...

class GetCompletenessRequest(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCompletenessResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeCompleteness]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeCompleteness, _Mapping]]] = ...) -> None: ...

class GetIngestionStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetIngestionStatsResponse(_message.Message):
    __slots__ = ("received", "counted", "duplicates", "replayed", "unflushed", "wal_bytes", "wal_syncs", "flushes", "flush_failures", "last_flush_seconds", "max_flush_seconds", "received_per_second", "skipped", "bad_streams", "entries_by_node")
    class SkippedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class BadStreamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class EntriesByNodeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    UNFLUSHED_FIELD_NUMBER: _ClassVar[int]
    WAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAL_SYNCS_FIELD_NUMBER: _ClassVar[int]
    FLUSHES_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_FLUSH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_FLUSH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    BAD_STREAMS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_BY_NODE_FIELD_NUMBER: _ClassVar[int]
    received: int
    counted: int
    duplicates: int
    replayed: int
    unflushed: int
    wal_bytes: int
    wal_syncs: int
    flushes: int
    flush_failures: int
    last_flush_seconds: float
    max_flush_seconds: float
    received_per_second: float
    skipped: _containers.ScalarMap[str, int]
    bad_streams: _containers.ScalarMap[str, int]
    entries_by_node: _containers.ScalarMap[str, int]
    def __init__(self, received: _Optional[int] = ..., counted: _Optional[int] = ..., duplicates: _Optional[int] = ..., replayed: _Optional[int] = ..., unflushed: _Optional[int] = ..., wal_bytes: _Optional[int] = ..., wal_syncs: _Optional[int] = ..., flushes: _Optional[int] = ..., flush_failures: _Optional[int] = ..., last_flush_seconds: _Optional[float] = ..., max_flush_seconds: _Optional[float] = ..., received_per_second: _Optional[float] = ..., skipped: _Optional[_Mapping[str, int]] = ..., bad_streams: _Optional[_Mapping[str, int]] = ..., entries_by_node: _Optional[_Mapping[str, int]] = ...) -> None: ...
