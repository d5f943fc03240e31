"""A plan's pricing as the catalog takes it from clients and stores it (pure: no database, no protobuf).

`validate_pricing` returns the canonical draft or raises InvalidArgument naming the field as its path
in the proto (`pricing.tiers[1].flat_fee`). Requests beyond the included ones are priced by exactly
one model: a unit price, tiers (graduated, or volume: the tier reached prices every request), or
packages (a price per started block of N requests); a free trial (N days from a subscription's
start) combines with any of them. Billing prices what is stored here (billing/price_model.py checks
every record again when it reads one).

Canonical forms: money as plain decimal text, scale kept ("49.00"); currency upper case; tier_mode
GRADUATED or VOLUME when there are tiers, "" when there are none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tollway.catalog.limits import PlanLimits
from tollway.errors import InvalidArgument
from tollway.money import is_currency, minor_units, money_text, parse_money, retired_note
from tollway.vocabulary import TierMode

# Upper bound for every request count (limits, quotas, tier bounds, package sizes): far beyond any real
# plan, and small enough that sums and products stay exact everywhere (including PostgreSQL BIGINT).
MAX_COUNT = 10**12
MAX_TIERS = 32
# A free trial is at most a year long.
MAX_TRIAL_DAYS = 366
BILLABLE_CLASSES = ("success", "client_error", "upstream_fault")


@dataclass(frozen=True, slots=True)
class PriceTierDraft:
    up_to: int = 0
    unit_price: str = ""
    flat_fee: str = ""


@dataclass(frozen=True, slots=True)
class PricingDraft:
    currency: str = ""
    recurring_fee: str = ""
    included_requests: int = 0
    unit_price: str = ""
    tiers: tuple[PriceTierDraft, ...] = ()
    overage_price: str = ""
    minimum_charge: str = ""
    billable_classes: tuple[str, ...] = ()
    # A TierMode, or "" (graduated) as a client left it unspecified.
    tier_mode: str = ""
    package_size: int = 0
    package_price: str = ""
    trial_days: int = 0

    def columns(self) -> dict[str, Any]:
        """The plan row's pricing columns, and a plan version's pricing record (billing reads both with
        billing.price_model.Pricing.from_json)."""
        return {
            "currency": self.currency,
            "recurring_fee": self.recurring_fee,
            "included_requests": self.included_requests,
            "unit_price": self.unit_price,
            "tiers": [
                {"up_to": tier.up_to, "unit_price": tier.unit_price, "flat_fee": tier.flat_fee}
                for tier in self.tiers
            ],
            "overage_price": self.overage_price,
            "minimum_charge": self.minimum_charge,
            "billable_classes": list(self.billable_classes),
            "tier_mode": self.tier_mode,
            "package_size": self.package_size,
            "package_price": self.package_price,
            "trial_days": self.trial_days,
        }

    @classmethod
    def from_columns(cls, source: Any) -> PricingDraft:
        """From a plan row (attributes) or a pricing record (a mapping), as `columns` wrote them; a
        column an older database lacks reads as its empty value."""

        def get(name: str) -> Any:
            return source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)

        return cls(
            currency=get("currency") or "",
            recurring_fee=get("recurring_fee") or "",
            included_requests=int(get("included_requests") or 0),
            unit_price=get("unit_price") or "",
            tiers=tuple(
                PriceTierDraft(
                    up_to=int(tier["up_to"]),
                    unit_price=str(tier.get("unit_price") or ""),
                    flat_fee=str(tier.get("flat_fee") or ""),
                )
                for tier in get("tiers") or ()
            ),
            overage_price=get("overage_price") or "",
            minimum_charge=get("minimum_charge") or "",
            billable_classes=tuple(get("billable_classes") or ()),
            tier_mode=get("tier_mode") or "",
            package_size=int(get("package_size") or 0),
            package_price=get("package_price") or "",
            trial_days=int(get("trial_days") or 0),
        )


def validate_count(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(f"{field} must not be negative, got {value}")
    if value > MAX_COUNT:
        raise InvalidArgument(f"{field} must be at most {MAX_COUNT}, got {value}")
    return value


def _fraction_digits(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _validate_tiers(pricing: PricingDraft) -> tuple[list[Decimal], list[Decimal]]:
    """The tiers' unit prices and flat fees, once their bounds are checked."""
    if len(pricing.tiers) > MAX_TIERS:
        raise InvalidArgument(f"pricing.tiers may have at most {MAX_TIERS} tiers, got {len(pricing.tiers)}")
    prices: list[Decimal] = []
    flat_fees: list[Decimal] = []
    last = len(pricing.tiers) - 1
    for i, tier in enumerate(pricing.tiers):
        up_to = validate_count(tier.up_to, f"pricing.tiers[{i}].up_to")
        prices.append(parse_money(tier.unit_price, f"pricing.tiers[{i}].unit_price"))
        flat_fees.append(parse_money(tier.flat_fee, f"pricing.tiers[{i}].flat_fee"))
        if up_to == 0:
            if i != last:
                raise InvalidArgument(
                    f"pricing.tiers[{i}].up_to is 0 (unbounded), but only the last tier may be unbounded"
                )
        elif i > 0 and up_to <= pricing.tiers[i - 1].up_to:
            raise InvalidArgument(
                f"pricing.tiers[{i}].up_to ({up_to}) must be greater than "
                f"pricing.tiers[{i - 1}].up_to ({pricing.tiers[i - 1].up_to})"
            )
    if pricing.tiers and pricing.tiers[last].up_to != 0:
        raise InvalidArgument(
            f"pricing.tiers[{last}].up_to must be 0: the last tier must be unbounded "
            f"(got {pricing.tiers[last].up_to})"
        )
    return prices, flat_fees


