"""Which plan a subscription was on, for which share of a billing period (pure).

Proration rule (documented for accounting): a period is split at every plan change; each plan's share
is the seconds the subscription was billable under it divided by the period's seconds. A subscription
is billable from its approval (or creation, when no approval was needed) until it was cancelled;
suspension does not stop the recurring fee. A plan used more than once in a period gets the sum of its
shares. Usage is attributed by the plan it was admitted under (UsageWindow.plan_id), so usage never
needs splitting by time. Every cut (approval, plan change, cancellation) is taken down to its whole
second (billing/periods.py), so the shares of a fully covered period add up to exactly 1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from itertools import pairwise

from billing.periods import Period, whole_second

_WHOLE = Fraction(1)


@dataclass(frozen=True, slots=True)
class PlanChange:
    at: datetime
    from_plan_id: str
    to_plan_id: str


def plan_at(instant: datetime, current_plan_id: str, changes: Sequence[PlanChange]) -> str:
    """The plan in effect at `instant`, given the subscription's plan now and its changes (any order);
    a change counts from its whole second."""
    ordered = sorted(changes, key=lambda change: change.at)
    for change in ordered:
        if whole_second(change.at) > instant:
            return change.from_plan_id
    return ordered[-1].to_plan_id if ordered else current_plan_id


def plan_intervals(
    period: Period,
    active_from: datetime,
    active_until: datetime | None,
    current_plan_id: str,
    changes: Sequence[PlanChange],
) -> list[tuple[str, datetime, datetime]]:
    """The stretches [lo, hi) of `period` the subscription was billable on each plan, in order (whole
    seconds; a plan may appear more than once)."""
    start = max(period.start, whole_second(active_from))
    end = period.end if active_until is None else min(period.end, whole_second(active_until))
    if end <= start:
        return []
    cuts = sorted({at for at in (whole_second(change.at) for change in changes) if start < at < end})
    return [(plan_at(lo, current_plan_id, changes), lo, hi) for lo, hi in pairwise([start, *cuts, end])]


def plan_shares(
    period: Period,
    active_from: datetime,
    active_until: datetime | None,
    current_plan_id: str,
    changes: Sequence[PlanChange],
) -> dict[str, Fraction]:
    """Share of `period` billed under each plan, in order of first use."""
    if (
        not changes
        and whole_second(active_from) <= period.start
        and (active_until is None or active_until >= period.end)
    ):
        return {current_plan_id: _WHOLE}  # the common case, without Fraction arithmetic
    shares: dict[str, Fraction] = {}
    for plan_id, lo, hi in plan_intervals(period, active_from, active_until, current_plan_id, changes):
        shares[plan_id] = shares.get(plan_id, Fraction(0)) + period.share(lo, hi)
    return shares
