"""The plan commands' options and parsers (`tollway plan create|update`): limits and pricing, as typed
on the command line, into the catalog proto."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated

import typer

from tollway.catalog.v1 import catalog_pb2 as cat
from tollway.cli_support import parse_time, typer_parser

_UNBOUNDED_TIER = ("0", "inf", "*")


def parse_money(text: str) -> str:
    """A non-negative decimal amount, kept as typed (the server stores decimal strings, never floats)."""
    value = text.strip()
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"invalid amount {text!r}: use a decimal such as 49.00 or 0.0004") from None
    if not amount.is_finite() or amount < 0 or "e" in value.lower():
        raise ValueError(f"invalid amount {text!r}: use a non-negative decimal such as 49.00")
    return value


def parse_tier(text: str) -> cat.PriceTier:
    """'UP_TO:UNIT_PRICE[:FLAT_FEE]'; UP_TO 0 (or 'inf', '*') is the unbounded last tier."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 3:
        raise ValueError(
            f"invalid tier {text!r}: use UP_TO:UNIT_PRICE or UP_TO:UNIT_PRICE:FLAT_FEE, e.g. 10000:0.001 "
            "or 0:0.0005:10.00"
        )
    up_to_text = parts[0].strip().lower()
    if up_to_text in _UNBOUNDED_TIER:
        up_to = 0
    elif up_to_text.isdigit():
        up_to = int(up_to_text)
    else:
        raise ValueError(f"invalid tier {text!r}: UP_TO must be a whole number (0 for unbounded)")
    flat_fee = parse_money(parts[2]) if len(parts) == 3 else ""
    return cat.PriceTier(up_to=up_to, unit_price=parse_money(parts[1]), flat_fee=flat_fee)


_money_param = typer_parser(parse_money)
_tier_param = typer_parser(parse_tier)

# --------------------------------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------------------------------


class QuotaPolicyChoice(StrEnum):
    hard = "hard"
    soft = "soft"


_QUOTA_POLICIES = {
    QuotaPolicyChoice.hard: cat.QUOTA_POLICY_HARD,
    QuotaPolicyChoice.soft: cat.QUOTA_POLICY_SOFT,
}

_LIMITS = "Limits (0 = no limit)"
_PRICING = "Pricing"

PlanRef = Annotated[str, typer.Argument(help="Plan id or name.")]
PerSecond = Annotated[int | None, typer.Option("--per-second", min=0, rich_help_panel=_LIMITS)]
PerMinute = Annotated[int | None, typer.Option("--per-minute", min=0, rich_help_panel=_LIMITS)]
PerHour = Annotated[int | None, typer.Option("--per-hour", min=0, rich_help_panel=_LIMITS)]
PerDay = Annotated[int | None, typer.Option("--per-day", min=0, rich_help_panel=_LIMITS)]
MonthlyQuota = Annotated[
    int | None,
    typer.Option("--monthly-quota", min=0, help="Requests per billing period.", rich_help_panel=_LIMITS),
]
QuotaPolicyOpt = Annotated[
    QuotaPolicyChoice | None,
    typer.Option(
        "--quota-policy",
        help="hard: refuse beyond the quota; soft: admit and bill as overage.",
        rich_help_panel=_LIMITS,
    ),
]
Currency = Annotated[
    str | None, typer.Option("--currency", help="ISO 4217 code, e.g. EUR.", rich_help_panel=_PRICING)
]
Fee = Annotated[
    str | None,
    typer.Option("--fee", parser=_money_param, help="Recurring fee per period.", rich_help_panel=_PRICING),
]
Included = Annotated[
    int | None,
    typer.Option("--included", min=0, help="Requests covered by the fee.", rich_help_panel=_PRICING),
]
UnitPrice = Annotated[
    str | None,
    typer.Option(
        "--unit-price",
        parser=_money_param,
        help="Price per request beyond the included ones.",
        rich_help_panel=_PRICING,
    ),
]
Tiers = Annotated[
    list[cat.PriceTier] | None,
    typer.Option(
        "--tier",
        parser=_tier_param,
        metavar="UP_TO:PRICE[:FLAT_FEE]",
        help="Tier, repeatable, in order; UP_TO 0 is the unbounded last tier; FLAT_FEE is charged once "
        "the tier is reached.",
        rich_help_panel=_PRICING,
    ),
]


