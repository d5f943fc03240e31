"""Builders of Envoy access-log entries and streams, as Envoy 1.40 sends them."""

from __future__ import annotations

import time
import uuid
from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf.struct_pb2 import Struct

DOWNSTREAM_END = accesslog_pb2.AccessLogType.Value("DownstreamEnd")


def entry(
    code: int = 200,
    *,
    api_id: str = "api_1",
    subscription_id: str = "sub_1",
    application_id: str = "app_1",
    plan_id: str = "plan_1",
    key_id: str = "key_1",
    reason: str = "",
    request_id: str | None = None,
    start: float | None = None,
    latency_ms: float = 3.0,
    request_bytes: int = 100,
    response_bytes: int = 250,
    flags: dict[str, Any] | None = None,
    ratelimit: dict[str, Any] | None = None,
    log_type: int = DOWNSTREAM_END,
    authz: dict[str, Any] | None = None,
    route_name: str = "api_api_1",
) -> accesslog_pb2.HTTPAccessLogEntry:
    item = accesslog_pb2.HTTPAccessLogEntry()
    common = item.common_properties
    common.access_log_type = log_type
    common.route_name = route_name
    common.start_time.FromNanoseconds(int((time.time() if start is None else start) * 1e9))
    common.time_to_last_downstream_tx_byte.FromNanoseconds(int(latency_ms * 1e6))
    metadata = authz
    if metadata is None:
        metadata = {"api_id": api_id, "key_id": key_id}
        if reason:
            metadata["reason"] = reason
        else:
            metadata.update(subscription_id=subscription_id, application_id=application_id, plan_id=plan_id)
    if metadata:
        struct = Struct()
        struct.update(metadata)
        common.metadata.filter_metadata["envoy.filters.http.ext_authz"].CopyFrom(struct)
    if ratelimit:
        struct = Struct()
        struct.update(ratelimit)
        common.metadata.filter_metadata["envoy.filters.http.ratelimit"].CopyFrom(struct)
    for name, value in (flags or {}).items():
        if name == "unauthorized_details":
            common.response_flags.unauthorized_details.reason = value
        else:
            setattr(common.response_flags, name, value)
    item.request.request_id = str(uuid.uuid4()) if request_id is None else request_id
    item.request.request_headers_bytes = request_bytes
    item.response.response_code.value = code
    item.response.response_body_bytes = response_bytes
    return item


def message(
    entries: list[accesslog_pb2.HTTPAccessLogEntry], node_id: str | None = None
) -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    if node_id is not None:
        msg.identifier.node.id = node_id
        msg.identifier.log_name = "tollway"
    msg.http_logs.log_entry.extend(entries)
    return msg
