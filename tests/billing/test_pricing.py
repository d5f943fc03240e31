"""Pricing (pure): table-driven expected totals and hypothesis properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import pricing as pr
from tollway.errors import FailedPrecondition, InvalidArgument

D = Decimal


def plan(currency: str = "EUR", **fields: object) -> pr.Pricing:
    converted: dict[str, object] = {}
    for name, value in fields.items():
        if name == "tiers":
            converted[name] = tuple(pr.Tier(up_to, D(price)) for up_to, price in value)  # type: ignore[attr-defined]
        elif isinstance(value, str):
            converted[name] = D(value)
        else:
            converted[name] = value
    return pr.Pricing(currency=currency, **converted)  # type: ignore[arg-type]


GRADUATED = [(10_000, "0.01"), (1_000_000, "0.005"), (0, "0.001")]

CASES = [
    # (id, pricing, usage, share, expected total, expected charged kinds)
    ("flat fee only", plan(recurring_fee="49.00"), pr.Usage(success=5000), Fraction(1), "49.00",
     ["FEE", "USAGE"]),
    ("unit price", plan(unit_price="0.002"), pr.Usage(success=12_345), Fraction(1), "24.69", ["USAGE"]),
    (
        "sub-cent unit price, EUR",
        plan(unit_price="0.0004"),
        pr.Usage(success=1_234_567),
        Fraction(1),
        "493.83",  # 493.8268 → half-even to cents
        ["USAGE"],
    ),
    (
        "fee + included + unit",
        plan(recurring_fee="10.00", included_requests=1000, unit_price="0.01"),
        pr.Usage(success=1500),
        Fraction(1),
        "15.00",
        ["FEE", "USAGE"],
    ),
    (
        "included covers all usage",
        plan(recurring_fee="10.00", included_requests=1000, unit_price="0.01"),
        pr.Usage(success=999),
        Fraction(1),
        "10.00",
        ["FEE", "USAGE"],
    ),
    (
        "graduated over three tiers",
        plan(tiers=GRADUATED),
        pr.Usage(success=1_500_000),
        Fraction(1),
        # 10,000 x 0.01 + 990,000 x 0.005 + 500,000 x 0.001
        "5550.00",
        ["TIER", "TIER", "TIER"],
    ),
    (
        "graduated beyond included",
        plan(included_requests=5000, tiers=GRADUATED),
        pr.Usage(success=20_000),
        Fraction(1),
        "125.00",  # 15,000 beyond: 10,000 x 0.01 + 5,000 x 0.005
        ["TIER", "TIER"],
    ),
    (
        "minimum charge tops up",
        plan(unit_price="0.001", minimum_charge="25.00"),
        pr.Usage(success=1000),
        Fraction(1),
        "25.00",
        ["USAGE", "MINIMUM"],
    ),
    (
        "minimum charge already reached",
        plan(unit_price="0.01", minimum_charge="5.00"),
        pr.Usage(success=1000),
        Fraction(1),
        "10.00",
        ["USAGE"],
    ),
    (
        "soft quota overage",
        plan(recurring_fee="20.00", included_requests=1000, overage_price="0.05"),
        pr.Usage(success=1000, overage=30),
        Fraction(1),
        "21.50",
        ["FEE", "OVERAGE"],
    ),
    ("zero-price plan", plan(), pr.Usage(success=10**9, throttled=5), Fraction(1), "0.00", ["USAGE"]),
    ("throttled and refused never bill", plan(unit_price="1.00"),
     pr.Usage(success=2, throttled=100, unauthorized=7, ratelimit_error=1), Fraction(1), "2.00", ["USAGE"]),
    ("client errors not billable by default", plan(unit_price="1.00"),
     pr.Usage(success=2, client_error=3, upstream_fault=4), Fraction(1), "2.00", ["USAGE"]),
    ("billable classes from the plan", plan(unit_price="1.00", billable_classes=("success", "client_error")),
     pr.Usage(success=2, client_error=3, upstream_fault=4), Fraction(1), "5.00", ["USAGE"]),
    ("JPY: no minor unit", plan("JPY", unit_price="0.3"), pr.Usage(success=5), Fraction(1), "2", ["USAGE"]),
    ("JPY half-even down", plan("JPY", unit_price="0.5"), pr.Usage(success=5), Fraction(1), "2", ["USAGE"]),
    ("JPY half-even up", plan("JPY", unit_price="0.5"), pr.Usage(success=7), Fraction(1), "4", ["USAGE"]),
    ("KWD: three minor units", plan("KWD", unit_price="0.0004"), pr.Usage(success=1_234_567), Fraction(1),
     "493.827", ["USAGE"]),
    ("BHD fee + sub-fils price", plan("BHD", recurring_fee="5.125", unit_price="0.00015"),
     pr.Usage(success=10_001), Fraction(1), "6.625", ["FEE", "USAGE"]),  # 1.50015 → 1.500
    ("prorated fee half month", plan(recurring_fee="30.00"), pr.Usage(), Fraction(15, 30), "15.00", ["FEE"]),
    ("prorated fee rounds half-even", plan(recurring_fee="10.00"), pr.Usage(), Fraction(1, 3), "3.33",
     ["FEE"]),
    ("prorated included allowance floors", plan(included_requests=1000, unit_price="0.01"),
     pr.Usage(success=500), Fraction(1, 3), "1.67", ["USAGE"]),  # allowance 333 → 167 x 0.01
]  # fmt: skip


@pytest.mark.parametrize(
    ("pricing", "usage", "share", "total", "kinds"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_price_table(
    pricing: pr.Pricing, usage: pr.Usage, share: Fraction, total: str, kinds: list[str]
) -> None:
    lines = pr.price_segment(pricing, usage, share)
    assert pr.charged_total(lines) == D(total)
    assert str(pr.charged_total(lines) + pr.round_amount(D(0), pricing.currency)) == total
    assert [line.kind for line in lines if line.charged] == kinds


def test_informational_lines_are_never_charged() -> None:
    lines = pr.price_segment(
        plan(unit_price="1.00"), pr.Usage(success=1, throttled=3, unauthorized=2, client_error=4)
    )
    info = {line.kind: line for line in lines if not line.charged}
    assert info["INFO_THROTTLED"].quantity == 3
    assert info["INFO_REFUSED"].quantity == 2
    assert info["INFO_NON_BILLABLE"].quantity == 4
    assert all(line.amount == 0 for line in info.values())


def test_tier_lines_show_their_ranges() -> None:
    lines = pr.price_segment(plan(tiers=GRADUATED), pr.Usage(success=2_000_000))
    assert [line.quantity for line in lines] == [10_000, 990_000, 1_000_000]
    assert "10,001-1,000,000" in lines[1].description


def test_unsupported_currency_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="currency"):
        pr.price_segment(plan("XXX", unit_price="1"), pr.Usage(success=1))


def test_pricing_snapshot_round_trips() -> None:
    original = plan(
        "KWD", recurring_fee="1.250", included_requests=7, tiers=GRADUATED, minimum_charge="2.000"
    )
    assert pr.Pricing.from_json(original.to_json()) == original


# --- properties -------------------------------------------------------------------------------------

currencies = st.sampled_from(["EUR", "JPY", "KWD", "USD", "BHD", "CLP"])
prices = st.decimals(min_value=0, max_value=100, places=6, allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=10**9)
usages = st.builds(pr.Usage, success=counts, overage=counts, client_error=counts, throttled=counts)


@st.composite
def pricings(draw: st.DrawFn) -> pr.Pricing:
    currency = draw(currencies)
    digits = pr.minor_units(currency)
    fee = draw(st.decimals(min_value=0, max_value=1000, places=digits, allow_nan=False, allow_infinity=False))
    tiers: tuple[pr.Tier, ...] = ()
    unit = D(0)
    if draw(st.booleans()):
        bounds = sorted(set(draw(st.lists(st.integers(1, 10**7), max_size=4))))
        tier_prices = draw(st.lists(prices, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
        tiers = tuple(pr.Tier(b, p) for b, p in zip([*bounds, 0], tier_prices, strict=True))
    else:
        unit = draw(prices)
    return pr.Pricing(
        currency=currency,
        recurring_fee=fee,
        included_requests=draw(st.integers(0, 10**6)),
        unit_price=unit,
        tiers=tiers,
        overage_price=draw(prices),
        minimum_charge=draw(st.decimals(min_value=0, max_value=500, places=digits, allow_nan=False,
                                        allow_infinity=False)),
    )  # fmt: skip


shares = st.fractions(min_value=0, max_value=1, max_denominator=31 * 86400)


@given(pricings(), usages, shares)
def test_lines_are_never_negative_and_rounded_once_per_line(
    pricing: pr.Pricing, usage: pr.Usage, share: Fraction
) -> None:
    lines = pr.price_segment(pricing, usage, share)
    digits = pr.minor_units(pricing.currency)
    for line in lines:
        assert line.amount >= 0
        exponent = line.amount.as_tuple().exponent
        assert isinstance(exponent, int) and -exponent == digits  # every line carries the minor unit
        if line.kind in ("USAGE", "TIER", "OVERAGE"):
            # Rounded once from the exact product: within half a minor unit of it.
            assert abs(line.amount - line.quantity * line.unit_price) <= D(1).scaleb(-digits) / 2
    # The total is the sum of the rounded lines, not a rounding of the exact sum.
    assert pr.charged_total(lines) == sum((line.amount for line in lines if line.charged), D(0))


@given(pricings(), counts, st.integers(0, 10**7))
def test_more_usage_never_costs_less(pricing: pr.Pricing, base: int, extra: int) -> None:
    less = pr.charged_total(pr.price_segment(pricing, pr.Usage(success=base)))
    more = pr.charged_total(pr.price_segment(pricing, pr.Usage(success=base + extra)))
    assert more >= less


@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=5, unique=True), counts)
def test_tier_quantities_partition_the_usage(bounds: list[int], quantity: int) -> None:
    tiers = [pr.Tier(b, D(1)) for b in sorted(bounds)] + [pr.Tier(0, D(1))]
    parts = pr.tier_quantities(tiers, quantity)
    assert sum(parts) == quantity
    assert all(part >= 0 for part in parts)
    # Tiers fill in order: a later tier has requests only once every earlier one is full.
    widths = [b - a for a, b in zip([0, *sorted(bounds)], sorted(bounds), strict=False)]
    for i, part in enumerate(parts[1:], start=1):
        if part:
            assert parts[i - 1] == widths[i - 1]


# --- exactness of large amounts -----------------------------------------------------------------------


def reference_round(value: Fraction, currency: str) -> D:
    """Half-even rounding of an exact rational to the currency's minor unit, by integer arithmetic."""
    digits = pr.minor_units(currency)
    return D(round(value * 10**digits)).scaleb(-digits)


