"""The invoice engine (pure): draft invoices from subscriptions, their lifecycle times, usage rows and
plans. No I/O: billing/invoice_store.py reads the inputs in the run's transaction and writes the drafts.

A subscription's fee runs from its approval (its creation when none was needed) until its cancellation,
both read from its SubscriptionEvent rows (tollway/lifecycle.py), never from the row's `updated_at`, so a
later unrelated write to the subscription cannot move them; billing/segments.py splits the period at its
plan changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from billing import pricing as pr
from billing.periods import Period
from billing.segments import PlanChange, plan_shares
from tollway.money import money_text
from tollway.schema import BilledSegment, Plan, SubscriptionEvent, as_utc
from tollway.subscription_states import APPROVED, CANCELLED, PLAN_CHANGED, SubscriptionState

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


# (subscription_id, api_id, plan_id, line): an invoice line and the segment it belongs to.
LineOf = tuple[str, str, str, pr.Line]


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
            ids = (segment.subscription_id, segment.api_id, segment.plan_id)
            result += [(*ids, line) for line in segment.lines]
        for billed, line in self.adjustments:
            result.append((billed.subscription_id, billed.api_id, billed.plan_id, line))
        return result


# One draft per (application, currency, period).
DraftKey = tuple[str, str, Period]
Drafts = dict[DraftKey, Draft]

_NO_USAGE = pr.Usage()
_NO_SHARE = Fraction(0)


class Pricers:
    """One Pricing per plan and one SegmentPricer per (plan, share, label) for the length of a run:
    plans are read in the run's transaction, and thousands of subscriptions share a few of them."""

    def __init__(self, plans: dict[str, Plan]) -> None:
        self._plans = plans
        self._pricers: dict[tuple[str, Fraction, bool], pr.SegmentPricer | None] = {}

    def get(self, plan_id: str, share: Fraction, labelled: bool) -> pr.SegmentPricer | None:
        key = (plan_id, share, labelled)
        try:
            return self._pricers[key]
        except KeyError:
            pass
        plan = self._plans.get(plan_id)
        pricer = None
        if plan is not None and plan.currency:
            pricer = pr.SegmentPricer(pr.Pricing.from_plan(plan), share, plan.name if labelled else "")
        self._pricers[key] = pricer
        return pricer


def active_window(subscription: SubscriptionRow, timeline: Timeline) -> tuple[datetime, datetime | None]:
    """From approval (or creation) until cancellation; None while not cancelled."""
    active_from = timeline.approved_at or as_utc(subscription.created_at)
    assert active_from is not None
    if subscription.state != SubscriptionState.CANCELLED:
        return active_from, None
    # Every cancellation writes an event (cancellations from before that were backfilled at start,
    # tollway.db.backfill_cancellation_events); one without is priced as cancelled at its start.
    return active_from, timeline.cancelled_at or active_from


def price_subscription(
    subscription: SubscriptionRow,
    period: Period,
    pricers: Pricers,
    timeline: Timeline,
    usage: list[UsageRow],
    drafts: Drafts,
) -> None:
    """Adds the subscription's segments (one per plan it was on in `period`) to its draft."""
    active_from, active_until = active_window(subscription, timeline)
    shares = plan_shares(period, active_from, active_until, subscription.plan_id, timeline.changes)
    by_plan = {row.plan_id: row.usage for row in usage}
    for plan_id in by_plan:
        shares.setdefault(plan_id, _NO_SHARE)
    several = len(shares) > 1
    for plan_id, share in shares.items():
        pricer = pricers.get(plan_id, share, several)
        if pricer is None:
            continue  # free plans without a currency are not invoiced (their usage is still reported)
        counts = by_plan.get(plan_id, _NO_USAGE)
        lines = pricer.price(counts)
        key = (subscription.application_id, pricer.pricing.currency, period)
        draft = drafts.get(key)
        if draft is None:
            draft = drafts[key] = Draft(subscription.application_id, pricer.pricing.currency, period)
        draft.segments.append(
            Segment(subscription.id, subscription.api_id, plan_id, share, pricer.pricing, counts, lines)
        )


def segment_source(segment: BilledSegment) -> str:
    """How an error names a billed segment's stored pricing."""
    return f"the pricing stored with billed segment {segment.id} (invoice {segment.invoice_id})"


def adjustment_line(segment: BilledSegment, now_usage: pr.Usage) -> pr.Line | None:
    """The correction for late usage of a finalized segment, None when its usage has not changed."""
    billed = pr.Usage.from_json(segment.usage)
    if now_usage == billed:
        return None
    pricing = pr.Pricing.from_json(segment.pricing, source=segment_source(segment))
    new_amount = pr.charged_total(pr.price_segment(pricing, now_usage, Fraction(segment.share)))
    delta = now_usage - billed
    amount = pr.exact_sum([new_amount, Decimal(segment.amount).copy_negate()])
    start, end = as_utc(segment.period_start), as_utc(segment.period_end)
    assert start is not None and end is not None
    return pr.Line(
        pr.ADJUSTMENT,
        f"late usage for {start.date().isoformat()}-{end.date().isoformat()}"
        f" ({delta.success:+,} successful, {delta.overage:+,} overage)",
        Decimal(1),
        amount,
        amount,
        {
            "segment_id": segment.id,
            "from_usage": billed.to_json(),
            "to_usage": now_usage.to_json(),
            "from_amount": segment.amount,
            "to_amount": money_text(new_amount),
        },
    )
