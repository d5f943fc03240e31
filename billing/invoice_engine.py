"""The invoice engine (pure): draft invoices from subscriptions, their lifecycle times, usage rows and
plans. No I/O: billing/invoice_store.py reads the inputs in the run's transaction and writes the drafts.

A subscription's fee runs from its approval (its creation when none was needed) until its cancellation,
both read from its SubscriptionEvent rows (tollway/lifecycle.py), never from the row's `updated_at`, so a
later unrelated write to the subscription cannot move them; billing/segments.py splits the period at its
plan changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from billing import descriptions
from billing import pricing as pr
from billing.periods import Period
from billing.regimes import Piece, PlanTerms, Regime, Stretches, TermsVersion, split
from billing.segments import PlanChange
from tollway.catalog.versions import BEGINNING, VersionTiming
from tollway.money import money_text
from tollway.schema import Plan, SubscriptionEvent, as_utc
from tollway.schema_billing import BilledSegment
from tollway.subscription_states import APPROVED, CANCELLED, PLAN_CHANGED, SubscriptionState
from tollway.vocabulary import VersionEffect

# The lifecycle events an invoice run reads.
BILLING_EVENT_KINDS = (APPROVED, PLAN_CHANGED, CANCELLED)


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """The subscription columns an invoice run reads (tens of thousands: no ORM objects)."""

    id: str
    application_id: str
    api_id: str
    plan_id: str
    state: str
    billing_anchor_day: int
    created_at: datetime


@dataclass(frozen=True)
class UsageRow:
    subscription_id: str
    plan_id: str
    usage: pr.Usage


@dataclass(frozen=True, slots=True)
class Timeline:
    """When a subscription's fee starts and stops, and its plan changes, from its lifecycle events."""

    approved_at: datetime | None = None
    cancelled_at: datetime | None = None
    changes: tuple[PlanChange, ...] = ()

    @classmethod
    def from_events(cls, events: Iterable[SubscriptionEvent]) -> Timeline:
        approvals: list[datetime] = []
        cancellations: list[datetime] = []
        changes: list[PlanChange] = []
        for event in events:
            at = as_utc(event.at)
            assert at is not None
            if event.kind == APPROVED:
                approvals.append(at)
            elif event.kind == CANCELLED:
                cancellations.append(at)
            elif event.kind == PLAN_CHANGED:
                changes.append(PlanChange(at, event.from_plan_id, event.to_plan_id))
        return cls(min(approvals, default=None), min(cancellations, default=None), tuple(changes))


@dataclass
class Segment:
    subscription_id: str
    api_id: str
    plan_id: str
    share: Fraction
    pricing: pr.Pricing
    usage: pr.Usage
    lines: list[pr.Line]
    version: int = 1
    # The stretch of the period whose usage it priced; None: the whole period.
    usage_start: datetime | None = None
    usage_end: datetime | None = None
    trial_until: datetime | None = None


# (subscription_id, api_id, plan_id, plan version, line): an invoice line and the segment it belongs to.
LineOf = tuple[str, str, str, int, pr.Line]


@dataclass
class Draft:
    application_id: str
    currency: str
    period: Period
    segments: list[Segment] = field(default_factory=list)
    adjustments: list[tuple[BilledSegment, pr.Line]] = field(default_factory=list)

    def lines(self) -> list[LineOf]:
        result: list[LineOf] = []
        for segment in self.segments:
            ids = (segment.subscription_id, segment.api_id, segment.plan_id, segment.version)
            result += [(*ids, line) for line in segment.lines]
        for billed, line in self.adjustments:
            result.append((billed.subscription_id, billed.api_id, billed.plan_id, billed.plan_version, line))
        return result


# One draft per (application, currency, period).
DraftKey = tuple[str, str, Period]
Drafts = dict[DraftKey, Draft]

_NO_USAGE = pr.Usage()
_WHOLE = Fraction(1)


