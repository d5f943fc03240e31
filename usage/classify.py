"""Pure logic: one Envoy access-log entry → one usage record (or a reason to skip it).

A record is a plain tuple so it is cheap to build, to write to the WAL as JSON and to aggregate:
(node_id, request_id, minute, api_id, subscription_id, application_id, plan_id, key_id, outcome,
 overage, request_bytes, response_bytes, latency_us, limit_name)
where `minute` is the epoch second of the UTC minute the request started in."""

from __future__ import annotations

import hashlib
from typing import Any, Final

from envoy.data.accesslog.v3 import accesslog_pb2

from tollway import envoy_contract as contract
from tollway.schema_usage import USAGE_LATENCY_BUCKETS_US

# Outcome classes, in the order of UsageWindow's count columns.
OUTCOMES = ("success", "client_error", "upstream_fault", "throttled", "unauthorized", "ratelimit_error")
SUCCESS, CLIENT_ERROR, UPSTREAM_FAULT, THROTTLED, UNAUTHORIZED, RATELIMIT_ERROR = range(len(OUTCOMES))

DOWNSTREAM_END = accesslog_pb2.AccessLogType.Value("DownstreamEnd")

# Response flags that mean the upstream (or the way to it) failed, whatever the status code says.
_UPSTREAM_FLAGS = (
    "failed_local_healthcheck",
    "no_healthy_upstream",
    "upstream_request_timeout",
    "local_reset",
    "upstream_remote_reset",
    "upstream_connection_failure",
    "upstream_connection_termination",
    "upstream_overflow",
    "upstream_retry_limit_exceeded",
    "upstream_max_stream_duration_reached",
    "upstream_protocol_error",
    "dns_resolution_failure",
)

# Sanity bounds: anything beyond them is a hostile or broken entry, skipped (with a metric), so one bad
# entry can never poison a window's sums.
MAX_ID_LEN = 128
MAX_BYTES = 1 << 40  # 1 TiB in one request
MAX_LATENCY_US = 24 * 3600 * 1_000_000
MAX_CLOCK_SKEW_S = 3600  # entries may not start more than an hour in the future
MAX_AGE_S = 35 * 24 * 3600  # nor before the previous billing period

Record = tuple[str, str, int, str, str, str, str, str, int, int, int, int, int, str]
# Positions in a Record (Final, so that indexing a Record with one gives that field's type).
R_NODE: Final = 0
R_REQ: Final = 1
R_MINUTE: Final = 2
R_API: Final = 3
R_SUB: Final = 4
R_APP: Final = 5
R_PLAN: Final = 6
R_KEY: Final = 7
R_OUTCOME: Final = 8
R_OVERAGE: Final = 9
R_REQ_BYTES: Final = 10
R_RESP_BYTES: Final = 11
R_LATENCY: Final = 12
R_LIMIT: Final = 13


# Why an entry Envoy wrote is not counted. Every entry is either counted or skipped for one of these
# reasons (metrics and the completeness report carry them), so a healthy period is accounted in full.
SKIP_REASONS: Final = {
    "unrouted": "a path no API serves: Envoy's catch-all 404 (a scanner, a typo)",
    "before_routing": "answered by Envoy before any route was chosen (malformed request, header limits)",
    "authz_failed": "an API's route, but ext_authz gave no verdict (keymgr unreachable: Envoy's fail mode)",
    "not_api_route": "a route that serves no API (e.g. a redirect)",
    "not_downstream_end": "not a finished request (periodic or upstream entry): would count a request twice",
    "tcp_entry": "a TCP connection, not an HTTP request",
    "bad_metadata": "identity metadata that is not a printable string of at most 128 characters",
    "bad_time": "started more than an hour after it was received or before the previous billing period",
    "absurd_value": "byte counts, latency or status code out of any real range",
    "malformed_message": "an access-log message that does not decode",
    "malformed_entry": "an entry that does not decode (its neighbours are counted)",
    "unreadable_frame": "a WAL frame that cannot be read (never written by this version)",
}


