"""Pricing: one plan segment's usage → invoice lines (pure: no database, no protobuf).

Rules (what accounting can rely on):
- Money is Decimal end to end. Each line's amount is `quantity x unit_price` (the fee and the minimum
  charge times the segment's share of the period) rounded ONCE, to the currency's minor unit, with
  ROUND_HALF_EVEN (banker's rounding: no upward drift over many lines). Totals are sums of rounded lines.
  Products, shares and sums are exact before that one rounding: Python's default 28-digit context
  would round `unit_price x quantity` first once it passes 28 digits (e.g. 226796097.9614981720 x
  638,290,958,151 = ...113.3149999720 became ...113.315 and then 113.32 instead of 113.31).
- Billable requests (the plan's billable classes; successful ones by default) first use up the included
  requests; the rest (the requests "beyond") are priced by exactly one model:
  - unit: `unit_price` each;
  - graduated tiers: tier bounds count requests beyond the included ones (tier i covers up to `up_to`
    of them, the last tier is unbounded); each tier prices the requests that fall into it, and a tier's
    `flat_fee` is charged once when at least one request falls into it;
  - volume tiers: the tier the count beyond reaches (bounds inclusive) prices every one of those
    requests, plus that tier's flat fee. A total can fall as a tier boundary is crossed (as Stripe's
    and Lago's volume pricing do), so volume is the one model not monotone in usage;
  - packages: `package_price` per started block of `package_size` requests (201 requests in packages
    of 100 are 3 packages).
- Free trial: a segment inside the subscription's trial (billing/regimes.py) charges nothing: one TRIAL
  line with the requests, plus the informational lines.
- Soft-quota overage (requests admitted beyond a soft monthly quota) costs `overage_price` each.
- Throttled, refused and non-billable requests appear as informational lines with amount 0.
- Proration: a segment that covers part of the period (plan change, start or end mid-period) is charged
  `fee x seconds(segment) / seconds(period)`; the included requests become
  `floor(included x seconds(segment) / seconds(period))`; the minimum charge is prorated like the fee.
- Minimum charge: when the segment's charged lines sum below the (prorated) minimum, a MINIMUM line
  tops them up to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
)
from fractions import Fraction
from operator import attrgetter
from typing import Any, cast

from billing import descriptions as say
from billing.price_model import BILLABLE_CLASSES as BILLABLE_CLASSES
from billing.price_model import DEFAULT_BILLABLE_CLASSES as DEFAULT_BILLABLE_CLASSES
from billing.price_model import USAGE_FIELDS as USAGE_FIELDS
from billing.price_model import Pricing as Pricing
from billing.price_model import Tier as Tier
from billing.price_model import Usage as Usage
from tollway.errors import InvalidArgument
from tollway.money import minor_units, money_text
from tollway.vocabulary import TierMode

# Products and sums of finite decimals in this context are exact (libmpdec sizes a result by its digits,
# not by the precision); Inexact is trapped, so a rounding here would raise rather than pass. Division
# never runs in it (1/3 would never end): shares are rounded from exact Fractions (`_round_fraction`).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, InvalidOperation, Overflow])
# The one rounding of a line: quantize to the minor unit, exact apart from that.
_ROUND = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Overflow])

# Line kinds, in the order they appear on an invoice.
FEE = "FEE"
INCLUDED = "INCLUDED"
USAGE = "USAGE"
TIER = "TIER"
TIER_FLAT = "TIER_FLAT"
PACKAGE = "PACKAGE"
OVERAGE = "OVERAGE"
MINIMUM = "MINIMUM"
ADJUSTMENT = "ADJUSTMENT"
INFO_NON_BILLABLE = "INFO_NON_BILLABLE"
INFO_THROTTLED = "INFO_THROTTLED"
INFO_REFUSED = "INFO_REFUSED"
TRIAL = "TRIAL"
CHARGED_KINDS = (FEE, USAGE, TIER, TIER_FLAT, PACKAGE, OVERAGE, MINIMUM, ADJUSTMENT)


@dataclass(frozen=True, slots=True)
class Line:
    kind: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal  # rounded to the currency's minor unit
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def charged(self) -> bool:
        return self.kind in CHARGED_KINDS


def round_amount(value: Decimal, currency: str) -> Decimal:
    """The one rounding step of a line: half-even to the currency's minor unit."""
    exponent = Decimal(1).scaleb(-minor_units(currency))
    return value.quantize(exponent, rounding=ROUND_HALF_EVEN, context=_ROUND)


def exact_product(price: Decimal, quantity: int | Decimal) -> Decimal:
    """`price x quantity` without rounding (whatever their digits)."""
    return _EXACT.multiply(price, quantity)


def exact_sum(amounts: Iterable[Decimal], start: Decimal = Decimal(0)) -> Decimal:
    """The sum of `amounts` without rounding."""
    total = start
    for amount in amounts:
        total = _EXACT.add(total, amount)
    return total


