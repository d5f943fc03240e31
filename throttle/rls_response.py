"""Envoy's RateLimitResponse from a throttle decision: pure, no transport.

Every descriptor gets a status (current_limit, limit_remaining, duration_until_reset), and the answer
carries the X-RateLimit-* headers with every limited window (throttle/headers.py) for Envoy to add to
the client's response, admitted or refused. An over-limit answer carries Retry-After and an RFC 9457
problem+json body naming the exceeded window; Envoy 1.40 sends `raw_body` as the 429's body and lets
`response_headers_to_add`'s content-type replace its text/plain default on local replies.

The answer most requests get (admitted, nothing for the access log) is written as bytes by
`admitted_bytes`, straight in the wire format (tollway/protowire.py): only the remaining count, the
seconds to reset and the headers vary per request. Building that answer through the generated classes
was about a third of ShouldRateLimit's own CPU in-process (39 µs a call on the 2-core development
machine, `bench/ratelimit_bench.py`); tests/throttle/test_rls_response.py checks the bytes decode to
`rate_limit_response`'s message.
"""

from __future__ import annotations

import json
from datetime import UTC

from envoy.config.core.v3.base_pb2 import HeaderValue
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from throttle.headers import ratelimit_headers
from throttle.limits import API, APPLICATION, DAY, HOUR, MINUTE, PERIOD, SECOND, Window
from throttle.service import Decision, Outcome
from tollway import envoy_contract as contract
from tollway.protowire import VARINT, header_value, length_delimited, tag, varint

RateLimit = rls_pb2.RateLimitResponse.RateLimit
# The unit each window is reported in (statuses' current_limit; the fused mode's X-RateLimit-Limit).
UNITS = {
    SECOND: RateLimit.SECOND,
    MINUTE: RateLimit.MINUTE,
    HOUR: RateLimit.HOUR,
    DAY: RateLimit.DAY,
    PERIOD: RateLimit.MONTH,
}
_WINDOW_WORDS = {SECOND: "per-second", MINUTE: "per-minute", HOUR: "per-hour", DAY: "per-day"}
_OK = rls_pb2.RateLimitResponse.OK
_OVER = rls_pb2.RateLimitResponse.OVER_LIMIT
_UNLIMITED_STATUS = rls_pb2.RateLimitResponse.DescriptorStatus(code=_OK)
_RESPONSE = rls_pb2.RateLimitResponse.DESCRIPTOR
_DESCRIPTOR_STATUS = rls_pb2.RateLimitResponse.DescriptorStatus.DESCRIPTOR
_OVERALL_OK = tag(_RESPONSE, "overall_code", VARINT) + varint(rls_pb2.RateLimitResponse.OK)
_STATUSES = tag(_RESPONSE, "statuses")
_HEADERS_TO_ADD = tag(_RESPONSE, "response_headers_to_add")
_STATUS_OK = tag(_DESCRIPTOR_STATUS, "code", VARINT) + varint(rls_pb2.RateLimitResponse.OK)
_STATUS_CURRENT_LIMIT = tag(_DESCRIPTOR_STATUS, "current_limit")
_STATUS_REMAINING = tag(_DESCRIPTOR_STATUS, "limit_remaining", VARINT)
_STATUS_RESET = tag(_DESCRIPTOR_STATUS, "duration_until_reset")
_SECONDS = tag(Duration.DESCRIPTOR, "seconds", VARINT)
_UNLIMITED_STATUS_BYTES = length_delimited(_STATUSES, _STATUS_OK)
# (window name, limit) → the RateLimit reported for it and the start of an admitting status's bytes
# (its code and current_limit), built once. Bounded: plans are few.
_current_limits: dict[tuple[str, int], tuple[rls_pb2.RateLimitResponse.RateLimit, bytes]] = {}
_CURRENT_LIMIT_CACHE = 10_000


def _current_limit(window: Window) -> tuple[rls_pb2.RateLimitResponse.RateLimit, bytes]:
    limit_key = (window.name, window.limit)
    cached = _current_limits.get(limit_key)
    if cached is None:
        if len(_current_limits) >= _CURRENT_LIMIT_CACHE:
            _current_limits.clear()
        limit = RateLimit(name=window.name, requests_per_unit=window.limit, unit=UNITS[window.name])
        cached = _current_limits[limit_key] = (
            limit,
            _STATUS_OK + length_delimited(_STATUS_CURRENT_LIMIT, limit.SerializeToString()),
        )
    return cached