class Skip(Exception):
    """An entry that is not counted; `reason` (one of SKIP_REASONS) names the metric it increments."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The class of a request ext_authz refused, by the refusal's reason: in the fused mode
# (TOLLWAY_THROTTLE_MODE=authz) Check itself answers the limits' 429 or 503, which the other mode's
# ratelimit filter marks with the RL or RLSE response flag. Any other reason: unauthorized.
_REFUSAL_CLASSES = {
    contract.RATE_LIMITED: THROTTLED,
    contract.QUOTA_EXCEEDED: THROTTLED,
    contract.QUOTA_REBUILDING: THROTTLED,
    contract.RATE_LIMIT_UNAVAILABLE: RATELIMIT_ERROR,
}
NOT_REFUSED: Final = -1


def outcome(code: int, flags: accesslog_pb2.ResponseFlags, refusal: int = NOT_REFUSED) -> int:
    """The class of one finished request; the order of the tests is the precedence. `refusal`: the
    class of ext_authz's refusal (from its metadata), NOT_REFUSED when it allowed the request."""
    if refusal != NOT_REFUSED:
        return refusal
    if not flags.ByteSize():  # no flag at all: the common case, decided by the status code
        if code >= 500:
            return UPSTREAM_FAULT
        return CLIENT_ERROR if code >= 400 or code == 0 else SUCCESS
    if flags.HasField("unauthorized_details"):
        return UNAUTHORIZED
    if flags.rate_limit_service_error:
        return RATELIMIT_ERROR
    if flags.rate_limited:
        return THROTTLED
    if any(getattr(flags, name) for name in _UPSTREAM_FLAGS) or code >= 500:
        return UPSTREAM_FAULT
    if code >= 400 or code == 0:
        # 0: the client went away before a response; not billable, not the upstream's fault.
        return CLIENT_ERROR
    return SUCCESS


def latency_bucket(latency_us: int) -> int:
    for index, bound in enumerate(USAGE_LATENCY_BUCKETS_US):
        if latency_us <= bound:
            return index
    return len(USAGE_LATENCY_BUCKETS_US)


def _duration_us(duration: Any) -> int:
    return int(duration.seconds) * 1_000_000 + int(duration.nanos) // 1000