def _round_fraction(value: Fraction, digits: int) -> Decimal:
    """`value` rounded once, half-even, to `digits` fractional digits (Fraction's round is half-even)."""
    return _EXACT.scaleb(Decimal(round(value * 10**digits)), -digits)


def _share(amount: Decimal, fraction: Fraction, digits: int) -> Decimal:
    """`amount x fraction`, rounded once to `digits` fractional digits."""
    if fraction == 1:
        return amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN, context=_ROUND)
    return _round_fraction(Fraction(amount) * fraction, digits)


def billable_count(pricing: Pricing, usage: Usage) -> int:
    return sum(getattr(usage, name) for name in pricing.billable_classes)


def volume_tier(tiers: Sequence[Tier], quantity: int) -> int:
    """The index of the tier a count of `quantity` reaches (bounds are inclusive)."""
    for i, tier in enumerate(tiers):
        if not tier.up_to or quantity <= tier.up_to:
            return i
    return len(tiers) - 1


def tier_quantities(tiers: Sequence[Tier], quantity: int) -> list[int]:
    """How many of `quantity` requests fall into each graduated tier."""
    result: list[int] = []
    lower = 0
    for tier in tiers:
        upper = tier.up_to if tier.up_to else None
        if upper is None:
            result.append(max(0, quantity - lower))
        else:
            result.append(max(0, min(quantity, upper) - lower))
            lower = upper
    return result


