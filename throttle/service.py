"""The throttle's decisions, independent of gRPC: descriptors → windows → one atomic store step.

Descriptors (built by Envoy from the ext_authz dynamic metadata, see xds/ and throttle.envoy_config):
one descriptor per request with the entries subscription_id, plan_id, application_id, api_id.

Defined answers for what does not fit:
- empty domain, no descriptors, hits above MAX_HITS → InvalidRequest (gRPC INVALID_ARGUMENT; Envoy
  then applies its failure mode). Nothing is counted.
- a descriptor without subscription_id, or of another domain → OK, no limit, nothing counted.
- a subscription this replica does not know yet (just created, snapshot reloading) → the plan named
  by the descriptor's plan_id, calendar-month period; an unknown plan → OK, only the period counted.
- counters unreachable → failure mode "allow": OK with dynamic metadata store_unavailable=true;
  "deny": StoreUnavailable (gRPC UNAVAILABLE; Envoy's failure_mode_deny answers 503).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from throttle.counters import CounterStore, StoreUnavailable
from throttle.index import ThrottleIndex
from throttle.limits import PERIOD, Clock, SharedLimits, Window, system_clock, windows_for
from throttle.metrics import ThrottleMetrics
from tollway import envoy_contract as contract
from tollway.catalog.limits import PlanLimits
from tollway.vocabulary import FailureMode

_WINDOW_CACHE_LIMIT = 100_000
# hits_addend is uint32 on the wire (uint64 per descriptor); anything this large is a bug upstream.
MAX_HITS = 1_000_000_000

# Decision.metadata becomes the RLS dynamic metadata, which Envoy stores under
# contract.RATELIMIT_NAMESPACE where the access log (usage/) reads it; its keys are the ratelimit
# metadata keys of tollway.envoy_contract.


class InvalidRequest(ValueError):
    """A RateLimitRequest that cannot be answered; nothing was counted."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer for one descriptor."""

    over_limit: bool = False
    # The window reported to Envoy: the exceeded one, else the one with the least room; None = unlimited.
    window: Window | None = None
    remaining: int = 0


UNLIMITED = Outcome()


@dataclass(slots=True)
class Decision:
    over_limit: bool
    outcomes: list[Outcome]
    now: datetime
    plan_id: str = ""
    # The window that denied the request (first over-limit descriptor).
    exceeded: Window | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def retry_after(self) -> int:
        if self.exceeded is None:
            return 0
        return max(1, math.ceil(self.exceeded.seconds_until_reset(self.now)))


@dataclass(frozen=True, slots=True)
class WindowUsage:
    window: Window
    used: int

    @property
    def remaining(self) -> int:
        return max(self.window.limit - self.used, 0) if self.window.limit else 0

    @property
    def overage(self) -> int:
        soft = self.window.name == PERIOD and self.window.limit and not self.window.hard
        return max(self.used - self.window.limit, 0) if soft else 0


@dataclass(frozen=True, slots=True)
class QuotaReport:
    subscription_id: str
    plan_id: str
    shadow_mode: bool
    windows: list[WindowUsage]


class UnknownSubscription(LookupError):
    pass