def test_a_large_product_is_rounded_once() -> None:
    # 226796097.9614981720 x 638,290,958,151 = 144,761,898,672,752,726,113.3149999720 exactly (31
    # digits): rounded once that is ...113.31; through a 28-digit product (...113.3150) it was ...113.32.
    lines = pr.price_segment(plan(unit_price="226796097.9614981720"), pr.Usage(success=638_290_958_151))
    assert pr.charged_total(lines) == D("144761898672752726113.31")


big_prices = st.decimals(min_value=0, max_value=10**9, places=10, allow_nan=False, allow_infinity=False)
big_counts = st.integers(min_value=0, max_value=10**13)


@given(st.sampled_from(["EUR", "JPY", "KWD"]), big_prices, big_counts)
def test_usage_lines_equal_the_exact_product_rounded_once(currency: str, price: D, count: int) -> None:
    lines = pr.price_segment(plan(currency, unit_price=str(price)), pr.Usage(success=count))
    assert pr.charged_total(lines) == reference_round(Fraction(price) * count, currency)


@given(st.decimals(min_value=0, max_value=10**9, places=2), shares)
def test_prorated_fees_equal_the_exact_share_rounded_once(fee: D, share: Fraction) -> None:
    lines = pr.price_segment(plan(recurring_fee=str(fee)), pr.Usage(), share)
    charged = pr.charged_total(lines)
    assert charged == (reference_round(Fraction(fee) * share, "EUR") if fee else 0)