class Pricers:
    """Each plan's terms (billing/regimes.py) and one SegmentPricer per (plan, version, share, label,
    trial) for the length of a run: plans are read in the run's transaction, and thousands of
    subscriptions share a few of them. Terms are built when a plan is first priced, so a stored plan
    that cannot be priced fails the runs that use it, and only those."""

    def __init__(
        self, plans: dict[str, Plan], versions: Mapping[str, Sequence[PlanVersionRecord]] | None = None
    ) -> None:
        self._plans = plans
        self._versions = versions or {}
        self._terms: dict[str, PlanTerms | None] = {}
        self._pricers: dict[tuple[Regime, Fraction, bool], pr.SegmentPricer | None] = {}
        self._whole: dict[tuple[str, Period], Piece | None] = {}
        self._fees: dict[tuple[int, Stretches], pr.Line] = {}

    def terms(self, plan_id: str) -> PlanTerms | None:
        try:
            return self._terms[plan_id]
        except KeyError:
            pass
        plan = self._plans.get(plan_id)
        terms = None if plan is None else plan_terms(plan, self._versions.get(plan_id, ()))
        self._terms[plan_id] = terms
        return terms

    def whole_piece(self, plan_id: str, period: Period) -> Piece | None:
        """The one piece of a period spent wholly on a plan whose terms do not change in it; None when
        they may (a version switch, a trial)."""
        key = (plan_id, period)
        try:
            return self._whole[key]
        except KeyError:
            pass
        terms = self.terms(plan_id)
        piece = None
        if terms is None or not terms.varies:
            version = terms.timings[0].version if terms is not None else 1
            whole = ((period.start, period.end),)
            piece = Piece(Regime(plan_id, version), _WHOLE, period.start, period.end, whole)
        self._whole[key] = piece
        return piece

    def dated_fee(self, line: pr.Line, stretches: Stretches) -> pr.Line:
        """A fee line naming the days it covers ("Recurring fee, Dec 10-31 (prorated)"), with them in
        its details; one object per (fee line, days) for the run, as the pricer shares its fee line."""
        key = (id(line), stretches)
        try:
            return self._fees[key]
        except KeyError:
            pass
        head, _, prorated = line.description.partition("Recurring fee")
        days = descriptions.spans(stretches)
        details = {
            **line.details,
            "stretches": [[lo.isoformat(), hi.isoformat()] for lo, hi in stretches],
        }
        dated = replace(line, description=f"{head}Recurring fee, {days}{prorated}", details=details)
        self._fees[key] = dated
        return dated

    def get(self, regime: Regime, share: Fraction, labelled: bool) -> pr.SegmentPricer | None:
        key = (regime, share, labelled)
        try:
            return self._pricers[key]
        except KeyError:
            pass
        terms = self.terms(regime.plan_id)
        pricing = terms.pricing(regime.version) if terms is not None else None
        pricer = None
        if terms is not None and pricing is not None:
            label = ""
            if labelled:
                label = f"{terms.name} v{regime.version}" if terms.versioned else terms.name
            pricer = pr.SegmentPricer(pricing, share, label, regime.trial_until)
        self._pricers[key] = pricer
        return pricer


def plan_terms(plan: Plan, versions: Sequence[PlanVersionRecord]) -> PlanTerms:
    """A plan's terms from its stored versions; a plan without any (made before versions, or written
    straight to the table) is one version, the row as it is."""
    if not versions:
        timing = VersionTiming(max(plan.version or 1, 1), VersionEffect.INSTANT, BEGINNING)
        pricing = pr.Pricing.from_plan(plan) if plan.currency else None
        return PlanTerms(plan.id, plan.name, [TermsVersion(timing, pricing)])
    return PlanTerms(
        plan.id,
        plan.name,
        [
            TermsVersion(
                record.timing,
                pr.Pricing.from_json(
                    record.pricing, f"version {record.timing.version} of plan {plan.name} ({plan.id})"
                )
                if record.pricing.get("currency")
                else None,
            )
            for record in sorted(versions, key=lambda r: r.timing.version)
        ],
    )


@dataclass(frozen=True, slots=True)
class PlanVersionRecord:
    """A stored plan version as billing reads it: when it starts, and its pricing record."""

    timing: VersionTiming
    pricing: Mapping[str, Any]


def active_window(subscription: SubscriptionRow, timeline: Timeline) -> tuple[datetime, datetime | None]:
    """From approval (or creation) until cancellation; None while not cancelled."""
    active_from = timeline.approved_at or as_utc(subscription.created_at)
    assert active_from is not None
    if subscription.state != SubscriptionState.CANCELLED:
        return active_from, None
    # Every cancellation writes an event (cancellations from before that were backfilled at start,
    # tollway.db.backfill_cancellation_events); one without is priced as cancelled at its start.
    return active_from, timeline.cancelled_at or active_from


