"""Price models beside unit pricing (pure): volume tiers, flat fees per tier, packages, free trials.

Expected totals are worked out by hand in the comments; the published examples are Stripe's
(tiered pricing: 1-5 at 7 USD, 6-10 at 6.50, 11+ at 6; and the older 5/4/3/2/1 USD table) and Lago's
(volume with a 10 USD flat fee per tier; 5 USD per 100 requests with the first 100 free)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import pricing as pr
from tollway.errors import InvalidArgument
from tollway.vocabulary import TierMode

D = Decimal
GRADUATED, VOLUME = TierMode.GRADUATED, TierMode.VOLUME


def tiers(*spec: tuple[int, str] | tuple[int, str, str]) -> tuple[pr.Tier, ...]:
    return tuple(pr.Tier(t[0], D(t[1]), D(t[2]) if len(t) == 3 else D(0)) for t in spec)  # type: ignore[misc]


STRIPE_FONTS = tiers((5, "7"), (10, "6.5"), (0, "6"))
STRIPE_LEGACY = tiers((5, "5"), (10, "4"), (15, "3"), (20, "2"), (0, "1"))
LAGO_VOLUME = tiers(
    (10_000, "0.0010", "10"), (50_000, "0.0008", "10"), (100_000, "0.0006", "10"), (0, "0.0004", "10")
)


def total(pricing: pr.Pricing, requests: int, share: Fraction = Fraction(1)) -> str:
    lines = pr.price_segment(pricing, pr.Usage(success=requests), share)
    return str(pr.charged_total(lines) + pr.round_amount(D(0), pricing.currency))


def usd(**fields: object) -> pr.Pricing:
    return pr.Pricing("USD", **fields)  # type: ignore[arg-type]


CASES = [
    # Stripe, volume: the whole quantity at the reached tier's price.
    ("stripe volume 1", usd(tiers=STRIPE_FONTS, tier_mode=VOLUME), 1, "7.00"),
    ("stripe volume 5 (top of tier 1)", usd(tiers=STRIPE_FONTS, tier_mode=VOLUME), 5, "35.00"),
    ("stripe volume 6 (tier 2 reached)", usd(tiers=STRIPE_FONTS, tier_mode=VOLUME), 6, "39.00"),
    ("stripe volume 20", usd(tiers=STRIPE_FONTS, tier_mode=VOLUME), 20, "120.00"),
    ("stripe volume 25", usd(tiers=STRIPE_FONTS, tier_mode=VOLUME), 25, "150.00"),
    # The same tiers graduated: 5 x 7 + 1 x 6.5 = 41.50; 35 + 32.50 + 10 x 6 = 127.50; + 5 x 6 = 157.50.
    ("stripe graduated 5", usd(tiers=STRIPE_FONTS), 5, "35.00"),
    ("stripe graduated 6", usd(tiers=STRIPE_FONTS), 6, "41.50"),
    ("stripe graduated 20", usd(tiers=STRIPE_FONTS), 20, "127.50"),
    ("stripe graduated 25", usd(tiers=STRIPE_FONTS), 25, "157.50"),
    # Stripe's 5/4/3/2/1 table: volume 6 → 24 (less than 5 → 25), 20 → 40, 25 → 25; graduated 6 → 29.
    ("stripe legacy volume 5", usd(tiers=STRIPE_LEGACY, tier_mode=VOLUME), 5, "25.00"),
    ("stripe legacy volume 6", usd(tiers=STRIPE_LEGACY, tier_mode=VOLUME), 6, "24.00"),
    ("stripe legacy volume 20", usd(tiers=STRIPE_LEGACY, tier_mode=VOLUME), 20, "40.00"),
    ("stripe legacy volume 25", usd(tiers=STRIPE_LEGACY, tier_mode=VOLUME), 25, "25.00"),
    ("stripe legacy graduated 6", usd(tiers=STRIPE_LEGACY), 6, "29.00"),
    # Lago, volume with a 10 USD flat fee per tier: 65,000 x 0.0006 + 10 = 49.
    ("lago volume 65,000", usd(tiers=LAGO_VOLUME, tier_mode=VOLUME), 65_000, "49.00"),
    # Boundaries: 10,000 is still tier 1 (10 + 10); 10,001 reaches tier 2 (8.0008 + 10 → 18.00).
    ("lago volume at the bound", usd(tiers=LAGO_VOLUME, tier_mode=VOLUME), 10_000, "20.00"),
    ("lago volume one past the bound", usd(tiers=LAGO_VOLUME, tier_mode=VOLUME), 10_001, "18.00"),
    # The same tiers graduated, a flat fee for every tier reached: 10 + 10,000 x 0.001, then 10 +
    # 1 x 0.0008 → 20.00 + 10.0008 = 30.0008 → 30.00.
    ("lago tiers graduated at the bound", usd(tiers=LAGO_VOLUME), 10_000, "20.00"),
    ("lago tiers graduated one past", usd(tiers=LAGO_VOLUME), 10_001, "30.00"),
    # 65,000 graduated: tier 1: 10,000 x 0.001 + 10 = 20; tier 2: 40,000 x 0.0008 + 10 = 42;
    # tier 3: 15,000 x 0.0006 + 10 = 19; total 81.
    ("lago tiers graduated 65,000", usd(tiers=LAGO_VOLUME), 65_000, "81.00"),
    ("nothing used, no flat fee", usd(tiers=LAGO_VOLUME), 0, "0.00"),
    ("nothing used, volume", usd(tiers=LAGO_VOLUME, tier_mode=VOLUME), 0, "0.00"),
    # Lago, packages: 5 USD per 100 requests, the first 100 free: 201 → 0 + 5 + 5 = 10.
    ("lago package 201", usd(included_requests=100, package_size=100, package_price=D("5")), 201, "10.00"),
    ("package at an exact multiple", usd(package_size=100, package_price=D("5")), 300, "15.00"),
    ("package one past a multiple", usd(package_size=100, package_price=D("5")), 301, "20.00"),
    ("package: one request starts one", usd(package_size=1000, package_price=D("2.50")), 1, "2.50"),
    ("package: none used", usd(package_size=1000, package_price=D("2.50")), 0, "0.00"),
    # Sub-cent package price, rounded once per line: 3 packages x 0.0125 = 0.0375 → 0.04.
    ("package rounded once", usd(package_size=10, package_price=D("0.0125")), 25, "0.04"),
    # Included requests come first, with every model: 1,000 included, 1,006 used → 6 beyond.
    ("volume beyond the included", usd(included_requests=1000, tiers=STRIPE_FONTS, tier_mode=VOLUME), 1006,
     "39.00"),
    # Prorated allowance (half the period: 500 of 1,000 included), then packages: 1,100 - 500 = 600
    # beyond, 6 packages of 100 at 1.00.
    ("package with a prorated allowance", usd(included_requests=1000, package_size=100, package_price=D("1")),
     1100, "6.00", Fraction(1, 2)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_price_model_table(case: tuple[object, ...]) -> None:
    _, pricing, requests, expected, *share = case
    assert isinstance(pricing, pr.Pricing) and isinstance(requests, int)
    assert total(pricing, requests, *share) == expected  # type: ignore[arg-type]


def test_volume_lines_name_the_tier_and_charge_its_flat_fee_once() -> None:
    lines = pr.price_segment(usd(tiers=LAGO_VOLUME, tier_mode=VOLUME), pr.Usage(success=65_000))
    assert [(line.kind, line.quantity, line.unit_price, line.amount) for line in lines] == [
        ("TIER", 65_000, D("0.0006"), D("39.00")),
        ("TIER_FLAT", 1, D("10"), D("10.00")),
    ]
    assert "volume tier 3 (50,001-100,000)" in lines[0].description
    assert "every request" in lines[0].description


def test_graduated_flat_fees_come_with_each_tier_reached() -> None:
    lines = pr.price_segment(usd(tiers=LAGO_VOLUME), pr.Usage(success=10_001))
    assert [line.kind for line in lines] == ["TIER", "TIER_FLAT", "TIER", "TIER_FLAT"]
    assert [line.details["tier"] for line in lines] == [1, 1, 2, 2]


def test_package_line_counts_started_packages() -> None:
    [line] = pr.price_segment(usd(package_size=100, package_price=D("5")), pr.Usage(success=201))
    assert (line.kind, line.quantity, line.unit_price, line.amount) == ("PACKAGE", 3, D("5"), D("15.00"))
    assert "201 requests: 3 started packages" in line.description


def test_a_trial_segment_charges_nothing_and_says_until_when() -> None:
    pricing = usd(recurring_fee=D("30.00"), unit_price=D("0.01"), minimum_charge=D("5.00"), trial_days=14)
    until = datetime(2026, 11, 15, 9, 30, tzinfo=UTC)
    lines = pr.SegmentPricer(pricing, Fraction(14, 30), trial_until=until).price(
        pr.Usage(success=500, throttled=2)
    )
    assert [(line.kind, line.quantity, line.amount) for line in lines] == [
        ("TRIAL", 500, D("0.00")),
        ("INFO_THROTTLED", 2, D("0.00")),
    ]
    assert "Free trial until 2026-11-15 09:30 UTC" in lines[0].description
    assert pr.charged_total(lines) == 0


PACKAGE = dict(package_size=10, package_price=D(1))
BAD = [
    ("package with a unit price", dict(PACKAGE, unit_price=D(1)), "package_size excludes"),
    ("package with tiers", dict(PACKAGE, tiers=STRIPE_FONTS), "package_size excludes"),
    ("package price without size", dict(package_price=D(1)), "needs pricing.package_size"),
    ("negative flat fee", dict(tiers=tiers((5, "1", "-1"), (0, "1"))), "tiers[0].flat_fee must not be"),
    ("NaN flat fee", dict(tiers=tiers((5, "1", "NaN"), (0, "1"))), "tiers[0].flat_fee must be a finite"),
    ("unknown tier mode", dict(tiers=STRIPE_FONTS, tier_mode="STAIRS"), "tier_mode must be GRADUATED"),
    ("trial too long", dict(trial_days=400), "trial_days must be at most 366"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_price_models_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
        usd(**fields)


def test_new_fields_round_trip_through_the_snapshot() -> None:
    original = usd(tiers=LAGO_VOLUME, tier_mode=VOLUME, trial_days=7, included_requests=3)
    assert pr.Pricing.from_json(original.to_json()) == original
    packaged = usd(package_size=250, package_price=D("0.75"))
    assert pr.Pricing.from_json(packaged.to_json()) == packaged
    # A snapshot written before these fields existed reads as graduated, no packages, no trial.
    old = {"currency": "USD", "tiers": [{"up_to": 5, "unit_price": "1"}, {"up_to": 0, "unit_price": "0.5"}]}
    assert pr.Pricing.from_json(old) == usd(tiers=tiers((5, "1"), (0, "0.5")))


# --- properties -------------------------------------------------------------------------------------

prices = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
fees = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=10**9)


@st.composite
def tiered(draw: st.DrawFn) -> tuple[pr.Tier, ...]:
    bounds = sorted(set(draw(st.lists(st.integers(1, 10**7), max_size=4))))
    spec = [*bounds, 0]
    return tuple(pr.Tier(b, draw(prices), draw(fees)) for b in spec)


@st.composite
def models(draw: st.DrawFn, volume: bool = False) -> pr.Pricing:
    currency = draw(st.sampled_from(["EUR", "JPY", "KWD"]))
    included = draw(st.integers(0, 10**6))
    kind = "volume" if volume else draw(st.sampled_from(["graduated", "package", "unit"]))
    if kind == "package":
        return pr.Pricing(currency, included_requests=included, package_size=draw(st.integers(1, 10**6)),
                          package_price=draw(prices))  # fmt: skip
    if kind == "unit":
        return pr.Pricing(currency, included_requests=included, unit_price=draw(prices))
    return pr.Pricing(
        currency, included_requests=included, tiers=draw(tiered()), tier_mode=VOLUME if volume else GRADUATED
    )


@given(models(), counts, st.integers(0, 10**7))
def test_graduated_package_and_unit_never_cost_less_for_more(
    pricing: pr.Pricing, base: int, extra: int
) -> None:
    assert D(total(pricing, base + extra)) >= D(total(pricing, base))


@given(st.one_of(models(), models(volume=True)), counts, st.fractions(0, 1, max_denominator=31 * 86400))
def test_every_line_is_non_negative_and_rounded_once(
    pricing: pr.Pricing, count: int, share: Fraction
) -> None:
    digits = pr.minor_units(pricing.currency)
    for line in pr.price_segment(pricing, pr.Usage(success=count), share):
        assert line.amount >= 0
        exponent = line.amount.as_tuple().exponent
        assert isinstance(exponent, int) and -exponent == digits
        if line.kind in ("TIER", "PACKAGE", "TIER_FLAT", "USAGE"):
            exact = Fraction(line.quantity) * Fraction(line.unit_price)
            assert line.amount == D(round(exact * 10**digits)).scaleb(-digits)


@given(models(volume=True), counts)
def test_volume_prices_every_request_beyond_the_included_at_the_reached_tier(
    pricing: pr.Pricing, count: int
) -> None:
    beyond = max(0, count - pricing.included_requests)
    lines = pr.price_segment(pricing, pr.Usage(success=count))
    charged = [line for line in lines if line.charged]
    if not beyond:
        assert charged == []
        return
    tier = pricing.tiers[pr.volume_tier(pricing.tiers, beyond)]
    assert charged[0].quantity == beyond and charged[0].unit_price == tier.unit_price
    lower = max([t.up_to for t in pricing.tiers if t.up_to and t.up_to < beyond], default=0)
    assert lower < beyond and (tier.up_to == 0 or beyond <= tier.up_to)


@given(st.integers(1, 10**6), st.integers(0, 10**9))
def test_packages_cover_the_requests_with_less_than_one_package_to_spare(size: int, count: int) -> None:
    [line] = pr.price_segment(
        pr.Pricing("EUR", package_size=size, package_price=D(1)), pr.Usage(success=count)
    )
    packages = int(line.quantity)
    assert packages * size >= count > (packages - 1) * size or count == packages == 0