# --- a pricing is checked when it is built ------------------------------------------------------------

GOOD = {"currency": "EUR", "unit_price": "0.01", "tiers": [], "billable_classes": ["success"]}
BAD_RECORDS = [
    ("NaN unit price", {"unit_price": "NaN"}, "pricing.unit_price must be a finite amount"),
    ("infinite fee", {"recurring_fee": "Infinity"}, "pricing.recurring_fee must be a finite amount"),
    ("negative price", {"unit_price": "-0.01"}, "pricing.unit_price must not be negative"),
    ("negative minimum", {"minimum_charge": "-5"}, "pricing.minimum_charge must not be negative"),
    ("negative allowance", {"included_requests": -1}, "pricing.included_requests must not be negative"),
    ("float money", {"recurring_fee": 0.1}, "unreadable"),
    ("not a number", {"overage_price": "ten"}, "unreadable"),
    (
        "descending tiers",
        {"unit_price": "0", "tiers": [{"up_to": 100, "unit_price": "1"}, {"up_to": 50, "unit_price": "1"},
                                      {"up_to": 0, "unit_price": "1"}]},
        "pricing.tiers[1].up_to (50) must exceed",
    ),
    (
        "equal tier bounds",
        {"unit_price": "0", "tiers": [{"up_to": 100, "unit_price": "1"}, {"up_to": 100, "unit_price": "1"},
                                      {"up_to": 0, "unit_price": "1"}]},
        "pricing.tiers[1].up_to (100) must exceed",
    ),
    ("bounded last tier", {"unit_price": "0", "tiers": [{"up_to": 100, "unit_price": "1"}]},
     "the last tier, must be unbounded"),
    ("unbounded middle tier",
     {"unit_price": "0", "tiers": [{"up_to": 0, "unit_price": "1"}, {"up_to": 0, "unit_price": "1"}]},
     "pricing.tiers[0] is unbounded"),
    ("negative tier price",
     {"unit_price": "0", "tiers": [{"up_to": 10, "unit_price": "-1"}, {"up_to": 0, "unit_price": "1"}]},
     "pricing.tiers[0].unit_price must not be negative"),
    ("unknown class", {"billable_classes": ["throttled"]}, "pricing.billable_classes[0]"),
    ("unknown currency", {"currency": "XXX"}, "unknown currency 'XXX'"),
    ("priced without currency", {"currency": ""}, "unknown currency ''"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"), [case[1:] for case in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS]
)
def test_a_bad_stored_record_is_refused_naming_it(change: dict[str, object], message: str) -> None:
    with pytest.raises(FailedPrecondition) as info:
        pr.Pricing.from_json({**GOOD, **change}, source="billed segment 7")
    assert info.value.message.startswith("billed segment 7 cannot be priced: ")
    assert message in info.value.message


def test_a_bad_pricing_built_directly_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="finite"):
        pr.Pricing("EUR", unit_price=D("NaN"))
    with pytest.raises(InvalidArgument, match="negative"):
        pr.Pricing("EUR", recurring_fee=D("-1"))
    with pytest.raises(InvalidArgument, match="must exceed"):
        pr.Pricing("EUR", tiers=(pr.Tier(10, D(1)), pr.Tier(5, D(1)), pr.Tier(0, D(1))))
    assert pr.Pricing("").is_free  # a free plan needs no currency


def test_a_good_record_still_reads() -> None:
    assert pr.Pricing.from_json(GOOD) == pr.Pricing("EUR", unit_price=D("0.01"))


def test_a_snapshot_in_a_retired_currency_still_prices() -> None:
    # A December 2025 segment in BGN, re-read for an adjustment after Bulgaria adopted the euro.
    snapshot = pr.Pricing("BGN", unit_price=D("0.005")).to_json()
    lines = pr.price_segment(pr.Pricing.from_json(snapshot), pr.Usage(success=1001))
    assert pr.charged_total(lines) == D("5.00")  # 5.005 → half-even to 5.00