class TierModeChoice(StrEnum):
    graduated = "graduated"
    volume = "volume"


_TIER_MODES = {TierModeChoice.graduated: cat.TIER_MODE_GRADUATED, TierModeChoice.volume: cat.TIER_MODE_VOLUME}

TierModeOpt = Annotated[
    TierModeChoice | None,
    typer.Option(
        "--tier-mode",
        help="graduated: each tier prices its own requests; volume: the tier reached prices them all.",
        rich_help_panel=_PRICING,
    ),
]
PackageSize = Annotated[
    int | None,
    typer.Option(
        "--package-size", min=0, help="Requests per package (0 = no packages).", rich_help_panel=_PRICING
    ),
]
PackagePrice = Annotated[
    str | None,
    typer.Option(
        "--package-price",
        parser=_money_param,
        help="Price per started package of --package-size requests.",
        rich_help_panel=_PRICING,
    ),
]
TrialDays = Annotated[
    int | None,
    typer.Option(
        "--trial-days", min=0, help="Free days from a subscription's start.", rich_help_panel=_PRICING
    ),
]
OveragePrice = Annotated[
    str | None,
    typer.Option(
        "--overage-price",
        parser=_money_param,
        help="Price per request beyond a soft quota.",
        rich_help_panel=_PRICING,
    ),
]
MinimumCharge = Annotated[
    str | None,
    typer.Option(
        "--minimum-charge", parser=_money_param, help="Least charge per period.", rich_help_panel=_PRICING
    ),
]
Description = Annotated[str | None, typer.Option("--description")]


def apply_limits(
    limits: cat.PlanLimits,
    per_second: int | None,
    per_minute: int | None,
    per_hour: int | None,
    per_day: int | None,
    monthly_quota: int | None,
    quota_policy: QuotaPolicyChoice | None,
) -> bool:
    """Sets the given limits on `limits`; True when any was given."""
    values = {
        "requests_per_second": per_second,
        "requests_per_minute": per_minute,
        "requests_per_hour": per_hour,
        "requests_per_day": per_day,
        "monthly_quota": monthly_quota,
    }
    changed = False
    for field, value in values.items():
        if value is not None:
            setattr(limits, field, value)
            changed = True
    if quota_policy is not None:
        limits.quota_policy = _QUOTA_POLICIES[quota_policy]
        changed = True
    return changed


def apply_pricing(
    pricing: cat.PlanPricing,
    currency: str | None = None,
    fee: str | None = None,
    included: int | None = None,
    unit_price: str | None = None,
    tiers: list[cat.PriceTier] | None = None,
    overage_price: str | None = None,
    minimum_charge: str | None = None,
    tier_mode: TierModeChoice | None = None,
    package_size: int | None = None,
    package_price: str | None = None,
    trial_days: int | None = None,
) -> bool:
    """Sets the given pricing fields on `pricing` (given tiers replace all tiers); True when any was given."""
    values = {
        "currency": currency.strip().upper() if currency is not None else None,
        "recurring_fee": fee,
        "included_requests": included,
        "unit_price": unit_price,
        "overage_price": overage_price,
        "minimum_charge": minimum_charge,
        "tier_mode": _TIER_MODES[tier_mode] if tier_mode is not None else None,
        "package_size": package_size,
        "package_price": package_price,
        "trial_days": trial_days,
    }
    changed = False
    for field, value in values.items():
        if value is not None:
            setattr(pricing, field, value)
            changed = True
    if tiers:
        del pricing.tiers[:]
        pricing.tiers.extend(tiers)
        changed = True
    return changed


_VERSIONS = "When a change of limits or pricing takes effect (default: each subscription's next period)"
EffectiveNow = Annotated[
    bool,
    typer.Option(
        "--now",
        help="From the next whole minute, for every subscription (open periods are prorated).",
        rich_help_panel=_VERSIONS,
    ),
]
EffectiveAt = Annotated[
    datetime | None,
    typer.Option(
        "--at",
        parser=typer_parser(parse_time),
        metavar="TIME",
        help="From this whole minute (ISO 8601, UTC unless an offset is given), e.g. 2026-12-15T00:00Z.",
        rich_help_panel=_VERSIONS,
    ),
]