class SegmentPricer:
    """`price_segment` for one (pricing, share, label, trial), with everything that does not depend on
    the usage worked out once: an invoice run prices thousands of subscriptions on the same few plans.
    Lines that do not depend on the usage (the fee) are shared between the results: treat them as
    read-only."""

    __slots__ = (
        "_billable",
        "_digits",
        "_exponent",
        "_fee",
        "_included",
        "_included_details",
        "_minimum",
        "_minimum_details",
        "_minimum_text",
        "_non_billable",
        "_prefix",
        "_tiers",
        "_trial",
        "_zero",
        "pricing",
    )

    def __init__(
        self,
        pricing: Pricing,
        fraction: Fraction = Fraction(1),
        label: str = "",
        trial_until: datetime | None = None,
    ) -> None:
        if not 0 <= fraction <= 1:
            raise InvalidArgument(f"segment share must be between 0 and 1, got {fraction}")
        self.pricing = pricing
        # Unsupported currency → InvalidArgument before anything is priced.
        digits = self._digits = minor_units(pricing.currency)
        self._exponent = Decimal(1).scaleb(-digits)
        prefix = f"{label}: " if label else ""
        self._prefix = prefix
        self._zero = self._round(Decimal(0))
        self._trial: tuple[str, dict[str, Any]] | None = None
        if trial_until is not None:
            until = trial_until.strftime("%Y-%m-%d %H:%M UTC")
            self._trial = (say.trial(prefix, trial_until), {"trial_until": until})
        share_text = f"{fraction.numerator}/{fraction.denominator}"
        prorated = fraction != 1
        self._fee: Line | None = None
        if pricing.recurring_fee:
            fee = _share(pricing.recurring_fee, fraction, digits)
            self._fee = Line(
                FEE, say.fee(prefix, (), prorated), Decimal(1), pricing.recurring_fee, fee,
                {"share": share_text},
            )  # fmt: skip
        self._included = int(pricing.included_requests * fraction)  # floor: prorated allowance
        self._included_details = {"allowance": self._included}
        volume = pricing.tier_mode == TierMode.VOLUME
        # Per tier: its price, line text and details, and its flat-fee line (shared: it never varies).
        tiers: list[tuple[Decimal, str, dict[str, Any], Line | None]] = []
        lower = 0
        for i, tier in enumerate(pricing.tiers):
            name = say.tier_name(prefix, i + 1, lower, tier.up_to, volume)
            details = {"tier": i + 1}
            flat = None
            if tier.flat_fee:
                flat = Line(
                    TIER_FLAT, say.tier_flat_fee(prefix, i + 1, lower, tier.up_to), Decimal(1),
                    tier.flat_fee, self._round(tier.flat_fee), details,
                )  # fmt: skip
            lower = tier.up_to or lower
            tiers.append((tier.unit_price, name, details, flat))
        self._tiers = tuple(tiers)
        self._minimum: Decimal | None = None
        if pricing.minimum_charge:
            self._minimum = _share(pricing.minimum_charge, fraction, digits)
            self._minimum_details = {"minimum": money_text(self._minimum)}
            self._minimum_text = say.minimum(prefix, self._minimum, pricing.currency, prorated)
        self._billable = attrgetter(*pricing.billable_classes) if pricing.billable_classes else None
        self._non_billable = tuple(
            name
            for name in ("success", "client_error", "upstream_fault")
            if name not in pricing.billable_classes
        )

    def _round(self, value: Decimal) -> Decimal:
        return value.quantize(self._exponent, rounding=ROUND_HALF_EVEN, context=_ROUND)

    def price(self, usage: Usage) -> list[Line]:
        """Invoice lines for `usage`, exactly as `price_segment` documents them."""
        if min(usage.as_tuple()) < 0:
            raise InvalidArgument("usage counts must not be negative")
        pricing = self.pricing
        prefix = self._prefix
        lines: list[Line] = []
        billable: int
        if self._billable is None:
            billable = 0
        elif len(pricing.billable_classes) == 1:
            # attrgetter of one name returns that count itself; typeshed's star-args overload
            # assumes several names (a tuple), which the branch below sums.
            billable = cast(int, self._billable(usage))
        else:
            billable = sum(self._billable(usage))

        if self._trial is not None:
            text, details = self._trial
            lines.append(
                Line(TRIAL, text, Decimal(billable + usage.overage), Decimal(0), self._zero, details)
            )
            self._informational(usage, lines)
            return lines

        if self._fee is not None:
            lines.append(self._fee)
        included = self._included
        covered = min(billable, included)
        if included:
            lines.append(
                Line(INCLUDED, say.included(prefix, covered, included), Decimal(covered), Decimal(0),
                     self._zero, self._included_details)
            )  # fmt: skip
        self._usage_lines(billable - covered, lines)

        if usage.overage or pricing.overage_price:
            amount = self._round(_EXACT.multiply(pricing.overage_price, usage.overage))
            lines.append(
                Line(OVERAGE, say.overage(prefix, usage.overage, pricing.overage_price, pricing.currency),
                     Decimal(usage.overage), pricing.overage_price, amount)
            )  # fmt: skip

        if self._minimum is not None:
            subtotal = exact_sum(line.amount for line in lines if line.charged)
            if subtotal < self._minimum:
                top_up = _EXACT.subtract(self._minimum, subtotal)
                lines.append(
                    Line(MINIMUM, self._minimum_text, Decimal(1), top_up, top_up, dict(self._minimum_details))
                )
        self._informational(usage, lines)
        return lines

    def _usage_lines(self, beyond: int, lines: list[Line]) -> None:
        """The lines of the `beyond` billable requests past the included ones."""
        pricing = self.pricing
        if self._tiers:
            if pricing.tier_mode == TierMode.VOLUME:
                counts = [(volume_tier(pricing.tiers, beyond), beyond)] if beyond else []
            else:
                counts = list(enumerate(tier_quantities(pricing.tiers, beyond)))
            for i, quantity in counts:
                if quantity:
                    price, description, details, flat = self._tiers[i]
                    amount = self._round(_EXACT.multiply(price, quantity))
                    description = say.tier_usage(description, quantity, price, pricing.currency)
                    lines.append(Line(TIER, description, Decimal(quantity), price, amount, details))
                    if flat is not None:
                        lines.append(flat)
        elif pricing.package_size:
            if beyond or pricing.package_price:
                packages = -(-beyond // pricing.package_size)  # every started package
                amount = self._round(_EXACT.multiply(pricing.package_price, packages))
                description = say.packages(
                    self._prefix, pricing.package_size, beyond, packages, pricing.package_price,
                    pricing.currency,
                )  # fmt: skip
                lines.append(
                    Line(PACKAGE, description, Decimal(packages), pricing.package_price, amount,
                         {"requests": beyond})
                )  # fmt: skip
        elif beyond or pricing.unit_price:
            amount = self._round(_EXACT.multiply(pricing.unit_price, beyond))
            description = say.unit_usage(
                self._prefix, self._included, beyond, pricing.unit_price, pricing.currency
            )
            lines.append(Line(USAGE, description, Decimal(beyond), pricing.unit_price, amount))

    def _informational(self, usage: Usage, lines: list[Line]) -> None:
        prefix = self._prefix
        non_billable = sum(getattr(usage, name) for name in self._non_billable)
        if non_billable:
            lines.append(
                Line(INFO_NON_BILLABLE, say.not_charged(prefix, "Non-billable", non_billable),
                     Decimal(non_billable), Decimal(0), self._zero)
            )  # fmt: skip
        if usage.throttled:
            lines.append(
                Line(INFO_THROTTLED, say.not_charged(prefix, "Throttled", usage.throttled),
                     Decimal(usage.throttled), Decimal(0), self._zero)
            )  # fmt: skip
        refused = usage.unauthorized + usage.ratelimit_error
        if refused:
            lines.append(
                Line(INFO_REFUSED, say.not_charged(prefix, "Refused", refused), Decimal(refused), Decimal(0),
                     self._zero)
            )  # fmt: skip


def price_segment(
    pricing: Pricing,
    usage: Usage,
    fraction: Fraction = Fraction(1),
    label: str = "",
) -> list[Line]:
    """Invoice lines for `usage` under `pricing` over `fraction` of a billing period (0 < fraction ≤ 1)."""
    return SegmentPricer(pricing, fraction, label).price(usage)


def charged_total(lines: Sequence[Line]) -> Decimal:
    """Sum of the charged lines' (already rounded) amounts."""
    return exact_sum(line.amount for line in lines if line.charged)
