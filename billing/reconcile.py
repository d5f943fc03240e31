"""Reconciliation: what the access log metered as admitted vs what the rate limiter admitted, per
subscription and billing period. A positive difference means the limiter admitted requests the access
log never delivered (dropped entries, a usage outage); a negative one, requests counted by usage that
the limiter did not see (e.g. its counters were reset or ran fail-open)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from billing.clients import LimiterCount
from billing.periods import Period, period_containing
from billing.store import BillingRepository


class AdmittedCounts(Protocol):
    async def admitted(self, subscription_id: str, at: datetime) -> LimiterCount | str: ...


class NoLimiter:
    async def admitted(self, subscription_id: str, at: datetime) -> LimiterCount | str:
        return "no rate limiter configured for reconciliation"


@dataclass(frozen=True)
class Reconciliation:
    subscription_id: str
    period: Period
    metered_admitted: int
    billed_successful: int
    limiter_admitted: int
    limiter_available: bool
    note: str

    @property
    def difference(self) -> int:
        return self.limiter_admitted - self.metered_admitted if self.limiter_available else 0


async def reconcile(
    repository: BillingRepository,
    limiter: AdmittedCounts,
    at: datetime,
    application_id: str = "",
    subscription_id: str = "",
) -> list[Reconciliation]:
    results: list[Reconciliation] = []
    for subscription in await repository.subscriptions(application_id, subscription_id):
        period = period_containing(at, subscription.billing_anchor_day)
        rows = await repository.period_usage(period, subscription_id=subscription.id)
        success = sum(r.usage.success for r in rows)
        overage = sum(r.usage.overage for r in rows)
        metered = success + overage + sum(r.usage.client_error + r.usage.upstream_fault for r in rows)
        count = await limiter.admitted(subscription.id, at)
        if isinstance(count, str):
            results.append(
                Reconciliation(subscription.id, period, metered, success + overage, 0, False, count)
            )
            continue
        note = ""
        if count.period_start is not None and count.period_start != period.start:
            note = (
                f"rate limiter's period starts {count.period_start.isoformat()},"
                f" billing's {period.start.isoformat()}"
            )
        results.append(
            Reconciliation(subscription.id, period, metered, success + overage, count.used, True, note)
        )
    return results