class ThrottleService:
    def __init__(
        self,
        index: ThrottleIndex,
        store: CounterStore,
        *,
        failure_mode: str = FailureMode.ALLOW,
        clock: Clock = system_clock,
        metrics: ThrottleMetrics | None = None,
    ) -> None:
        if failure_mode not in tuple(FailureMode):
            raise ValueError(f"failure mode must be allow or deny, got {failure_mode!r}")
        self.index = index
        self.store = store
        self.failure_mode = FailureMode(failure_mode)
        self.clock = clock
        self.metrics = metrics or ThrottleMetrics()
        # subscription → (snapshot, fallback source, valid from, valid until (POSIX s), plan id, plan,
        # windows):
        # a request's windows only change when one of them ends or the snapshot is swapped (a plan,
        # subscription or shared-limit change), so the hot path rarely rebuilds them.
        self._windows: dict[
            str,
            tuple[object, tuple[str, str, str] | None, float, float, str, PlanLimits | None, list[Window]],
        ] = {}

    def _resolve(
        self, entries: Mapping[str, str], now: datetime
    ) -> tuple[str, str, PlanLimits | None, list[Window]]:
        """(subscription id, plan id, plan limits, windows) of a descriptor; subscription id "" when the
        descriptor is not ours."""
        subscription_id = entries.get(contract.SUBSCRIPTION_ID, "")
        if not subscription_id:
            return "", "", None, []
        snapshot = self.index.snapshot
        # A subscription this replica does not know yet is resolved from the descriptor's own entries.
        source = (
            None
            if subscription_id in snapshot.subscriptions
            else (
                entries.get(contract.PLAN_ID, ""),
                entries.get(contract.API_ID, ""),
                entries.get(contract.APPLICATION_ID, ""),
            )
        )
        now_ts = now.timestamp()
        cached = self._windows.get(subscription_id)
        if (
            cached is not None
            and cached[0] is snapshot
            and cached[1] == source
            and cached[2] <= now_ts < cached[3]
        ):
            return subscription_id, cached[4], cached[5], cached[6]
        plan_id, plan, anchor, shared = self._plan_for(subscription_id, entries)
        windows = windows_for(subscription_id, plan, now, anchor, shared)
        if len(self._windows) >= _WINDOW_CACHE_LIMIT:
            self._windows.clear()
        valid_from = max(w.start for w in windows).timestamp()
        valid_until = min(w.end for w in windows).timestamp()
        self._windows[subscription_id] = (snapshot, source, valid_from, valid_until, plan_id, plan, windows)
        return subscription_id, plan_id, plan, windows

    def _plan_for(
        self, subscription_id: str, entries: Mapping[str, str]
    ) -> tuple[str, PlanLimits | None, int, tuple[SharedLimits, ...]]:
        """(plan id, plan limits, billing anchor day, shared limits) of a descriptor of a subscription;
        plan limits None when the plan is unknown."""
        snapshot = self.index.snapshot
        subscription = snapshot.subscriptions.get(subscription_id)
        if subscription is not None:
            return (
                subscription.plan_id,
                snapshot.plans.get(subscription.plan_id),
                subscription.billing_anchor_day,
                snapshot.shared_for(subscription.api_id, subscription.application_id),
            )
        shared = snapshot.shared_for(
            entries.get(contract.API_ID, ""), entries.get(contract.APPLICATION_ID, "")
        )
        plan_id = entries.get(contract.PLAN_ID, "")
        return plan_id, snapshot.plans.get(plan_id), 0, shared

    async def should_rate_limit(
        self, domain: str, descriptors: Sequence[Mapping[str, str]], hits: int = 1
    ) -> Decision:
        if not domain:
            raise InvalidRequest("domain is empty")
        if not descriptors:
            raise InvalidRequest("no descriptors")
        hits = hits or 1  # Envoy: an unset hits_addend means 1
        if hits > MAX_HITS:
            raise InvalidRequest(f"hits_addend {hits} exceeds {MAX_HITS}")
        now = self.clock()
        decision = Decision(False, [], now)
        for entries in descriptors:
            decision.outcomes.append(await self._one(domain, entries, hits, now, decision))
        return decision

    async def _one(
        self, domain: str, entries: Mapping[str, str], hits: int, now: datetime, decision: Decision
    ) -> Outcome:
        subscription_id, plan_id, plan, windows = (
            self._resolve(entries, now) if domain == contract.RLS_DOMAIN else ("", "", None, [])
        )
        if not subscription_id:
            self.metrics.decision("", "unknown")
            return UNLIMITED
        # A plan's id as the snapshot knows it; the descriptor's when the plan is unknown.
        plan_id = plan_id if plan else entries.get(contract.PLAN_ID, "")
        decision.plan_id = decision.plan_id or plan_id
        shadow = bool(plan and plan.shadow_mode)
        try:
            result = await self.store.hit(windows, hits, now, enforce=not shadow)
        except StoreUnavailable:
            if self.failure_mode == FailureMode.DENY:
                self.metrics.decision(plan_id, "store_unavailable_denied")
                raise
            self.metrics.decision(plan_id, "store_unavailable_allowed")
            decision.metadata[contract.STORE_UNAVAILABLE] = True
            return UNLIMITED
        if result.exceeded >= 0:
            exceeded = windows[result.exceeded]
            if not shadow:
                self.metrics.decision(plan_id, "over_limit")
                decision.over_limit = True
                if decision.exceeded is None:
                    decision.exceeded = exceeded
                    # usage/ files the throttled-out request under the window that fired.
                    decision.metadata[contract.WINDOW] = exceeded.name
                return Outcome(True, exceeded, max(exceeded.limit - result.counts[result.exceeded], 0))
            self.metrics.decision(plan_id, "shadow_over_limit")
            decision.metadata.update({contract.SHADOW_OVER_LIMIT: True, contract.WINDOW: exceeded.name})
        # Admitted: report the limited window with the least room left.
        reported: Window | None = None
        remaining = 0
        for window, count in zip(windows, result.counts, strict=True):
            if not window.limit:
                continue
            room = max(window.limit - count, 0)
            if reported is None or room < remaining:
                reported, remaining = window, room
            if window.name == PERIOD and not window.hard and count > window.limit:
                decision.metadata.update(
                    {contract.OVERAGE: True, contract.OVERAGE_HITS: min(hits, count - window.limit)}
                )
                if not decision.over_limit:  # a denied request keeps the window that denied it
                    decision.metadata[contract.WINDOW] = window.name
        if result.exceeded < 0:
            self.metrics.decision(plan_id, "overage" if decision.metadata.get(contract.OVERAGE) else "ok")
        return Outcome(False, reported, remaining)

    async def quota(self, subscription_id: str, at: datetime | None = None) -> QuotaReport:
        snapshot = self.index.snapshot
        subscription = snapshot.subscriptions.get(subscription_id)
        if subscription is None:
            raise UnknownSubscription(subscription_id)
        plan = snapshot.plans.get(subscription.plan_id)
        now = at or self.clock()
        shared = snapshot.shared_for(subscription.api_id, subscription.application_id)
        windows = windows_for(subscription_id, plan, now, subscription.billing_anchor_day, shared)
        used = await self.store.read([w.key for w in windows], now)
        return QuotaReport(
            subscription_id=subscription_id,
            plan_id=subscription.plan_id,
            shadow_mode=bool(plan and plan.shadow_mode),
            windows=[WindowUsage(w, u) for w, u in zip(windows, used, strict=True)],
        )
