"""keymgr metrics: ext_authz Check decisions by reason, and Check's latency (prometheus-client).

tollway_keymgr_check_decisions_total{reason}  allowed, or the refusal's reason: every reason of
                                              keymgr/decision.py, internal_error, and in the fused mode
                                              (TOLLWAY_THROTTLE_MODE=authz) the limit's refusal
                                              (rate_limited, quota_exceeded, quota_rebuilding, ...)
tollway_keymgr_check_seconds (histogram)      Check's latency in the servicer

Every label value comes from a fixed list (never from the request), all present from the first scrape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from keymgr.decision import REASONS
from tollway import envoy_contract as contract
from tollway.metrics import (
    LATENCY_BUCKETS,
    FunctionCollector,
    LoopHistogram,
    Metric,
    component_registry,
    counter_family,
)

ALLOWED = "allowed"
# The fused mode's refusals by the plan limits (throttle's problem reasons), and a catch-all.
LIMIT_REASONS = (contract.RATE_LIMITED, contract.QUOTA_EXCEEDED, contract.QUOTA_REBUILDING, "throttled")
KNOWN_REASONS = frozenset((ALLOWED, *REASONS, contract.INTERNAL_ERROR, *LIMIT_REASONS))


class KeymgrMetrics:
    def __init__(self) -> None:
        self.registry = component_registry()
        # One dict increment per Check; exported at scrape time.
        self.decisions: Counter[str] = Counter(dict.fromkeys(KNOWN_REASONS, 0))
        self.check_seconds = LoopHistogram(
            "tollway_keymgr_check_seconds",
            "ext_authz Check latency in the servicer.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(FunctionCollector(self._collect))

    def decision(self, reason: str) -> None:
        self.decisions[reason if reason in KNOWN_REASONS else "throttled"] += 1

    def _collect(self) -> Iterable[Metric]:
        yield counter_family(
            "tollway_keymgr_check_decisions_total",
            "ext_authz Check decisions: allowed, or refused by reason.",
            ("reason",),
            {(reason,): value for reason, value in self.decisions.items()},
        )
