"""Thin gRPC adapters: Envoy's RateLimitService/ShouldRateLimit (its answers: throttle/rls_response.py),
and the admin QuotaService."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from throttle.counters import StoreUnavailable
from throttle.limits import API, APPLICATION, DAY, HOUR, MINUTE, PERIOD, SECOND, SUBSCRIPTION
from throttle.rls_request import MAX_REQUEST_BYTES, Parts, RequestPartsCache, read_parts
from throttle.rls_response import admitted_bytes, rate_limit_response
from throttle.service import (
    InvalidRequest,
    NotLoaded,
    ThrottleService,
    UnknownSubscription,
    WindowUsage,
)
from throttle.store import TrafficLimitDraft, TrafficLimitStore
from tollway import schema
from tollway.errors import InvalidArgument, NotFound, Unavailable, map_grpc_errors
from tollway.handler_wrapping import add_service
from tollway.protoconv import timestamp
from tollway.request_guard import RateLimitedLog
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.vocabulary import LimitScope

log = logging.getLogger(__name__)

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


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]  # Envoy ships no types
    """Registered with `add_rate_limit_service` the request arrives undecoded, so a message that does
    not decode is answered INVALID_ARGUMENT here rather than failing inside gRPC; registered with the
    generated `add_RateLimitServiceServicer_to_server` it arrives decoded, and is answered the same."""

    def __init__(self, service: ThrottleService, parts_cache: RequestPartsCache | None = None) -> None:
        self.service = service
        self.parts_cache = parts_cache if parts_cache is not None else RequestPartsCache()
        # Hostile input cannot fill the log: one line per kind per minute, with a count.
        self.problems = RateLimitedLog(log)

    def _parts(self, request: rls_pb2.RateLimitRequest | bytes) -> tuple[bytes, Parts]:
        """(cache key, parts); InvalidRequest when the request is oversized or does not decode."""
        if isinstance(request, bytes):
            key = request
            if len(key) > MAX_REQUEST_BYTES:
                raise InvalidRequest(f"request of {len(key)} bytes exceeds {MAX_REQUEST_BYTES}")
            parts = self.parts_cache.get(key)
            if parts is not None:
                return key, parts
            message = rls_pb2.RateLimitRequest()
            try:
                message.ParseFromString(key)
            except DecodeError:
                raise InvalidRequest("request is not a RateLimitRequest") from None
            return key, read_parts(message)
        size = request.ByteSize()
        if size > MAX_REQUEST_BYTES:
            raise InvalidRequest(f"request of {size} bytes exceeds {MAX_REQUEST_BYTES}")
        key = request.SerializeToString(deterministic=True)
        return key, self.parts_cache.get(key) or read_parts(request)

    async def ShouldRateLimit(
        self,
        request: rls_pb2.RateLimitRequest | bytes,
        context: grpc.aio.ServicerContext[rls_pb2.RateLimitRequest, rls_pb2.RateLimitResponse],
    ) -> rls_pb2.RateLimitResponse | bytes:
        started = time.perf_counter()
        metrics = self.service.metrics
        try:
            key, parts = self._parts(request)
            domain, descriptors, hits = parts
            decision = await self.service.should_rate_limit(domain, descriptors, hits)
        except InvalidRequest as exc:
            metrics.rls_answer("invalid", "none", time.perf_counter() - started)
            # Its text, not the exception: a kept log record must not hold the request alive.
            self.problems.event(logging.WARNING, "invalid", "ShouldRateLimit: invalid request: %s", str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (StoreUnavailable, NotLoaded) as exc:
            metrics.rls_answer("unavailable", "none", time.perf_counter() - started)
            # Failure mode "deny": Envoy's failure_mode_deny turns this into its status_on_error.
            message = "rate-limit counters unavailable" if isinstance(exc, StoreUnavailable) else str(exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, message)
        except Exception as exc:
            metrics.rls_answer("error", "none", time.perf_counter() - started)
            self.problems.event(
                logging.WARNING, "failed", "ShouldRateLimit failed: %s", type(exc).__name__, exc_info=True
            )
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        # Accepted: worth keeping for the next equal request.
        self.parts_cache.put(key, parts)
        # Sent as bytes when registered by add_rate_limit_service (the request came as bytes too).
        encoded = admitted_bytes(decision) if isinstance(request, bytes) else None
        response = rate_limit_response(decision) if encoded is None else encoded
        window = decision.exceeded.name if decision.exceeded is not None else "none"
        metrics.rls_answer(
            "over_limit" if decision.over_limit else "ok", window, time.perf_counter() - started
        )
        return response


def _serialize(response: rls_pb2.RateLimitResponse | bytes) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def add_rate_limit_service(servicer: RateLimitServicer, server: grpc.aio.Server) -> None:
    """Registers ShouldRateLimit taking the request's bytes undecoded (see RateLimitServicer) and
    sending an answer that is already bytes as it is."""
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.ShouldRateLimit,
        request_deserializer=None,
        response_serializer=_serialize,
    )
    add_service(server, _RLS_SERVICE, {"ShouldRateLimit": handler})


_RLS_SERVICE = rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name


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


# The latest `at` whose billing period (a month after, at most) still ends in a representable year.
_LATEST_QUOTA_TIME = datetime(9999, 12, 1, tzinfo=UTC)


def _quota_time(at: Timestamp) -> datetime:
    """A quota query's `at`; InvalidArgument outside 1970-01-01 .. 9999-11-30 (a year such as 9999
    used to fail inside the period arithmetic as INTERNAL)."""
    if at.seconds < 0:
        raise InvalidArgument("at must not be before 1970")
    if at.seconds >= int(_LATEST_QUOTA_TIME.timestamp()) or not 0 <= at.nanos <= 999_999_999:
        raise InvalidArgument("at must be a valid time before 9999-12-01T00:00:00Z")
    return at.ToDatetime(tzinfo=UTC)


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
        at = _quota_time(request.at) if request.HasField("at") else None
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
