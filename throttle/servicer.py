"""Thin gRPC adapters: Envoy's RateLimitService/ShouldRateLimit, and the admin QuotaService.

Every descriptor gets a status (current_limit, limit_remaining, duration_until_reset), so Envoy emits
X-RateLimit-* headers (DRAFT_VERSION_03). An over-limit answer carries Retry-After and an RFC 9457
problem+json body naming the exceeded window; Envoy 1.40 sends `raw_body` as the 429's body and lets
`response_headers_to_add`'s content-type replace its text/plain default on local replies.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from throttle.counters import StoreUnavailable
from throttle.limits import API, APPLICATION, DAY, HOUR, MINUTE, PERIOD, SECOND, SUBSCRIPTION
from throttle.service import (
    Decision,
    InvalidRequest,
    Outcome,
    ThrottleService,
    UnknownSubscription,
    WindowUsage,
)
from throttle.store import TrafficLimitDraft, TrafficLimitStore
from tollway import envoy_contract as contract
from tollway import schema
from tollway.errors import InvalidArgument, NotFound, Unavailable, map_grpc_errors
from tollway.protoconv import timestamp
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.vocabulary import LimitScope

log = logging.getLogger(__name__)

RateLimit = rls_pb2.RateLimitResponse.RateLimit
_UNITS = {
    SECOND: RateLimit.SECOND,
    MINUTE: RateLimit.MINUTE,
    HOUR: RateLimit.HOUR,
    DAY: RateLimit.DAY,
    PERIOD: RateLimit.MONTH,
}
_WINDOW_WORDS = {SECOND: "per-second", MINUTE: "per-minute", HOUR: "per-hour", DAY: "per-day"}
_WINDOW_ENUM = {
    SECOND: throttle_pb2.WINDOW_SECOND,
    MINUTE: throttle_pb2.WINDOW_MINUTE,
    HOUR: throttle_pb2.WINDOW_HOUR,
    DAY: throttle_pb2.WINDOW_DAY,
    PERIOD: throttle_pb2.WINDOW_BILLING_PERIOD,
}
_SCOPE_ENUM = {
    SUBSCRIPTION: throttle_pb2.LIMIT_SCOPE_SUBSCRIPTION,
    API: throttle_pb2.LIMIT_SCOPE_API,
    APPLICATION: throttle_pb2.LIMIT_SCOPE_APPLICATION,
}
_OK = rls_pb2.RateLimitResponse.OK
_OVER = rls_pb2.RateLimitResponse.OVER_LIMIT
_UNLIMITED_STATUS = rls_pb2.RateLimitResponse.DescriptorStatus(code=_OK)
# (window name, limit) → the RateLimit reported for it, built once (statuses copy it).
_current_limits: dict[tuple[str, int], rls_pb2.RateLimitResponse.RateLimit] = {}


def _status(outcome: Outcome, decision: Decision) -> rls_pb2.RateLimitResponse.DescriptorStatus:
    window = outcome.window
    if window is None:
        return _UNLIMITED_STATUS
    reset = max(1, int(-(-window.seconds_until_reset(decision.now) // 1)))
    limit_key = (window.name, window.limit)
    current_limit = _current_limits.get(limit_key)
    if current_limit is None:
        if len(_current_limits) >= 10_000:
            _current_limits.clear()
        current_limit = _current_limits[limit_key] = RateLimit(
            name=window.name, requests_per_unit=window.limit, unit=_UNITS[window.name]
        )
    return rls_pb2.RateLimitResponse.DescriptorStatus(
        code=_OVER if outcome.over_limit else _OK,
        current_limit=current_limit,
        limit_remaining=outcome.remaining,
        duration_until_reset=Duration(seconds=reset),
    )


def problem_body(decision: Decision) -> str:
    window = decision.exceeded
    assert window is not None
    retry_after = decision.retry_after
    if window.name == PERIOD:
        reason, title = contract.QUOTA_EXCEEDED, "Quota Exceeded"
        detail = f"The plan's quota of {window.limit} requests for this billing period is used up."
    else:
        reason, title = contract.RATE_LIMITED, "Too Many Requests"
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
    if decision.metadata:
        metadata = Struct()
        metadata.update(decision.metadata)
        response.dynamic_metadata.CopyFrom(metadata)
    return response


_PARTS_CACHE_LIMIT = 100_000
# serialized request → its parts. Envoy sends the same few descriptors over and over; reading a fresh
# message's fields through the protobuf wrappers costs several times what serializing it does.
_parts_cache: dict[bytes, tuple[str, list[dict[str, str]], int]] = {}


def request_parts(request: rls_pb2.RateLimitRequest) -> tuple[str, list[dict[str, str]], int]:
    """(domain, descriptors as entry maps, hits). A descriptor's own hits_addend wins over the request's.
    The result is shared by equal requests: callers must not modify it."""
    key = request.SerializeToString(deterministic=True)
    parts = _parts_cache.get(key)
    if parts is None:
        if len(_parts_cache) >= _PARTS_CACHE_LIMIT:
            _parts_cache.clear()
        parts = _parts_cache[key] = _read_parts(request)
    return parts


def _read_parts(request: rls_pb2.RateLimitRequest) -> tuple[str, list[dict[str, str]], int]:
    hits = request.hits_addend
    descriptors = []
    for descriptor in request.descriptors:
        descriptors.append({entry.key: entry.value for entry in descriptor.entries})
        if descriptor.HasField("hits_addend"):
            hits = descriptor.hits_addend.value
    return request.domain, descriptors, hits


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]  # Envoy ships no types
    def __init__(self, service: ThrottleService) -> None:
        self.service = service

    async def ShouldRateLimit(
        self,
        request: rls_pb2.RateLimitRequest,
        context: grpc.aio.ServicerContext[rls_pb2.RateLimitRequest, rls_pb2.RateLimitResponse],
    ) -> rls_pb2.RateLimitResponse:
        domain, descriptors, hits = request_parts(request)
        try:
            decision = await self.service.should_rate_limit(domain, descriptors, hits)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreUnavailable:
            # Failure mode "deny": Envoy's failure_mode_deny turns this into its status_on_error.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "rate-limit counters unavailable")
        except Exception:
            log.exception("ShouldRateLimit failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        return rate_limit_response(decision)


def _quota_window(usage: WindowUsage) -> throttle_pb2.QuotaWindow:
    window = usage.window
    return throttle_pb2.QuotaWindow(
        window=_WINDOW_ENUM[window.name],
        limit=window.limit,
        used=usage.used,
        remaining=usage.remaining,
        start_time=timestamp(window.start),
        reset_time=timestamp(window.end),
        overage=usage.overage,
        soft=window.name == PERIOD and bool(window.limit) and not window.hard,
        scope=_SCOPE_ENUM[window.scope],
        target_id=window.target_id,
    )


def _limit_to_proto(row: schema.TrafficLimit) -> throttle_pb2.TrafficLimit:
    return throttle_pb2.TrafficLimit(
        scope=_SCOPE_ENUM[LimitScope.from_stored(row.scope)],
        target_id=row.target_id,
        requests_per_second=row.requests_per_second,
        requests_per_minute=row.requests_per_minute,
        requests_per_hour=row.requests_per_hour,
        requests_per_day=row.requests_per_day,
    )


def _stored_scope(scope: throttle_pb2.LimitScope) -> str:
    """The traffic_limit.scope spelling of a proto scope. Unknown or subscription scope stays visible
    as such, so validation rejects it."""
    return {
        throttle_pb2.LIMIT_SCOPE_API: LimitScope.API.stored,
        throttle_pb2.LIMIT_SCOPE_APPLICATION: LimitScope.APPLICATION.stored,
    }.get(scope, str(scope))


@map_grpc_errors
class QuotaServicer(throttle_pb2_grpc.QuotaServiceServicer):
    def __init__(self, service: ThrottleService, limits: TrafficLimitStore) -> None:
        self.service = service
        self.limits = limits

    async def SetTrafficLimit(
        self,
        request: throttle_pb2.SetTrafficLimitRequest,
        context: grpc.aio.ServicerContext[
            throttle_pb2.SetTrafficLimitRequest, throttle_pb2.SetTrafficLimitResponse
        ],
    ) -> throttle_pb2.SetTrafficLimitResponse:
        limit = request.limit
        draft = TrafficLimitDraft(
            scope=_stored_scope(limit.scope),
            target_id=limit.target_id,
            requests_per_second=limit.requests_per_second,
            requests_per_minute=limit.requests_per_minute,
            requests_per_hour=limit.requests_per_hour,
            requests_per_day=limit.requests_per_day,
        )
        return throttle_pb2.SetTrafficLimitResponse(limit=_limit_to_proto(await self.limits.set(draft)))

    async def ListTrafficLimits(
        self,
        request: throttle_pb2.ListTrafficLimitsRequest,
        context: grpc.aio.ServicerContext[
            throttle_pb2.ListTrafficLimitsRequest, throttle_pb2.ListTrafficLimitsResponse
        ],
    ) -> throttle_pb2.ListTrafficLimitsResponse:
        return throttle_pb2.ListTrafficLimitsResponse(
            limits=[_limit_to_proto(row) for row in await self.limits.list()]
        )

    async def DeleteTrafficLimit(
        self,
        request: throttle_pb2.DeleteTrafficLimitRequest,
        context: grpc.aio.ServicerContext[
            throttle_pb2.DeleteTrafficLimitRequest, throttle_pb2.DeleteTrafficLimitResponse
        ],
    ) -> throttle_pb2.DeleteTrafficLimitResponse:
        await self.limits.delete(_stored_scope(request.scope), request.target_id)
        return throttle_pb2.DeleteTrafficLimitResponse()

    async def GetSubscriptionQuota(
        self,
        request: throttle_pb2.GetSubscriptionQuotaRequest,
        context: grpc.aio.ServicerContext[
            throttle_pb2.GetSubscriptionQuotaRequest, throttle_pb2.GetSubscriptionQuotaResponse
        ],
    ) -> throttle_pb2.GetSubscriptionQuotaResponse:
        if not request.subscription_id:
            raise InvalidArgument("subscription_id is required")
        if request.HasField("at") and request.at.seconds < 0:
            raise InvalidArgument("at must not be before 1970")
        at = request.at.ToDatetime(tzinfo=UTC) if request.HasField("at") else None
        try:
            report = await self.service.quota(request.subscription_id, at)
        except UnknownSubscription:
            raise NotFound(f"subscription {request.subscription_id} not found") from None
        except StoreUnavailable:
            raise Unavailable("rate-limit counters unavailable") from None
        return throttle_pb2.GetSubscriptionQuotaResponse(
            subscription_id=report.subscription_id,
            plan_id=report.plan_id,
            shadow_mode=report.shadow_mode,
            windows=[_quota_window(usage) for usage in report.windows],
        )
