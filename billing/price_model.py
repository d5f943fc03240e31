"""What a plan charges, as billing prices it (pure): Pricing and its tiers, and the usage counts priced.

A Pricing is checked when it is built, wherever it comes from: a plan row, a plan version, or the
snapshot stored with billed usage that adjustments re-read months later. The catalog validates what
clients send (tollway/catalog/validation.py), but a stored record can still be bad (written by an
older release, edited in the database, damaged), and pricing it would put a NaN, a negative charge
or a misordered tier on an invoice. Built directly, a bad Pricing raises InvalidArgument naming the
field; read from a stored record (`from_json`, `from_plan`), FailedPrecondition naming the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tollway.errors import FailedPrecondition, InvalidArgument
from tollway.money import minor_units, money_text
from tollway.vocabulary import TierMode

# Outcome classes of UsageWindow that a plan may bill; throttled / refused requests never bill.
BILLABLE_CLASSES = ("success", "client_error", "upstream_fault")
DEFAULT_BILLABLE_CLASSES = ("success",)
# A free trial is at most a year long.
MAX_TRIAL_DAYS = 366


def _check_amount(value: Decimal, field: str) -> None:
    if not isinstance(value, Decimal):
        raise InvalidArgument(f"{field} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise InvalidArgument(f"{field} must be a finite amount, got {value}")
    if value < 0:
        raise InvalidArgument(f"{field} must not be negative, got {value}")


def _check_count(value: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field} must be an integer, got {value!r}")
    if value < 0:
        raise InvalidArgument(f"{field} must not be negative, got {value}")


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: int  # 0 = unbounded (last tier only)
    unit_price: Decimal
    # Charged once when a request falls into the tier (graduated), or when the count reaches it (volume).
    flat_fee: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Pricing:
    currency: str
    recurring_fee: Decimal = Decimal(0)
    included_requests: int = 0
    unit_price: Decimal = Decimal(0)
    tiers: tuple[Tier, ...] = ()
    overage_price: Decimal = Decimal(0)
    minimum_charge: Decimal = Decimal(0)
    billable_classes: tuple[str, ...] = DEFAULT_BILLABLE_CLASSES
    tier_mode: TierMode = TierMode.GRADUATED
    # Package pricing: `package_price` per started block of `package_size` requests (0 = off).
    package_size: int = 0
    package_price: Decimal = Decimal(0)
    # Days from the subscription's start during which nothing on this plan is charged.
    trial_days: int = 0

    def __post_init__(self) -> None:
        for name in ("recurring_fee", "unit_price", "overage_price", "minimum_charge", "package_price"):
            _check_amount(getattr(self, name), f"pricing.{name}")
        _check_count(self.included_requests, "pricing.included_requests")
        _check_count(self.package_size, "pricing.package_size")
        _check_count(self.trial_days, "pricing.trial_days")
        if self.trial_days > MAX_TRIAL_DAYS:
            raise InvalidArgument(
                f"pricing.trial_days must be at most {MAX_TRIAL_DAYS}, got {self.trial_days}"
            )
        if self.tier_mode not in tuple(TierMode):
            raise InvalidArgument(f"pricing.tier_mode must be GRADUATED or VOLUME, got {self.tier_mode!r}")
        self._check_tiers()
        self._check_package()
        for i, name in enumerate(self.billable_classes):
            if name not in BILLABLE_CLASSES:
                raise InvalidArgument(
                    f"pricing.billable_classes[{i}] must be one of {', '.join(BILLABLE_CLASSES)}: {name!r}"
                )
        if len(set(self.billable_classes)) != len(self.billable_classes):
            raise InvalidArgument(f"pricing.billable_classes lists a class twice: {self.billable_classes}")
        if self.currency or not self.is_free:
            minor_units(self.currency)  # an unknown (or missing) currency is InvalidArgument

    def _check_tiers(self) -> None:
        last = len(self.tiers) - 1
        previous = 0
        for i, tier in enumerate(self.tiers):
            _check_count(tier.up_to, f"pricing.tiers[{i}].up_to")
            _check_amount(tier.unit_price, f"pricing.tiers[{i}].unit_price")
            _check_amount(tier.flat_fee, f"pricing.tiers[{i}].flat_fee")
            if tier.up_to == 0 and i != last:
                raise InvalidArgument(f"pricing.tiers[{i}] is unbounded (up_to 0) but is not the last tier")
            if i == last and tier.up_to != 0:
                raise InvalidArgument(f"pricing.tiers[{i}], the last tier, must be unbounded (up_to 0)")
            if tier.up_to and tier.up_to <= previous:
                raise InvalidArgument(
                    f"pricing.tiers[{i}].up_to ({tier.up_to}) must exceed the tier before ({previous})"
                )
            previous = tier.up_to or previous
        if self.tiers and self.unit_price:
            raise InvalidArgument("pricing.unit_price and pricing.tiers are mutually exclusive")

    def _check_package(self) -> None:
        if not self.package_size:
            if self.package_price:
                raise InvalidArgument(
                    "pricing.package_price needs pricing.package_size (requests per package)"
                )
            return
        if self.tiers or self.unit_price:
            raise InvalidArgument(
                "pricing.package_size excludes pricing.unit_price and pricing.tiers: requests are priced "
                "per package"
            )

    def to_json(self) -> dict[str, Any]:
        """Snapshot kept with billed usage, so later adjustments price with the plan as it was billed."""
        return {
            "currency": self.currency,
            "recurring_fee": money_text(self.recurring_fee),
            "included_requests": self.included_requests,
            "unit_price": money_text(self.unit_price),
            "tiers": [
                {"up_to": t.up_to, "unit_price": money_text(t.unit_price), "flat_fee": money_text(t.flat_fee)}
                for t in self.tiers
            ],
            "overage_price": money_text(self.overage_price),
            "minimum_charge": money_text(self.minimum_charge),
            "billable_classes": list(self.billable_classes),
            "tier_mode": str(self.tier_mode),
            "package_size": self.package_size,
            "package_price": money_text(self.package_price),
            "trial_days": self.trial_days,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "a stored pricing") -> Pricing:
        """A stored record (a billed segment's snapshot, a plan); a bad one is FailedPrecondition
        naming `source`, and is never priced."""
        try:
            return cls(
                currency=str(data.get("currency", "")),
                recurring_fee=_decimal(data.get("recurring_fee")),
                included_requests=_integer(data.get("included_requests")),
                unit_price=_decimal(data.get("unit_price")),
                tiers=tuple(
                    Tier(_integer(t.get("up_to")), _decimal(t.get("unit_price")), _decimal(t.get("flat_fee")))
                    for t in data.get("tiers") or ()
                ),
                overage_price=_decimal(data.get("overage_price")),
                minimum_charge=_decimal(data.get("minimum_charge")),
                billable_classes=tuple(data.get("billable_classes") or DEFAULT_BILLABLE_CLASSES),
                # Records from before these fields: graduated tiers, no packages, no trial.
                tier_mode=_tier_mode(data.get("tier_mode")),
                package_size=_integer(data.get("package_size")),
                package_price=_decimal(data.get("package_price")),
                trial_days=_integer(data.get("trial_days")),
            )
        except (InvalidArgument, InvalidOperation, TypeError, ValueError, AttributeError) as exc:
            detail = exc.message if isinstance(exc, InvalidArgument) else f"unreadable ({type(exc).__name__})"
            raise FailedPrecondition(f"{source} cannot be priced: {detail}") from None

    @classmethod
    def from_plan(cls, plan: Any) -> Pricing:
        """From a schema.Plan row (money stored as canonical decimal text)."""
        return cls.from_json(
            {name: getattr(plan, name, None) for name in PRICING_COLUMNS},
            source=f"the stored pricing of plan {plan.name} ({plan.id})",
        )

    @property
    def is_free(self) -> bool:
        amounts = (
            self.recurring_fee, self.unit_price, self.overage_price, self.minimum_charge, self.package_price
        )  # fmt: skip
        return all(a == 0 for a in amounts) and all(t.unit_price == 0 == t.flat_fee for t in self.tiers)


# The plan row's pricing columns (and the keys of a pricing record).
PRICING_COLUMNS = (
    "currency", "recurring_fee", "included_requests", "unit_price", "tiers", "overage_price",
    "minimum_charge", "billable_classes", "tier_mode", "package_size", "package_price", "trial_days",
)  # fmt: skip


def _tier_mode(value: Any) -> TierMode:
    if value is None or value == "":
        return TierMode.GRADUATED
    return TierMode(str(value))  # ValueError for an unknown mode


def _decimal(value: Any) -> Decimal:
    """Stored money: decimal text (or a number written by hand); missing or empty is zero."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, float | bool):
        raise TypeError("money is stored as decimal text, never as a float")
    return Decimal(str(value))


def _integer(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("counts are stored as integers")
    return int(value)


@dataclass(frozen=True, slots=True)
class Usage:
    """Request counts of one subscription under one plan in one segment (UsageWindow classes), except
    that `success` is the successful requests within quota; `overage` those beyond a soft quota."""

    success: int = 0
    overage: int = 0
    client_error: int = 0
    upstream_fault: int = 0
    throttled: int = 0
    unauthorized: int = 0
    ratelimit_error: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def __sub__(self, other: Usage) -> Usage:
        return Usage(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return (
            self.success,
            self.overage,
            self.client_error,
            self.upstream_fault,
            self.throttled,
            self.unauthorized,
            self.ratelimit_error,
        )

    def to_json(self) -> dict[str, int]:
        return dict(zip(USAGE_FIELDS, self.as_tuple(), strict=True))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        return cls(*(int(data.get(name, 0) or 0) for name in USAGE_FIELDS))


USAGE_FIELDS = (
    "success",
    "overage",
    "client_error",
    "upstream_fault",
    "throttled",
    "unauthorized",
    "ratelimit_error",
)
