"""The throttle's decisions, independent of gRPC: descriptors → windows → one atomic store step.

Descriptors (built by Envoy from the ext_authz dynamic metadata, see xds/ and throttle.envoy_config):
one descriptor per request with the entries subscription_id, plan_id, application_id, api_id.

A request is ONE atomic step over every window of all its descriptors (counters.CounterStore.step): a
request refused by any descriptor consumes nothing in any window, and descriptors naming the same
subscription are counted once and answered alike (one request carrying a subscription 10,000 times
used to use up its minute allowance). Each descriptor still gets its own status, in order.

Defined answers for what does not fit:
- empty domain, no descriptors, more than MAX_DESCRIPTORS descriptors, hits above MAX_HITS →
  InvalidRequest (gRPC INVALID_ARGUMENT; Envoy then applies its failure mode). Nothing is counted.
- a descriptor without subscription_id, or of another domain → OK, no limit, nothing counted.
- a subscription this replica does not know yet (just created, snapshot reloading) → the plan named
  by the descriptor's plan_id, calendar-month period; an unknown plan → OK, only the period counted.
  Such provisional subscriptions are counted in a bounded space: the MAX_PROVISIONAL_SUBSCRIPTIONS most
  recently seen; the counters of one pushed out are forgotten (made-up ids from one caller used to be
  kept for a month: 100k of them cost 176 MB).
- counters unreachable → failure mode "allow": OK with dynamic metadata store_unavailable=true;
  "deny": StoreUnavailable (gRPC UNAVAILABLE; Envoy's failure_mode_deny answers 503).
- counters lost (Redis restarted without persistence) → a subscription with a HARD monthly quota is
  refused (OVER_LIMIT, window billing_period, `Decision.rebuilding`; nothing counted) until its
  billing-period counter is rebuilt from usage (throttle/rebuild.py), in whichever failure mode: a
  HARD quota is never granted twice. Other requests are counted as usual meanwhile.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from throttle.admitted import AdmittedUsage, UsageWindowCounts
from throttle.counters import CounterStore, DescriptorWindows, HitResult, StoreUnavailable
from throttle.index import ThrottleIndex
from throttle.limits import (
    PERIOD,
    SUBSCRIPTION,
    Clock,
    SharedLimits,
    Window,
    system_clock,
    windows_for,
)
from throttle.metrics import ThrottleMetrics
from throttle.rebuild import RETRY_AFTER_SECONDS, SETTLE_SECONDS, QuotaRebuilder
from tollway import envoy_contract as contract
from tollway.catalog.limits import PlanLimits
from tollway.vocabulary import FailureMode

_WINDOW_CACHE_LIMIT = 100_000
# hits_addend is uint32 on the wire (uint64 per descriptor); anything this large is a bug upstream.
MAX_HITS = 1_000_000_000
# Tollway's own routes send exactly one descriptor per request; a few more leave room for an operator's
# extra rate_limits on a route, and keep one call's work small (10,000 descriptors used to take
# 460-850 ms, holding up the calls beside it past Envoy's timeout).
MAX_DESCRIPTORS = 8
# Subscriptions not in the snapshot (yet) counted at once; a just-created one is loaded within seconds.
MAX_PROVISIONAL_SUBSCRIPTIONS = 1_000

# Decision.metadata becomes the RLS dynamic metadata, which Envoy stores under
# contract.RATELIMIT_NAMESPACE where the access log (usage/) reads it; its keys are the ratelimit
# metadata keys of tollway.envoy_contract.


class InvalidRequest(ValueError):
    """A RateLimitRequest that cannot be answered; nothing was counted."""


class NotLoaded(RuntimeError):
    """The replica's view of plans and subscriptions is not loaded yet: nothing can be decided (the
    gRPC answer is UNAVAILABLE, so Envoy applies its failure mode, as for unreachable counters)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer for one descriptor."""

    over_limit: bool = False
    # The window reported to Envoy: the exceeded one, else the one with the least room; None = unlimited.
    window: Window | None = None
    remaining: int = 0
    # Every limited window of the descriptor, for the quota policy of X-RateLimit-Limit.
    windows: tuple[Window, ...] = ()


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
    # Denied because the billing-period counter is being rebuilt after the store lost it (not used up).
    rebuilding: bool = False

    @property
    def retry_after(self) -> int:
        if self.exceeded is None:
            return 0
        if self.rebuilding:
            return RETRY_AFTER_SECONDS
        return self.reset_seconds(self.exceeded)

    def reset_seconds(self, window: Window) -> int:
        """Whole seconds until `window` resets, at least 1 (Retry-After, X-RateLimit-Reset)."""
        return max(1, math.ceil(window.seconds_until_reset(self.now)))


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


@dataclass(frozen=True, slots=True)
class _Resolved:
    """One subscription's part of a request."""

    subscription_id: str
    # The plan as the snapshot knows it; the descriptor's plan id when the plan is unknown.
    plan_id: str
    plan: PlanLimits | None
    windows: list[Window]
    # Derived once here rather than on every request that reuses this part (see the window cache).
    shadow: bool = field(init=False)
    # Only plans the snapshot knows become a metrics label: a caller cannot add labels at will.
    metrics_plan: str = field(init=False)
    # What the store's step takes for it.
    step: DescriptorWindows = field(init=False)
    # An enforced HARD monthly quota: must not count from zero after the store lost its counters.
    guarded: bool = False

    def __post_init__(self) -> None:
        shadow = bool(self.plan and self.plan.shadow_mode)
        object.__setattr__(self, "shadow", shadow)
        object.__setattr__(self, "metrics_plan", self.plan_id if self.plan else "")
        object.__setattr__(self, "step", DescriptorWindows(self.windows, not shadow, self.guarded))