def subscription_pieces(
    subscription: SubscriptionRow,
    period: Period,
    pricers: Pricers,
    timeline: Timeline,
    usage: list[UsageRow],
) -> list[Piece]:
    """The pieces (billing/regimes.py) of the subscription's `period`."""
    active_from, active_until = active_window(subscription, timeline)
    plan_id = subscription.plan_id
    if (
        not timeline.changes
        and active_until is None
        and active_from <= period.start
        and all(row.plan_id == plan_id for row in usage)
    ):
        # The common case, worked out once per plan and period: one plan all period long.
        whole = pricers.whole_piece(plan_id, period)
        if whole is not None:
            return [whole]
    return split(
        period, subscription.billing_anchor_day, active_from, active_until, subscription.plan_id,
        timeline.changes, (row.plan_id for row in usage), pricers.terms,
    )  # fmt: skip


# Usage of one subscription under one plan in [period start, instant): (plan_id, instant) → counts.
Prefixes = Mapping[tuple[str, datetime], pr.Usage]


def piece_usage(piece: Piece, period: Period, whole: pr.Usage, prefixes: Prefixes) -> pr.Usage:
    """The usage a piece prices: the period's aggregate, or the difference of two prefixes."""
    if piece.covers(period):
        return whole
    plan_id = piece.regime.plan_id

    def before(instant: datetime) -> pr.Usage:
        if instant == period.start:
            return _NO_USAGE
        if instant == period.end:
            return whole
        return prefixes.get((plan_id, instant), _NO_USAGE)

    return before(piece.usage_end) - before(piece.usage_start)


def price_subscription(
    subscription: SubscriptionRow,
    period: Period,
    pricers: Pricers,
    pieces: list[Piece],
    usage: list[UsageRow],
    prefixes: Prefixes,
    drafts: Drafts,
) -> None:
    """Adds the subscription's segments (one per piece: plan, version and trial) to its draft."""
    by_plan = {row.plan_id: row.usage for row in usage}
    several = len(pieces) > 1
    for piece in pieces:
        counts = piece_usage(piece, period, by_plan.get(piece.regime.plan_id, _NO_USAGE), prefixes)
        if not piece.share and counts == _NO_USAGE:
            continue  # a stretch of a plan the subscription was not on, with nothing used under it
        pricer = pricers.get(piece.regime, piece.share, several)
        if pricer is None:
            continue  # free plans without a currency are not invoiced (their usage is still reported)
        lines = pricer.price(counts)
        if lines and lines[0].kind == pr.FEE and piece.stretches:
            lines[0] = pricers.dated_fee(lines[0], piece.stretches)
        key = (subscription.application_id, pricer.pricing.currency, period)
        draft = drafts.get(key)
        if draft is None:
            draft = drafts[key] = Draft(subscription.application_id, pricer.pricing.currency, period)
        whole = piece.covers(period)
        segment = Segment(
            subscription.id, subscription.api_id, piece.regime.plan_id, piece.share, pricer.pricing, counts,
            lines, piece.regime.version, None if whole else piece.usage_start,
            None if whole else piece.usage_end, piece.regime.trial_until,
        )  # fmt: skip
        draft.segments.append(segment)


def segment_source(segment: BilledSegment) -> str:
    """How an error names a billed segment's stored pricing."""
    return f"the pricing stored with billed segment {segment.id} (invoice {segment.invoice_id})"


def adjustment_line(segment: BilledSegment, now_usage: pr.Usage) -> pr.Line | None:
    """The correction for late usage of a finalized segment, None when its usage has not changed."""
    billed = pr.Usage.from_json(segment.usage)
    if now_usage == billed:
        return None
    pricing = pr.Pricing.from_json(segment.pricing, source=segment_source(segment))
    # Priced as the segment was: its share, and inside its trial (if it was one) nothing is charged.
    pricer = pr.SegmentPricer(pricing, Fraction(segment.share), trial_until=as_utc(segment.trial_until))
    new_amount = pr.charged_total(pricer.price(now_usage))
    delta = now_usage - billed
    # A difference of rounded amounts: exact, shown with the currency's minor unit.
    amount = pr.round_amount(
        pr.exact_sum([new_amount, Decimal(segment.amount).copy_negate()]), pricing.currency
    )
    start, end = as_utc(segment.period_start), as_utc(segment.period_end)
    assert start is not None and end is not None
    return pr.Line(
        pr.ADJUSTMENT,
        descriptions.adjustment(start, end, delta.success, delta.overage),
        Decimal(1),
        amount,
        amount,
        {
            "segment_id": segment.id,
            "from_usage": billed.to_json(),
            "to_usage": now_usage.to_json(),
            "from_amount": segment.amount,
            "to_amount": money_text(new_amount),
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
        },
    )
