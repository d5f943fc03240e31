"""The seam of the fused mode (TOLLWAY_THROTTLE_MODE=authz): Check applies the plan limits itself.

In the default mode Envoy makes two gRPC calls per request, Check (keymgr) and then ShouldRateLimit
(throttle). Each call costs the Python gRPC stack far more than Tollway's own work (DESIGN.md: no-op
servicers for both calls run at 0.2-0.3 of Envoy's in-process ceiling, one call at 0.3-0.45), so the
fused mode drops the second call: keymgr's Check hands the descriptor the route would have sent to a
`LimitGate` and answers with what comes back.

The core defines the seam; throttle/ implements it (the same decision function as ShouldRateLimit);
tollway/app/ hands the throttle's gate to keymgr when both run in one process. Neither component
imports the other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Admission:
    """What the limits make of one authorized request, in HTTP terms: what Envoy's ratelimit filter
    would have made of the ShouldRateLimit answer for the same request."""

    # 0: admitted; else the status to answer with (429 over a limit; 503 limits not applicable and
    # failure mode deny).
    status: int = 0
    # A refusal's problem reason (tollway.envoy_contract: RATE_LIMIT_REASONS, RATE_LIMIT_UNAVAILABLE).
    reason: str = ""
    # Response headers for the client, in both cases: X-RateLimit-*; a 429 adds Retry-After and the
    # problem's content type.
    headers: tuple[tuple[str, str], ...] = ()
    # A refusal's body (application/problem+json).
    body: str = ""
    # For the access log, beside the request's identity: tollway.envoy_contract's ratelimit keys.
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def admitted(self) -> bool:
        return self.status == 0


class LimitGate(Protocol):
    """Applies the plan limits to one authorized request: counts it when admitted, never when not."""

    async def admit(self, descriptors: Sequence[Mapping[str, str]]) -> Admission:
        """`descriptors`: what the route's rate-limit actions would send (one per request, keys
        tollway.envoy_contract.DESCRIPTOR_KEYS). Never raises: a failure follows the failure mode."""
        ...

    def healthy(self) -> bool:
        """False while it can only refuse (counters unreachable in failure mode deny): the health of
        the service that applies it says so too. Reads state only; never probes."""
        ...