# Resolved windows and when they stop being valid: (snapshot, fallback source, valid from, valid until
# (POSIX s), resolved).
_Cached = tuple[object, tuple[str, str, str] | None, float, float, _Resolved]


class ThrottleService:
    def __init__(
        self,
        index: ThrottleIndex,
        store: CounterStore,
        *,
        failure_mode: str = FailureMode.ALLOW,
        clock: Clock = system_clock,
        metrics: ThrottleMetrics | None = None,
        usage: AdmittedUsage | None = None,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        if failure_mode not in tuple(FailureMode):
            raise ValueError(f"failure mode must be allow or deny, got {failure_mode!r}")
        self.index = index
        self.store = store
        self.failure_mode = FailureMode(failure_mode)
        self.clock = clock
        self.metrics = metrics or ThrottleMetrics()
        # Lost billing-period counters are rebuilt from usage's admitted counts (the index's database
        # unless given); without a source (a snapshot given by hand) nothing is guarded.
        if usage is None and index.db is not None:
            usage = UsageWindowCounts(index.db)
        self.rebuilder = (
            QuotaRebuilder(index, store, usage, lambda: self.clock(), self.metrics, settle_seconds)
            if usage is not None
            else None
        )
        # Subscriptions of the snapshot: a request's windows only change when one of them ends or the
        # snapshot is swapped (a plan, subscription or shared-limit change), so the hot path rarely
        # rebuilds them.
        self._windows: dict[str, _Cached] = {}
        # Subscriptions not in the snapshot, least recently seen first (bounded, see the docstring).
        self._provisional: OrderedDict[str, _Cached] = OrderedDict()

    def _resolve(self, subscription_id: str, entries: Mapping[str, str], now: datetime) -> _Resolved:
        snapshot = self.index.snapshot
        known = subscription_id in snapshot.subscriptions
        # A subscription this replica does not know yet is resolved from the descriptor's own entries.
        source = (
            None
            if known
            else (
                entries.get(contract.PLAN_ID, ""),
                entries.get(contract.API_ID, ""),
                entries.get(contract.APPLICATION_ID, ""),
            )
        )
        cache = self._windows if known else self._provisional
        if known and self._provisional:
            self._provisional.pop(subscription_id, None)  # loaded since: its counters are its own now
        now_ts = now.timestamp()
        cached = cache.get(subscription_id)
        if (
            cached is not None
            and cached[0] is snapshot
            and cached[1] == source
            and cached[2] <= now_ts < cached[3]
        ):
            if not known:
                self._provisional.move_to_end(subscription_id)
            return cached[4]
        plan_id, plan, anchor, shared, switch = self._plan_for(subscription_id, entries, now)
        windows = windows_for(subscription_id, plan, now, anchor, shared)
        # Guarded only where a rebuild can lift the guard (a usage source exists).
        guarded = (
            self.rebuilder is not None
            and not (plan and plan.shadow_mode)
            and any(w.name == PERIOD and w.hard and w.limit for w in windows)
        )
        resolved = _Resolved(
            subscription_id, plan_id if plan else entries.get(contract.PLAN_ID, ""), plan, windows, guarded
        )
        # Valid until a window ends, or the plan's next version takes effect (its limits from then on).
        until = min(w.end for w in windows) if switch is None else min(switch, *(w.end for w in windows))
        entry = (snapshot, source, max(w.start for w in windows).timestamp(), until.timestamp(), resolved)
        if known:
            if len(self._windows) >= _WINDOW_CACHE_LIMIT:
                self._windows.clear()
            self._windows[subscription_id] = entry
        else:
            self._provisional[subscription_id] = entry
            self._provisional.move_to_end(subscription_id)
        return resolved

    def _evicted_provisional(self) -> list[str]:
        """Counter keys of the provisional subscriptions beyond the bound, which are dropped. Only a
        subscription's own windows: an API's or application's shared counters stay."""
        keys: list[str] = []
        while len(self._provisional) > MAX_PROVISIONAL_SUBSCRIPTIONS:
            _, (*_, resolved) = self._provisional.popitem(last=False)
            keys += [w.key for w in resolved.windows if w.scope == SUBSCRIPTION]
        return keys

    def _plan_for(
        self, subscription_id: str, entries: Mapping[str, str], now: datetime
    ) -> tuple[str, PlanLimits | None, int, tuple[SharedLimits, ...], datetime | None]:
        """(plan id, plan limits, billing anchor day, shared limits, when the limits next change) of a
        descriptor of a subscription at `now`: the limits of the plan version in effect; None when the
        plan is unknown."""
        snapshot = self.index.snapshot
        subscription = snapshot.subscriptions.get(subscription_id)
        if subscription is not None:
            anchor = subscription.billing_anchor_day
            plan, switch = snapshot.limits_for(subscription.plan_id, now, anchor)
            shared = snapshot.shared_for(subscription.api_id, subscription.application_id)
            return subscription.plan_id, plan, anchor, shared, switch
        shared = snapshot.shared_for(
            entries.get(contract.API_ID, ""), entries.get(contract.APPLICATION_ID, "")
        )
        plan_id = entries.get(contract.PLAN_ID, "")
        plan, switch = snapshot.limits_for(plan_id, now, 0)
        return plan_id, plan, 0, shared, switch

    async def should_rate_limit(
        self, domain: str, descriptors: Sequence[Mapping[str, str]], hits: int = 1
    ) -> Decision:
        if not self.index.snapshot.loaded:
            raise NotLoaded("the rate limiter is still loading plans and subscriptions")
        if not domain:
            raise InvalidRequest("domain is empty")
        if not descriptors:
            raise InvalidRequest("no descriptors")
        if len(descriptors) > MAX_DESCRIPTORS:
            raise InvalidRequest(f"{len(descriptors)} descriptors exceed the limit of {MAX_DESCRIPTORS}")
        hits = hits or 1  # Envoy: an unset hits_addend means 1
        if hits > MAX_HITS:
            raise InvalidRequest(f"hits_addend {hits} exceeds {MAX_HITS}")
        now = self.clock()
        decision = Decision(False, [], now)
        # Each distinct subscription once; per descriptor, its subscription's place (-1: not ours).
        parts: list[_Resolved] = []
        place: dict[str, int] = {}
        places: list[int] = []
        for entries in descriptors:
            subscription_id = (
                entries.get(contract.SUBSCRIPTION_ID, "") if domain == contract.RLS_DOMAIN else ""
            )
            if not subscription_id:
                places.append(-1)
                continue
            at = place.get(subscription_id)
            if at is None:
                at = place[subscription_id] = len(parts)
                parts.append(self._resolve(subscription_id, entries, now))
            places.append(at)
        evicted = (
            self._evicted_provisional() if len(self._provisional) > MAX_PROVISIONAL_SUBSCRIPTIONS else []
        )
        outcomes = await self._step(parts, hits, now, decision) if parts else []
        if evicted:
            await self.store.forget(evicted)
        for at in places:
            if at < 0:
                self.metrics.decision("", "unknown")
                decision.outcomes.append(UNLIMITED)
            else:
                decision.outcomes.append(outcomes[at])
        if parts:
            decision.plan_id = parts[0].plan_id
        if decision.exceeded is not None:
            # usage/ files the throttled-out request under the window that fired.
            decision.metadata[contract.WINDOW] = decision.exceeded.name
        return decision

    async def _step(
        self, parts: list[_Resolved], hits: int, now: datetime, decision: Decision
    ) -> list[Outcome]:
        """One atomic store step for all of a request's subscriptions; their outcomes, in order."""
        try:
            results = await self.store.step([part.step for part in parts], hits, now)
            if self.rebuilder is not None and not self.store.seeded:
                self.rebuilder.ensure_running()
        except StoreUnavailable:
            if self.failure_mode == FailureMode.DENY:
                for part in parts:
                    self.metrics.decision(part.metrics_plan, "store_unavailable_denied")
                raise
            for part in parts:
                self.metrics.decision(part.metrics_plan, "store_unavailable_allowed")
            decision.metadata[contract.STORE_UNAVAILABLE] = True
            return [UNLIMITED] * len(parts)
        refused = any(
            (result.exceeded >= 0 and not part.shadow) or result.unseeded
            for part, result in zip(parts, results, strict=True)
        )
        return [
            self._outcome(part, result, refused, hits, decision)
            for part, result in zip(parts, results, strict=True)
        ]

    def _outcome(
        self, part: _Resolved, result: HitResult, refused: bool, hits: int, decision: Decision
    ) -> Outcome:
        windows = part.windows
        limited = tuple(window for window in windows if window.limit)
        plan_label = part.metrics_plan
        if result.unseeded and result.exceeded < 0:
            # Not used up: its count is being rebuilt. Refused, and said so (429 quota_rebuilding).
            self.metrics.decision(plan_label, "quota_rebuilding")
            period = next(w for w in windows if w.name == PERIOD)
            decision.over_limit = True
            if decision.exceeded is None:
                decision.exceeded, decision.rebuilding = period, True
            return Outcome(True, period, 0, limited)
        if result.exceeded >= 0:
            exceeded = windows[result.exceeded]
            if not part.shadow:
                self.metrics.decision(plan_label, "over_limit")
                decision.over_limit = True
                if decision.exceeded is None:
                    decision.exceeded = exceeded
                room = max(exceeded.limit - result.counts[result.exceeded], 0)
                return Outcome(True, exceeded, room, limited)
            self.metrics.decision(plan_label, "shadow_over_limit")
            decision.metadata[contract.SHADOW_OVER_LIMIT] = True
            if not refused:
                decision.metadata[contract.WINDOW] = exceeded.name
        # Within its limits: report the limited window with the least room left (counted, or as it
        # stands when another descriptor refused the request).
        reported: Window | None = None
        remaining = 0
        for window, count in zip(windows, result.counts, strict=True):
            if not window.limit:
                continue
            room = max(window.limit - count, 0)
            if reported is None or room < remaining:
                reported, remaining = window, room
            if not refused and window.name == PERIOD and not window.hard and count > window.limit:
                decision.metadata.update(
                    {contract.OVERAGE: True, contract.OVERAGE_HITS: min(hits, count - window.limit)}
                )
                decision.metadata[contract.WINDOW] = window.name
        if refused:
            if result.exceeded < 0:
                # Refused by another of the request's descriptors: nothing of this one was counted.
                self.metrics.decision(plan_label, "over_limit")
        elif result.exceeded < 0:
            self.metrics.decision(plan_label, "overage" if decision.metadata.get(contract.OVERAGE) else "ok")
        return Outcome(False, reported, remaining, limited)

    async def quota(self, subscription_id: str, at: datetime | None = None) -> QuotaReport:
        snapshot = self.index.snapshot
        subscription = snapshot.subscriptions.get(subscription_id)
        if subscription is None:
            raise UnknownSubscription(subscription_id)
        now = at or self.clock()
        plan, _ = snapshot.limits_for(subscription.plan_id, now, subscription.billing_anchor_day)
        shared = snapshot.shared_for(subscription.api_id, subscription.application_id)
        windows = windows_for(subscription_id, plan, now, subscription.billing_anchor_day, shared)
        used = await self.store.read([w.key for w in windows], now)
        return QuotaReport(
            subscription_id=subscription_id,
            plan_id=subscription.plan_id,
            shadow_mode=bool(plan and plan.shadow_mode),
            windows=[WindowUsage(w, u) for w, u in zip(windows, used, strict=True)],
        )
