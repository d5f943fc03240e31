"""The pure arithmetic of prepaid credit and spend caps: minor units, marginal burns that add up to the
metered charge of the final counts whatever the steps, thresholds, and the validation of what
accounting sends."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import credit
from billing import pricing as pr
from tollway.errors import InvalidArgument


def _pricing(**fields: object) -> pr.Pricing:
    return pr.Pricing(currency="EUR", **fields)  # type: ignore[arg-type]


UNIT = _pricing(unit_price=Decimal("0.0004"), included_requests=10, recurring_fee=Decimal("49.00"))
TIERS = _pricing(tiers=(pr.Tier(100, Decimal("0.01")), pr.Tier(0, Decimal("0.005"), Decimal("1.00"))))
VOLUME = _pricing(
    tiers=(pr.Tier(100, Decimal("0.01")), pr.Tier(0, Decimal("0.001"))), tier_mode=pr.TierMode.VOLUME
)
PACKAGE = _pricing(package_size=100, package_price=Decimal("2.50"))
PRICINGS = [UNIT, TIERS, VOLUME, PACKAGE]


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("12.34", "EUR", 1234), ("5", "JPY", 5), ("1.234", "KWD", 1234), ("0.01", "USD", 1)],
)
def test_top_up_amounts_in_minor_units(amount: str, currency: str, minor: int) -> None:
    assert credit.parse_top_up(amount, currency) == minor
    assert Decimal(credit.from_minor(minor, currency)) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency", "words"),
    [
        ("-1.00", "EUR", "negative"),
        ("0", "EUR", "positive"),
        ("0.00", "EUR", "positive"),
        ("1.5", "JPY", "fractional digits"),
        ("1.001", "EUR", "fractional digits"),
        ("1e3", "EUR", "decimal amount"),
        ("NaN", "EUR", "decimal amount"),
        ("", "EUR", "required"),
    ],
)
def test_bad_top_up_amounts(amount: str, currency: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        credit.parse_top_up(amount, currency)


@pytest.mark.parametrize(
    ("currency", "words"), [("XYZ", "unknown currency"), ("BGN", "no longer"), ("", "required")]
)
def test_currencies_must_be_active(currency: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        credit.active_currency(currency)


def test_metered_charge_leaves_the_fee_to_the_invoice() -> None:
    # 10 included, 1,000 beyond at 0.0004 = 0.40; the 49.00 fee is not burned.
    assert credit.metered_charge_minor(UNIT, pr.Usage(success=1010)) == 40
    # Graduated: 100 x 0.01 + 50 x 0.005 = 1.25, plus tier 2's flat 1.00.
    assert credit.metered_charge_minor(TIERS, pr.Usage(success=150)) == 225
    # Packages: 201 requests are 3 started packages.
    assert credit.metered_charge_minor(PACKAGE, pr.Usage(success=201)) == 750


def test_a_volume_tier_crossing_credits_back() -> None:
    # 100 requests at 0.01 = 1.00; the 101st moves all 101 to 0.001 = 0.10 (rounded half-even).
    before = credit.metered_charge_minor(VOLUME, pr.Usage(success=100))
    after = credit.metered_charge_minor(VOLUME, pr.Usage(success=101))
    assert (before, after) == (100, 10)
    assert credit.burn_minor(after, before) == -90


@given(
    pricing=st.sampled_from(PRICINGS),
    steps=st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=30),
)
def test_burns_add_up_to_the_charge_of_the_final_counts(pricing: pr.Pricing, steps: list[int]) -> None:
    """However usage arrives (any steps, repeated counts from a replay included), the sum of the burns
    is the metered charge of the final count, exactly."""
    counted, burned, entries = 0, 0, []
    for step in steps:
        counted += step
        charge = credit.metered_charge_minor(pricing, pr.Usage(success=counted))
        amount = credit.burn_minor(charge, burned)
        if amount:
            entries.append(-amount)
        burned = charge
        # A replay of the same counts burns nothing.
        assert credit.burn_minor(credit.metered_charge_minor(pricing, pr.Usage(success=counted)), burned) == 0
    assert -credit.balance_of(entries) == credit.metered_charge_minor(pricing, pr.Usage(success=counted))


@given(
    pricing=st.sampled_from([UNIT, TIERS, PACKAGE]),
    a=st.integers(min_value=0, max_value=100_000),
    b=st.integers(min_value=0, max_value=100_000),
)
def test_burns_never_credit_back_on_monotone_models(pricing: pr.Pricing, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert (
        credit.metered_charge_minor(pricing, pr.Usage(success=high))
        >= credit.metered_charge_minor(pricing, pr.Usage(success=low))
        >= 0
    )


@given(st.lists(st.integers(min_value=-(10**12), max_value=10**12), max_size=200))
def test_a_balance_is_the_exact_sum_of_its_entries(amounts: list[int]) -> None:
    # Integers in minor units: no rounding, whatever the number of entries.
    assert credit.balance_of(amounts) == sum(amounts)
    assert Decimal(credit.from_minor(credit.balance_of(amounts), "EUR")) == sum(
        (Decimal(x).scaleb(-2) for x in amounts), Decimal(0)
    )


def test_refused_at_zero_and_below() -> None:
    assert credit.refused(0) and credit.refused(-1) and not credit.refused(1)


@pytest.mark.parametrize(
    ("used", "limit", "expected"),
    [(0, 10, []), (4, 10, []), (5, 10, [50]), (8, 10, [50, 80]), (10, 10, [50, 80, 100]),
     (11, 10, [50, 80, 100]), (1, 0, [])],
)  # fmt: skip
def test_thresholds_reached(used: int, limit: int, expected: list[int]) -> None:
    assert credit.reached(used, limit) == expected


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=10**9))
def test_thresholds_are_monotone(used: int, limit: int) -> None:
    assert set(credit.reached(used, limit)) <= set(credit.reached(used + 1, limit))


@pytest.mark.parametrize(
    ("kind", "limit", "currency", "expected"),
    [("requests", "1000", "", ("REQUESTS", "1000", "")),
     ("CHARGE", "25.50", "eur", ("CHARGE", "25.50", "EUR")),
     ("REQUESTS", "0", "", ("REQUESTS", "0", ""))],
)  # fmt: skip
def test_caps(kind: str, limit: str, currency: str, expected: tuple[str, str, str]) -> None:
    assert credit.parse_cap(kind, limit, currency) == expected


@pytest.mark.parametrize(
    ("kind", "limit", "currency", "words"),
    [
        ("REQUESTS", "-1", "", "negative"),
        ("CHARGE", "-0.01", "EUR", "negative"),
        ("REQUESTS", "1.5", "", "whole number"),
        ("REQUESTS", "10", "EUR", "no currency"),
        ("CHARGE", "10", "XYZ", "unknown currency"),
        ("CHARGE", "10.001", "EUR", "fractional digits"),
        ("SECONDS", "10", "", "CHARGE or REQUESTS"),
    ],
)
def test_bad_caps(kind: str, limit: str, currency: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        credit.parse_cap(kind, limit, currency)