def _tier_mode(pricing: PricingDraft) -> str:
    mode = pricing.tier_mode.upper()
    if mode and mode not in tuple(TierMode):
        raise InvalidArgument(f"pricing.tier_mode must be GRADUATED or VOLUME, got {pricing.tier_mode!r}")
    if not pricing.tiers:
        if mode == TierMode.VOLUME:
            raise InvalidArgument("pricing.tier_mode VOLUME needs pricing.tiers")
        return ""
    return mode or TierMode.GRADUATED


def _validate_currency(code: str) -> str:
    currency = code.upper()
    if currency and retired_note(currency):
        raise InvalidArgument(f"pricing.currency: {retired_note(currency)}")
    if currency and not is_currency(currency):
        raise InvalidArgument(f"pricing.currency {code!r} is not a known ISO 4217 code such as EUR or USD")
    return currency


def validate_pricing(pricing: PricingDraft, limits: PlanLimits) -> PricingDraft:
    """Pricing of a plan whose (validated) limits are `limits`."""
    currency = _validate_currency(pricing.currency)
    recurring_fee = parse_money(pricing.recurring_fee, "pricing.recurring_fee")
    unit_price = parse_money(pricing.unit_price, "pricing.unit_price")
    overage_price = parse_money(pricing.overage_price, "pricing.overage_price")
    minimum_charge = parse_money(pricing.minimum_charge, "pricing.minimum_charge")
    package_price = parse_money(pricing.package_price, "pricing.package_price")
    included_requests = validate_count(pricing.included_requests, "pricing.included_requests")
    package_size = validate_count(pricing.package_size, "pricing.package_size")
    if not 0 <= pricing.trial_days <= MAX_TRIAL_DAYS:
        raise InvalidArgument(f"pricing.trial_days must be 0 to {MAX_TRIAL_DAYS}, got {pricing.trial_days}")
    tier_prices, flat_fees = _validate_tiers(pricing)
    tier_mode = _tier_mode(pricing)

    if pricing.tiers and unit_price != 0:
        raise InvalidArgument(
            "pricing.unit_price and pricing.tiers are mutually exclusive: set the per-request price in "
            "the tiers and leave unit_price empty"
        )
    if package_size and (pricing.tiers or unit_price != 0):
        raise InvalidArgument(
            "pricing.package_size prices requests per package: leave pricing.unit_price and "
            "pricing.tiers empty"
        )
    if package_price != 0 and not package_size:
        raise InvalidArgument("pricing.package_price needs pricing.package_size (requests per package)")

    amounts = [
        recurring_fee,
        unit_price,
        overage_price,
        minimum_charge,
        package_price,
        *tier_prices,
        *flat_fees,
    ]
    if any(amount != 0 for amount in amounts) and not currency:
        raise InvalidArgument("pricing.currency is required for a priced plan (an ISO 4217 code such as EUR)")
    if currency:
        # Fees are charged as they are: they must be payable in the currency's smallest unit (unit
        # prices may be finer, e.g. 0.0004 EUR per request; billing rounds each invoice line).
        digits = minor_units(currency)
        fees = [("recurring_fee", recurring_fee), ("minimum_charge", minimum_charge)]
        fees += [(f"tiers[{i}].flat_fee", fee) for i, fee in enumerate(flat_fees)]
        for name, amount in fees:
            if _fraction_digits(amount) > digits:
                raise InvalidArgument(
                    f"pricing.{name} {money_text(amount)} {currency} has more decimals than {currency} "
                    f"allows ({digits})"
                )
    if overage_price != 0 and (not limits.soft_quota or limits.monthly_quota == 0):
        raise InvalidArgument(
            "pricing.overage_price applies only beyond a soft monthly quota: set limits.monthly_quota "
            "and limits.quota_policy SOFT, or leave overage_price empty"
        )

    return PricingDraft(
        currency=currency,
        recurring_fee=money_text(recurring_fee),
        included_requests=included_requests,
        unit_price=money_text(unit_price),
        tiers=tuple(
            PriceTierDraft(up_to=tier.up_to, unit_price=money_text(price), flat_fee=money_text(flat))
            for tier, price, flat in zip(pricing.tiers, tier_prices, flat_fees, strict=True)
        ),
        overage_price=money_text(overage_price),
        minimum_charge=money_text(minimum_charge),
        billable_classes=validate_billable_classes(pricing.billable_classes),
        tier_mode=tier_mode,
        package_size=package_size,
        package_price=money_text(package_price),
        trial_days=pricing.trial_days,
    )


def validate_billable_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Distinct classes from BILLABLE_CLASSES, in that order; empty stays empty (successful only)."""
    for i, name in enumerate(classes):
        if name not in BILLABLE_CLASSES:
            raise InvalidArgument(
                f"pricing.billable_classes[{i}] must be one of {', '.join(BILLABLE_CLASSES)}, got {name!r}"
            )
    return tuple(name for name in BILLABLE_CLASSES if name in classes)