def _status(outcome: Outcome, decision: Decision) -> rls_pb2.RateLimitResponse.DescriptorStatus:
    window = outcome.window
    if window is None:
        return _UNLIMITED_STATUS
    reset = decision.reset_seconds(window)
    current_limit, _ = _current_limit(window)
    return rls_pb2.RateLimitResponse.DescriptorStatus(
        code=_OVER if outcome.over_limit else _OK,
        current_limit=current_limit,
        limit_remaining=outcome.remaining,
        duration_until_reset=Duration(seconds=reset),
    )


def problem_reason(decision: Decision) -> str:
    """The reason of the decision's 429."""
    window = decision.exceeded
    assert window is not None
    if decision.rebuilding:
        return contract.QUOTA_REBUILDING
    return contract.QUOTA_EXCEEDED if window.name == PERIOD else contract.RATE_LIMITED


def problem_body(decision: Decision) -> str:
    window = decision.exceeded
    assert window is not None
    retry_after = decision.retry_after
    reason = problem_reason(decision)
    if decision.rebuilding:
        title = "Quota Being Restored"
        detail = (
            f"The rate limiter lost this billing period's count of the plan's {window.limit}-request"
            " quota and is restoring it from metered usage."
        )
    elif window.name == PERIOD:
        title = "Quota Exceeded"
        detail = f"The plan's quota of {window.limit} requests for this billing period is used up."
    else:
        title = "Too Many Requests"
        owner = {
            API: "The API's",
            APPLICATION: "The application's",
        }.get(window.scope, "The plan's")
        shared = {API: ", shared by all its subscribers,", APPLICATION: ", shared by all its subscriptions,"}
        detail = (
            f"{owner} {_WINDOW_WORDS[window.name]} limit of {window.limit} requests"
            f"{shared.get(window.scope, '')} is reached."
        )
    return json.dumps(
        {
            "type": contract.problem_type(reason),
            "title": title,
            "status": 429,
            "detail": f"{detail} Retry after {retry_after} s.",
            "reason": reason,
            "window": window.name,
            "scope": window.scope,
            "limit": window.limit,
            "retry_after": retry_after,
            "reset_time": window.end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
    )


def rate_limit_response(decision: Decision) -> rls_pb2.RateLimitResponse:
    response = rls_pb2.RateLimitResponse(
        overall_code=_OVER if decision.over_limit else _OK,
        statuses=[_status(outcome, decision) for outcome in decision.outcomes],
    )
    if decision.over_limit and decision.exceeded is not None:
        response.response_headers_to_add.extend(
            [
                HeaderValue(key=contract.RETRY_AFTER_HEADER, value=str(decision.retry_after)),
                HeaderValue(key=contract.CONTENT_TYPE_HEADER, value=contract.PROBLEM_CONTENT_TYPE),
            ]
        )
        response.raw_body = problem_body(decision).encode()
    # X-RateLimit-* with every limited window (Envoy adds them to the answer, admitted or refused).
    for key, value in ratelimit_headers(decision):
        response.response_headers_to_add.add(key=key, value=value)
    if decision.metadata:
        metadata = Struct()
        metadata.update(decision.metadata)
        response.dynamic_metadata.CopyFrom(metadata)
    return response


def admitted_bytes(decision: Decision) -> bytes | None:
    """`rate_limit_response(decision)` encoded, for an admitted decision with no metadata (the common
    answer); None for any other, which goes through the message."""
    if decision.over_limit or decision.metadata:
        return None
    parts = [_OVERALL_OK]
    for outcome in decision.outcomes:
        window = outcome.window
        if window is None:
            parts.append(_UNLIMITED_STATUS_BYTES)
            continue
        _, status = _current_limit(window)
        if outcome.remaining:
            status += _STATUS_REMAINING + varint(outcome.remaining)
        reset = _SECONDS + varint(decision.reset_seconds(window))
        status += _STATUS_RESET + varint(len(reset)) + reset
        parts += (_STATUSES, varint(len(status)), status)
    for name, value in ratelimit_headers(decision):
        header = header_value(name, value)
        parts += (_HEADERS_TO_ADD, varint(len(header)), header)
    return b"".join(parts)
