"""The throttle as keymgr's Check applies it in the fused mode (TOLLWAY_THROTTLE_MODE=authz).

`ThrottleGate.admit` takes the descriptor the route's rate-limit actions would have sent and answers
what Envoy's ratelimit filter would have made of ShouldRateLimit's answer for it: the same decision
(`ThrottleService.should_rate_limit`, one atomic store step, shadow mode, soft quotas and shared limits
included), the same X-RateLimit-* headers (throttle/headers.py, every limited window in the policy),
and for a 429 the same Retry-After, `x-envoy-ratelimited` and problem body (throttle/rls_response.py). The
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

from throttle.counters import StoreUnavailable
from throttle.headers import ratelimit_headers
from throttle.rls_response import problem_body, problem_reason
from throttle.service import Decision, NotLoaded, ThrottleService
from tollway import envoy_contract as contract
from tollway.admission import Admission, LimitGate
from tollway.request_guard import RateLimitedLog
from tollway.vocabulary import FailureMode

log = logging.getLogger(__name__)

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
