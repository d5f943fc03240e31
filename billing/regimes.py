"""How one subscription's billing period splits into priced pieces (pure).

A piece is a stretch of the period during which one plan applied with one set of terms (a "regime"):
the plan, the version of the plan in effect (tollway/catalog/versions.py), and whether the
subscription was inside a free trial. A piece carries two things:

- its share of the period (the recurring fee, included requests and minimum charge are prorated by
  it): the seconds the subscription was on that plan while those terms applied, over the period's
  seconds (billing/segments.py gives the plan stretches, cut at whole seconds);
- the usage it prices: requests admitted under that plan (usage is attributed by the plan it was
  admitted under, UsageWindow.plan_id) whose minute window starts within the piece's stretch.

Terms change only at whole minutes (a version switch, the end of a trial), so usage splits exactly
at them. A trial runs for `trial_days` from when the subscription became billable (its approval, or
its creation when none was needed) and ends at the next whole minute after that; nothing on a plan
with a trial is charged inside it.

A plan whose terms do not change inside the period gives one piece that covers the whole period,
priced from the period's usage aggregate: the common case costs no extra query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from itertools import pairwise

from billing.periods import Period, whole_second
from billing.price_model import Pricing
from billing.segments import PlanChange, plan_intervals
from tollway.catalog.versions import VersionTiming, next_whole_minute, switches, version_at


def trial_end(start: datetime, days: int) -> datetime:
    """When a trial of `days` that started at `start` ends: the next whole minute after start + days."""
    return next_whole_minute(whole_second(start) + timedelta(days=days))


# Half-open [start, end) stretches of time.
Stretches = tuple[tuple[datetime, datetime], ...]


@dataclass(frozen=True, slots=True)
class Regime:
    """The terms a stretch of a period is priced under."""

    plan_id: str
    version: int
    # When the trial these requests fall into ends; None outside a trial.
    trial_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class TermsVersion:
    timing: VersionTiming
    # None for a free plan without a currency (not invoiced).
    pricing: Pricing | None


class PlanTerms:
    """A plan's versions as billing prices them."""

    __slots__ = ("_pricing", "name", "plan_id", "timings", "varies")

    def __init__(self, plan_id: str, name: str, versions: Sequence[TermsVersion]) -> None:
        if not versions:
            raise ValueError(f"plan {plan_id} has no version")
        self.plan_id = plan_id
        self.name = name
        self.timings = tuple(v.timing for v in versions)
        self._pricing = {v.timing.version: v.pricing for v in versions}
        # Whether any period can be split for this plan: more than one version, or a trial.
        self.varies = len(versions) > 1 or any(
            v.pricing is not None and v.pricing.trial_days for v in versions
        )

    @property
    def versioned(self) -> bool:
        return len(self.timings) > 1

    def pricing(self, version: int) -> Pricing | None:
        return self._pricing.get(version)

    def cuts(self, period: Period, trial_start: datetime, anchor_day: int) -> list[datetime]:
        """Instants inside `period` where this plan's terms may change for the subscription."""
        if not self.varies:
            return []
        found = set(switches(self.timings, period.start, period.end, anchor_day))
        for pricing in self._pricing.values():
            if pricing is not None and pricing.trial_days:
                end = trial_end(trial_start, pricing.trial_days)
                if period.start < end < period.end:
                    found.add(end)
        return sorted(found)

    def regime_at(self, instant: datetime, trial_start: datetime, anchor_day: int) -> Regime:
        version = version_at(self.timings, instant, anchor_day) if self.versioned else self.timings[0].version
        pricing = self._pricing.get(version)
        until = None
        if pricing is not None and pricing.trial_days:
            end = trial_end(trial_start, pricing.trial_days)
            if instant < end:
                until = end
        return Regime(self.plan_id, version, until)


@dataclass(frozen=True, slots=True)
class Piece:
    regime: Regime
    share: Fraction
    # The stretch whose usage of regime.plan_id the piece prices; the whole period when it is one piece.
    usage_start: datetime
    usage_end: datetime
    # The stretches its fee share covers (the subscription on this plan under these terms), for the fee
    # line's text; empty: the whole usage stretch.
    stretches: Stretches = ()

    def covers(self, period: Period) -> bool:
        return self.usage_start == period.start and self.usage_end == period.end


def split(
    period: Period,
    anchor_day: int,
    active_from: datetime,
    active_until: datetime | None,
    current_plan_id: str,
    changes: Sequence[PlanChange],
    usage_plans: Iterable[str],
    terms: Callable[[str], PlanTerms | None],
) -> list[Piece]:
    """The pieces of one subscription's `period`: for every plan it was on or has usage under, in order
    of first use, one piece per stretch of unchanged terms."""
    intervals = plan_intervals(period, active_from, active_until, current_plan_id, changes)
    plans = list(dict.fromkeys([plan_id for plan_id, _, _ in intervals] + list(usage_plans)))
    trial_start = whole_second(active_from)
    pieces: list[Piece] = []
    for plan_id in plans:
        plan_terms = terms(plan_id)
        mine = [(lo, hi) for p, lo, hi in intervals if p == plan_id]
        if plan_terms is None or not plan_terms.varies:
            regime = (
                Regime(plan_id, plan_terms.timings[0].version)
                if plan_terms is not None
                else Regime(plan_id, 1)
            )
            pieces.append(
                Piece(
                    regime, _share(period, mine, period.start, period.end), period.start, period.end,
                    _within(mine, period.start, period.end),
                )
            )  # fmt: skip
            continue
        bounds = [period.start, *plan_terms.cuts(period, trial_start, anchor_day), period.end]
        stretches: list[tuple[Regime, datetime, datetime]] = []
        for lo, hi in pairwise(bounds):
            regime = plan_terms.regime_at(lo, trial_start, anchor_day)
            if stretches and stretches[-1][0] == regime:
                stretches[-1] = (regime, stretches[-1][1], hi)  # unchanged terms: one stretch
            else:
                stretches.append((regime, lo, hi))
        pieces += [
            Piece(regime, _share(period, mine, lo, hi), lo, hi, _within(mine, lo, hi))
            for regime, lo, hi in stretches
        ]
    return pieces


def _within(intervals: list[tuple[datetime, datetime]], lo: datetime, hi: datetime) -> Stretches:
    """The parts of `intervals` inside [lo, hi)."""
    return tuple((max(a, lo), min(b, hi)) for a, b in intervals if max(a, lo) < min(b, hi))


def _share(
    period: Period, intervals: list[tuple[datetime, datetime]], lo: datetime, hi: datetime
) -> Fraction:
    if len(intervals) == 1 and intervals[0] == (period.start, period.end) and (lo, hi) == intervals[0]:
        return Fraction(1)
    total = Fraction(0)
    for start, end in intervals:
        total += period.share(max(start, lo), min(end, hi))
    return total