def _text(fields: Any, name: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if value.WhichOneof("kind") != "string_value":
        raise Skip("bad_metadata")
    text: str = value.string_value
    if len(text) > MAX_ID_LEN or not text.isprintable():
        raise Skip("bad_metadata")
    return text


Identity = tuple[str, str, str, str, str, int, bool, str]
# Entries of one subscription carry the same metadata bytes: parse them once (bounded cache).
_identities: dict[bytes, Identity | str | None] = {}
_IDENTITY_CACHE_MAX = 50_000


def _identity(metadata: Any) -> Identity | None:
    """(api, subscription, application, plan, key, refusal class, overage, limit) from the dynamic
    metadata; None when it names no API (the request was not metered by keymgr)."""
    raw = metadata.SerializeToString()
    if raw in _identities:
        cached = _identities[raw]
    else:
        try:
            cached = _parse_identity(metadata)
        except Skip as skip:
            cached = skip.reason
        if len(_identities) >= _IDENTITY_CACHE_MAX:
            _identities.clear()
        _identities[raw] = cached
    if isinstance(cached, str):
        raise Skip(cached)
    return cached


def unmetered_reason(route_name: str) -> str:
    """Why an entry without an API identity is not counted, from the route Envoy chose (if any)."""
    if not route_name:
        return "before_routing"
    if route_name == contract.NOT_FOUND_ROUTE:
        return "unrouted"
    if route_name.startswith(contract.API_ROUTE_PREFIX):
        return "authz_failed"
    return "not_api_route"


def _parse_identity(metadata: Any) -> Identity | None:
    filter_metadata = metadata.filter_metadata
    authz = (
        filter_metadata[contract.EXT_AUTHZ_NAMESPACE].fields
        if contract.EXT_AUTHZ_NAMESPACE in filter_metadata
        else {}
    )
    api_id = _text(authz, contract.API_ID)
    if not api_id:
        return None  # not metered by keymgr: classify() names the reason from the route
    reason = _text(authz, contract.REASON)
    refusal = _REFUSAL_CLASSES.get(reason, UNAUTHORIZED) if reason else NOT_REFUSED
    # A request refused for its key or subscription is no subscription's; one refused for its limits
    # (fused mode) is, as it is when the ratelimit filter refuses it.
    anonymous = refusal == UNAUTHORIZED
    subscription_id = "" if anonymous else _text(authz, contract.SUBSCRIPTION_ID)
    application_id = "" if anonymous else _text(authz, contract.APPLICATION_ID)
    plan_id = "" if anonymous else _text(authz, contract.PLAN_ID)
    key_id = _text(authz, contract.KEY_ID)
    overage = False
    limit = ""
    # The limits' metadata: the ratelimit filter's namespace, or (fused mode) ext_authz's own.
    ratelimit = (
        filter_metadata[contract.RATELIMIT_NAMESPACE].fields
        if contract.RATELIMIT_NAMESPACE in filter_metadata
        else authz
    )
    if ratelimit:
        value = ratelimit.get(contract.OVERAGE)
        if value is not None:
            overage = bool(value.bool_value or value.number_value > 0 or value.string_value in ("true", "1"))
        # Informational only: a malformed value must not cost the request its count.
        for name in (contract.WINDOW, contract.LIMIT):
            value = ratelimit.get(name)
            if value is not None and value.WhichOneof("kind") == "string_value" and not limit:
                limit = value.string_value[:MAX_ID_LEN]
    return api_id, subscription_id, application_id, plan_id, key_id, refusal, overage, limit


def entry_id(entry: accesslog_pb2.HTTPAccessLogEntry) -> str:
    """The id an entry is counted (or skipped) once by: Envoy's request id, or when it has none a digest
    of the whole entry, which is as unique as the entry itself."""
    request_id = entry.request.request_id
    if not request_id or len(request_id) > MAX_ID_LEN:
        request_id = "sha256:" + hashlib.sha256(entry.SerializeToString(deterministic=True)).hexdigest()
    return str(request_id)


def classify(entry: accesslog_pb2.HTTPAccessLogEntry, node_id: str, now_s: float) -> Record:
    """The usage record of one entry, or Skip. `now_s` bounds the entry's start time."""
    common = entry.common_properties
    if common.access_log_type != DOWNSTREAM_END:
        raise Skip("not_downstream_end")  # periodic/upstream entries would count a request twice
    identity = _identity(common.metadata)
    if identity is None:
        raise Skip(unmetered_reason(common.route_name))
    api_id, subscription_id, application_id, plan_id, key_id, refusal, overage_flag, limit = identity
    start_s = common.start_time.seconds
    if not (now_s - MAX_AGE_S <= start_s <= now_s + MAX_CLOCK_SKEW_S):
        raise Skip("bad_time")
    request = entry.request
    response = entry.response
    request_bytes = request.request_headers_bytes + request.request_body_bytes
    response_bytes = response.response_headers_bytes + response.response_body_bytes
    if request_bytes > MAX_BYTES or response_bytes > MAX_BYTES:
        raise Skip("absurd_value")
    if common.HasField("time_to_last_downstream_tx_byte"):
        latency_us = _duration_us(common.time_to_last_downstream_tx_byte)
    else:
        latency_us = _duration_us(common.duration)
    if not 0 <= latency_us <= MAX_LATENCY_US:
        raise Skip("absurd_value")
    code = response.response_code.value
    if code > 999:
        raise Skip("absurd_value")

    kind = outcome(code, common.response_flags, refusal)
    overage = int(overage_flag and kind == SUCCESS)
    limit_name = limit if kind == THROTTLED else ""

    return (
        node_id,
        entry_id(entry),
        start_s - start_s % 60,
        api_id,
        subscription_id,
        application_id,
        plan_id,
        key_id,
        kind,
        overage,
        request_bytes,
        response_bytes,
        latency_us,
        limit_name,
    )


def percentile(buckets: list[int], fraction: float) -> int:
    """Latency (µs) below which `fraction` of the requests fall, interpolated inside its bucket."""
    total = sum(buckets)
    if total == 0:
        return 0
    target = fraction * total
    seen = 0
    lower = 0
    for index, count in enumerate(buckets):
        upper = USAGE_LATENCY_BUCKETS_US[index] if index < len(USAGE_LATENCY_BUCKETS_US) else lower * 2 or 1
        if count and seen + count >= target:
            return int(lower + (upper - lower) * (target - seen) / count)
        seen += count
        lower = upper
    return lower
