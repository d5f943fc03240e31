"""Prepaid credit, spend caps and alert thresholds as pure arithmetic (no database).

Credit is held in the currency's minor units as an integer, so a balance is an exact sum of ledger
entries whatever their number. Usage burns credit *marginally*: what a subscription's counted usage in
a period costs now (its metered lines at the plan's prices, each rounded once as on an invoice) minus
what was already burned for that period. The burns of a period therefore add up to exactly the
metered charge of its final counts, whatever the number of steps, and burning the same counts twice
burns nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal

from billing import pricing as pr
from tollway.errors import InvalidArgument
from tollway.money import is_currency, minor_units, money_text, parse_money, retired_note

DEFAULT_THRESHOLDS = (50, 80, 100)
# Kinds of ledger entries, spend caps, scopes and alerts.
TOP_UP = "TOP_UP"
BURN = "BURN"
CHARGE = "CHARGE"
REQUESTS = "REQUESTS"
CAP_KINDS = (CHARGE, REQUESTS)
APPLICATION = "APPLICATION"
SUBSCRIPTION = "SUBSCRIPTION"
SCOPES = (APPLICATION, SUBSCRIPTION)
# Refusal reasons the gateway answers with (keymgr/decision.py).
CREDIT_EXHAUSTED = "credit_exhausted"
SPEND_CAP_REACHED = "spend_cap_reached"
# The largest request count a cap may name (a BigInteger-safe bound).
MAX_CAP_REQUESTS = 10**15


def active_currency(currency: str) -> str:
    """`currency` when it is an ISO 4217 code in use; InvalidArgument otherwise."""
    currency = currency.strip().upper() if currency else ""
    if not currency:
        raise InvalidArgument("currency is required (an ISO 4217 code such as EUR)")
    note = retired_note(currency)
    if note:
        raise InvalidArgument(note)
    if not is_currency(currency):
        raise InvalidArgument(f"unknown currency {currency!r}; expected an ISO 4217 code such as EUR")
    return currency


def to_minor(amount: Decimal, currency: str, field: str = "amount") -> int:
    """`amount` in minor units; InvalidArgument when it has digits below the currency's minor unit."""
    scaled = amount.scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise InvalidArgument(
            f"{field} {money_text(amount)} has more fractional digits than {currency} "
            f"({minor_units(currency)})"
        )
    return int(scaled)


def from_minor(minor: int, currency: str) -> str:
    """Canonical text of `minor` units of `currency` ("12.50")."""
    return money_text(Decimal(minor).scaleb(-minor_units(currency)))


def parse_top_up(text: str, currency: str) -> int:
    """A top-up amount in minor units: a positive plain decimal in the currency's precision."""
    if not text:
        raise InvalidArgument('amount is required, e.g. "100.00"')
    amount = parse_money(text, "amount")
    if amount <= 0:
        raise InvalidArgument(f"amount must be positive, got {text!r}")
    return to_minor(amount, currency)


def metered_pricing(pricing: pr.Pricing) -> pr.Pricing:
    """The usage-dependent part of a plan's pricing: no recurring fee, minimum charge or trial (the fee
    and the minimum are billed on the invoice; credit pays for what is used)."""
    return replace(pricing, recurring_fee=Decimal(0), minimum_charge=Decimal(0), trial_days=0)


def metered_charge_minor(pricing: pr.Pricing, usage: pr.Usage) -> int:
    """The metered charge of `usage` (lines rounded once each, as on an invoice), in minor units."""
    lines = pr.SegmentPricer(metered_pricing(pricing)).price(usage)
    return to_minor(pr.charged_total(lines), pricing.currency, "charge")


def billable_requests(pricing: pr.Pricing, usage: pr.Usage) -> int:
    """Requests a plan bills: its billable classes plus the soft-quota overage."""
    return pr.billable_count(pricing, usage) + usage.overage


def burn_minor(charge_now_minor: int, burned_minor: int) -> int:
    """What a burn takes from the balance (negative: a volume tier lowered the charge, credited back)."""
    return charge_now_minor - burned_minor


def balance_of(amounts: Iterable[int]) -> int:
    """A ledger's balance: the exact sum of its entries (top-ups positive, burns negative)."""
    return sum(amounts)


def refused(balance_minor: int) -> bool:
    """A prepaid plan admits requests only while there is credit left."""
    return balance_minor <= 0


def parse_thresholds(values: Sequence[int]) -> tuple[int, ...]:
    thresholds = tuple(sorted(set(values))) or DEFAULT_THRESHOLDS
    for value in thresholds:
        if not 1 <= value <= 100:
            raise InvalidArgument(f"alert thresholds are percentages from 1 to 100, got {value}")
    return thresholds


def reached(
    used: Decimal | int, limit: Decimal | int, thresholds: Sequence[int] = DEFAULT_THRESHOLDS
) -> list[int]:
    """The thresholds (percent of `limit`) that `used` has reached; none when there is no limit."""
    if limit <= 0:
        return []
    return [t for t in thresholds if used * 100 >= limit * t]


def parse_cap(kind: str, limit: str, currency: str) -> tuple[str, str, str]:
    """(kind, canonical limit, currency) of a spend cap, or InvalidArgument."""
    kind = kind.strip().upper()
    if kind not in CAP_KINDS:
        raise InvalidArgument(f"cap kind must be CHARGE or REQUESTS, got {kind!r}")
    text = limit.strip()
    if text.startswith("-"):
        raise InvalidArgument(f"cap limit must not be negative, got {text!r}")
    if kind == REQUESTS:
        if not text.isdigit() or int(text) > MAX_CAP_REQUESTS:
            raise InvalidArgument(f"a REQUESTS cap is a whole number of requests, got {text!r}")
        if currency:
            raise InvalidArgument("a REQUESTS cap takes no currency")
        return kind, str(int(text)), ""
    currency = active_currency(currency)
    amount = parse_money(text, "limit")
    if not text:
        raise InvalidArgument("limit is required")
    to_minor(amount, currency, "limit")
    return kind, money_text(amount), currency


def paid_and_due(total: str, currency: str, paid_minor: int) -> tuple[str, str]:
    """(paid from credit, amount due) of an invoice total, as decimal text in the currency's unit."""
    total_minor = to_minor(Decimal(total), currency, "total")
    paid_minor = max(0, min(paid_minor, total_minor))
    return from_minor(paid_minor, currency), from_minor(total_minor - paid_minor, currency)
