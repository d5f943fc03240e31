"""The throttle as keymgr's Check applies it in the fused mode (TOLLWAY_THROTTLE_MODE=authz).

`ThrottleGate.admit` takes the descriptor the route's rate-limit actions would have sent and answers
what Envoy's ratelimit filter would have made of ShouldRateLimit's answer for it: the same decision
(`ThrottleService.should_rate_limit`, one atomic store step, shadow mode, soft quotas and shared limits
included), the X-RateLimit-* headers Envoy derives from the descriptor statuses (DRAFT_VERSION_03),
and for a 429 the same Retry-After, `x-envoy-ratelimited` and problem body (throttle.servicer). The
access-log metadata is the decision's, so usage/ classifies the request the same way in both modes.

Failures follow TOLLWAY_RATELIMIT_FAILURE_MODE as Envoy's ratelimit filter applies it in the other
mode: counters unreachable in mode allow is an admission marked `store_unavailable` (decided inside
the service); unreachable in mode deny, a view still loading or an unexpected error → 503
(`rate_limit_unavailable`) in mode deny, admitted without limit headers in mode allow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence

from envoy.service.ratelimit.v3 import rls_pb2

from throttle.counters import StoreUnavailable
from throttle.limits import Window
from throttle.service import Decision, NotLoaded, ThrottleService
from throttle.servicer import UNITS, problem_body, problem_reason
from tollway import envoy_contract as contract
from tollway.admission import Admission, LimitGate
from tollway.request_guard import RateLimitedLog
from tollway.vocabulary import FailureMode

log = logging.getLogger(__name__)

RateLimit = rls_pb2.RateLimitResponse.RateLimit
# Envoy's window in seconds for each unit the statuses carry (its XRateLimitHeaderUtils; a billing
# period goes to Envoy as MONTH, which it states as 30 days).
_UNIT_SECONDS = {
    RateLimit.SECOND: 1,
    RateLimit.MINUTE: 60,
    RateLimit.HOUR: 3600,
    RateLimit.DAY: 86400,
    RateLimit.MONTH: 30 * 86400,
}
# (window name, limit) → its quota-policy item, e.g. ', 5;w=60;name="minute"'. Bounded: plans are few.
_policies: dict[tuple[str, int], str] = {}
_POLICY_CACHE_LIMIT = 10_000

_ADMITTED = Admission()
_UNAVAILABLE = Admission(
    status=503,
    reason=contract.RATE_LIMIT_UNAVAILABLE,
    headers=((contract.CONTENT_TYPE_HEADER, contract.PROBLEM_CONTENT_TYPE),),
    body=json.dumps(
        {
            "type": contract.problem_type(contract.RATE_LIMIT_UNAVAILABLE),
            "title": "Service Unavailable",
            "status": 503,
            "detail": "The gateway could not apply the plan's limits; retry shortly.",
            "reason": contract.RATE_LIMIT_UNAVAILABLE,
        }
    ),
    metadata={},
)


def _policy(window: Window) -> str:
    key = (window.name, window.limit)
    policy = _policies.get(key)
    if policy is None:
        if len(_policies) >= _POLICY_CACHE_LIMIT:
            _policies.clear()
        seconds = _UNIT_SECONDS[UNITS[window.name]]
        policy = _policies[key] = f', {window.limit};w={seconds};name="{window.name}"'
    return policy


def ratelimit_headers(decision: Decision) -> tuple[tuple[str, str], ...]:
    """X-RateLimit-Limit/Remaining/Reset as Envoy's ratelimit filter derives them from the statuses of
    `rate_limit_response(decision)`: the first status with the least remaining gives limit, remaining
    and reset; every limited status adds its item to the limit's quota policy. None when no
    descriptor is limited."""
    least = None
    policy = ""
    for outcome in decision.outcomes:
        window = outcome.window
        if window is None:
            continue
        if least is None or outcome.remaining < least.remaining:
            least = outcome
        policy += _policy(window)
    if least is None or least.window is None:
        return ()
    return (
        (contract.RATELIMIT_LIMIT_HEADER, f"{least.window.limit}{policy}"),
        (contract.RATELIMIT_REMAINING_HEADER, str(least.remaining)),
        (contract.RATELIMIT_RESET_HEADER, str(decision.reset_seconds(least.window))),
    )


def admission(decision: Decision) -> Admission:
    """A decision as the fused Check answers it (what Envoy makes of `rate_limit_response(decision)`)."""
    headers = ratelimit_headers(decision)
    exceeded = decision.exceeded
    if not decision.over_limit or exceeded is None:
        return Admission(headers=headers, metadata=decision.metadata)
    return Admission(
        status=429,
        reason=problem_reason(decision),
        headers=(
            (contract.RETRY_AFTER_HEADER, str(decision.retry_after)),
            (contract.CONTENT_TYPE_HEADER, contract.PROBLEM_CONTENT_TYPE),
            (contract.ENVOY_RATELIMITED_HEADER, "true"),
            *headers,
        ),
        body=problem_body(decision),
        metadata=decision.metadata,
    )


class ThrottleGate(LimitGate):
    """The throttle's limits for keymgr's Check, in the same process (wired by tollway/app/)."""

    def __init__(self, service: ThrottleService, healthy: Callable[[], bool] = lambda: True) -> None:
        self.service = service
        self._healthy = healthy
        # One line per interval and kind, with a count: a failing store must not flood the log.
        self.problems = RateLimitedLog(log)

    def healthy(self) -> bool:
        return self._healthy()

    def _failed(self) -> Admission:
        return _UNAVAILABLE if self.service.failure_mode == FailureMode.DENY else _ADMITTED

    async def admit(self, descriptors: Sequence[Mapping[str, str]]) -> Admission:
        try:
            decision = await self.service.should_rate_limit(contract.RLS_DOMAIN, descriptors)
        except StoreUnavailable:  # raised in failure mode deny only
            return _UNAVAILABLE
        except NotLoaded:
            return self._failed()
        except Exception as exc:
            self.problems.event(
                logging.WARNING, "failed", "limits in Check failed: %s", type(exc).__name__, exc_info=True
            )
            return self._failed()
        return admission(decision)
