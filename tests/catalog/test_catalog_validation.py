"""Pure validation of catalog input and money parsing: examples plus hypothesis properties."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tollway.catalog.limits import PlanLimits
from tollway.catalog.validation import (
    MAX_COUNT,
    ApiDraft,
    PlanDraft,
    PriceTierDraft,
    PricingDraft,
    paths_overlap,
    validate_api,
    validate_context_path,
    validate_name,
    validate_plan,
    validate_pricing,
    validate_upstream_url,
    validate_upstream_urls,
    validate_version,
)
from tollway.errors import InvalidArgument
from tollway.money import CURRENCY_MINOR_UNITS, minor_units, money_text, parse_money

# --- money ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Decimal(0)),
        ("0", Decimal(0)),
        ("49.00", Decimal("49.00")),
        ("0.0004", Decimal("0.0004")),
        ("0.0000000001", Decimal("1E-10")),
        ("1000000000", Decimal(10) ** 9),
        ("007.50", Decimal("7.50")),
    ],
)
def test_parse_money_accepts_plain_decimals(text: str, expected: Decimal) -> None:
    assert parse_money(text, "price") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1", "price must not be negative"),
        ("-0", "price must not be negative"),
        ("1e3", "price must be a decimal amount"),
        ("NaN", "price must be a decimal amount"),
        ("Infinity", "price must be a decimal amount"),
        (" 1", "price must be a decimal amount"),
        ("1\n", "price must be a decimal amount"),
        ("1,50", "price must be a decimal amount"),
        (".5", "price must be a decimal amount"),
        ("5.", "price must be a decimal amount"),
        ("+5", "price must be a decimal amount"),
        ("١٢", "price must be a decimal amount"),  # non-ASCII digits
        ("0.00000000001", "price has more than 10 fractional digits"),
        ("1000000000.01", "price must be at most 1000000000"),
        ("9" * 50, "price must be a decimal amount"),
    ],
)
def test_parse_money_rejects_with_field_name(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_money(text, "price")


def test_money_text_is_plain_and_keeps_scale() -> None:
    assert money_text(Decimal("49.00")) == "49.00"
    assert money_text(Decimal("0.0000001")) == "0.0000001"  # str() would give "1E-7"
    assert money_text(parse_money("007.5", "x")) == "7.5"


def test_currency_table() -> None:
    assert minor_units("EUR") == 2
    assert minor_units("JPY") == 0
    assert minor_units("KWD") == 3
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_MINOR_UNITS)
    assert set(CURRENCY_MINOR_UNITS.values()) <= {0, 2, 3}
    with pytest.raises(InvalidArgument, match="unknown currency 'XYZ'"):
        minor_units("XYZ")


def test_currency_table_follows_iso_4217_of_2026_01_01() -> None:
    assert minor_units("VED") == 2  # Venezuela's digital bolívar, beside VES
    assert minor_units("XCG") == 2 and minor_units("ZWG") == 2
    for retired in ("ANG", "BGN", "ZWL", "SLL", "HRK"):
        assert retired not in CURRENCY_MINOR_UNITS
    # What was priced in a currency retired since still rounds to its minor unit.
    assert minor_units("BGN") == 2 and minor_units("ANG") == 2
    with pytest.raises(InvalidArgument, match="unknown currency 'ZWL'"):
        minor_units("ZWL")


@pytest.mark.parametrize(("code", "reason"), [("BGN", "adopted the euro"), ("ANG", "XCG")])
def test_a_new_price_in_a_retired_currency_says_what_replaced_it(code: str, reason: str) -> None:
    with pytest.raises(
        InvalidArgument, match=f"pricing.currency: {code} is no longer an ISO 4217 currency.*{reason}"
    ):
        validate_pricing(PricingDraft(currency=code, recurring_fee="1.00"), PlanLimits())
    assert (
        validate_pricing(PricingDraft(currency="VED", recurring_fee="1.00"), PlanLimits()).currency == "VED"
    )


@given(st.decimals(min_value=0, max_value=10**9, places=10, allow_nan=False, allow_infinity=False))
def test_money_text_round_trips(value: Decimal) -> None:
    text = money_text(value)
    assert parse_money(text, "x") == value
    assert money_text(parse_money(text, "x")) == text


# --- names ------------------------------------------------------------------------------------------


def test_names() -> None:
    assert validate_name("gold", "name") == "gold"
    assert validate_name("x" * 100, "name") == "x" * 100
    for bad, message in [
        ("", "name is required"),
        ("   ", "name is required"),
        ("x" * 101, "at most 100 characters"),
        (" gold", "whitespace"),
        ("go\x00ld", "control characters"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            validate_name(bad, "name")


def test_versions() -> None:
    for good in ("", "v1", "2.1", "2024-06-01", "1.0+build"):
        assert validate_version(good) == good
    for bad in ("v:1", "-v1", "v 1", "x" * 51):
        with pytest.raises(InvalidArgument, match="version"):
            validate_version(bad)


# --- context paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/weather", "/weather/v1", "/a.b/c_d/e~f/g-h", "/V1", "/" + "a" * 199])
def test_context_path_accepted(path: str) -> None:
    assert validate_context_path(path) == path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "context_path is required"),
        ("weather", 'must start with "/"'),
        ("/", 'must not be "/" alone'),
        ("/weather/", "must not end with \"/\": use '/weather'"),
        ("/a//b", 'must not contain "//"'),
        ("/a/./b", 'must not contain "." or ".."'),
        ("/a/..", 'must not contain "." or ".."'),
        ("/a b", "segment 'a b' may contain only"),
        ("/wé", "may contain only"),
        ("/a?b", "may contain only"),
        ("/a%20b", "may contain only"),
        ("/" + "a" * 200, "at most 200 characters"),
    ],
)
def test_context_path_rejected(path: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_context_path(path)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("/a", "/a", True),
        ("/a", "/a/b", True),
        ("/a/b/c", "/a", True),
        ("/a", "/ab", False),
        ("/a/b", "/a/c", False),
        ("/a.b", "/a", False),
        ("/Weather", "/weather/v1", True),  # compared ignoring case
    ],
)
def test_paths_overlap_examples(a: str, b: str, overlap: bool) -> None:
    assert paths_overlap(a, b) is overlap


def test_paths_overlap_case_sensitive_on_request() -> None:
    assert not paths_overlap("/Weather", "/weather/v1", ignore_case=False)
    assert paths_overlap("/weather", "/weather/v1", ignore_case=False)


_segment = st.text(alphabet="abcXYZ09._~-", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
_paths = st.lists(_segment, min_size=1, max_size=4).map(lambda segments: "/" + "/".join(segments))


@given(_paths, _paths)
def test_overlap_is_symmetric(a: str, b: str) -> None:
    assert paths_overlap(a, b) == paths_overlap(b, a)


@given(_paths)
def test_generated_paths_are_valid_and_overlap_themselves(path: str) -> None:
    assert validate_context_path(path) == path
    assert paths_overlap(path, path)


@given(_paths, _segment)
def test_a_child_always_overlaps_its_parent(parent: str, segment: str) -> None:
    assert paths_overlap(parent, f"{parent}/{segment}")


@given(_paths, _segment)
def test_a_sibling_with_a_longer_name_never_overlaps(path: str, suffix: str) -> None:
    # "/a/b" and "/a/bX": the last segment differs, so neither is a segment prefix of the other.
    assume(not suffix.startswith("/"))
    assert not paths_overlap(path, path + suffix)


@given(_paths, _paths)
def test_overlap_means_segment_prefix(a: str, b: str) -> None:
    sa, sb = a.lower().split("/"), b.lower().split("/")
    shorter, longer = sorted((sa, sb), key=len)
    assert paths_overlap(a, b) == (longer[: len(shorter)] == shorter)


# --- upstream URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://example.com", "http://example.com"),
        ("HTTPS://Example.COM:8443/", "https://example.com:8443"),
        ("http://127.0.0.1:8080/base/v1/", "http://127.0.0.1:8080/base/v1"),
        ("http://[::1]:9000/x", "http://[::1]:9000/x"),
        ("http://backend_1.internal:80/a%20b", "http://backend_1.internal:80/a%20b"),
    ],
)
def test_upstream_url_canonical(url: str, canonical: str) -> None:
    assert validate_upstream_url(url) == canonical


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com", "must be an http:// or https:// URL"),
        ("example.com:80", "must be an http:// or https:// URL"),
        ("http:example.com", "must be an http:// or https:// URL"),
        ("http://", "must name a host"),
        ("http://:8080", "must name a host"),
        ("http://user:pw@example.com", "must not contain user information"),
        ("http://example.com/?a=1", "must not have a query or fragment"),
        ("http://example.com/#top", "must not have a query or fragment"),
        ("http://example.com:0", "port must be a number from 1 to 65535"),
        ("http://example.com:65536", "port must be a number from 1 to 65535"),
        ("http://example.com:http", "port must be a number from 1 to 65535"),
        ("http://exa mple.com", "without spaces"),
        ("http://exämple.com", "must be ASCII"),
        ("http://999.1.1.1", "invalid IPv4 address"),
        ("http://[::g]", "invalid IPv6 address|not a valid URL"),
        ("http://[::1", "not a valid URL"),
        ("http://-bad-.com", "invalid host name"),
        ("http://example.com/a//b", 'must not contain "//"'),
        ("http://example.com/a/../b", 'must not contain "." or ".."'),
        ("http://example.com/a%zz", "invalid segment"),
        ("", "must not be empty"),
    ],
)
def test_upstream_url_rejected(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_upstream_url(url)


def test_upstream_urls_share_scheme_and_path() -> None:
    assert validate_upstream_urls(["http://a:1/p", "http://b:2/p/"]) == ("http://a:1/p", "http://b:2/p")
    assert validate_upstream_urls([]) == ()
    with pytest.raises(InvalidArgument, match="share scheme and path"):
        validate_upstream_urls(["http://a/p", "https://b/p"])
    with pytest.raises(InvalidArgument, match="share scheme and path"):
        validate_upstream_urls(["http://a/p", "http://b/q"])
    with pytest.raises(InvalidArgument, match="lists 'http://a' twice"):
        validate_upstream_urls(["http://a", "HTTP://A/"])
    with pytest.raises(InvalidArgument, match="at most 16 URLs"):
        validate_upstream_urls([f"http://h{i}" for i in range(17)])
    with pytest.raises(InvalidArgument, match=r"upstream_urls\[1\]"):
        validate_upstream_urls(["http://a", "ftp://b"])


# --- plans ----------------------------------------------------------------------------------------


def _plan(**pricing: object) -> PlanDraft:
    limits = pricing.pop("limits", PlanLimits())
    return PlanDraft(name="gold", limits=limits, pricing=PricingDraft(**pricing))  # type: ignore[arg-type]


def test_free_plan_defaults() -> None:
    plan = validate_plan(PlanDraft(name="free"))
    assert plan.limits.quota_policy == "HARD"
    assert plan.pricing == PricingDraft(
        currency="",
        recurring_fee="0",
        unit_price="0",
        overage_price="0",
        minimum_charge="0",
        package_price="0",
    )


def test_priced_plan_canonical() -> None:
    plan = validate_plan(
        _plan(
            currency="eur",
            recurring_fee="049.00",
            included_requests=1000,
            tiers=(PriceTierDraft(10_000, "0.001"), PriceTierDraft(0, "0.0005")),
            limits=PlanLimits(monthly_quota=100_000, quota_policy="SOFT"),
            overage_price="0.01",
        )
    )
    assert plan.pricing.currency == "EUR"
    assert plan.pricing.recurring_fee == "49.00"
    assert plan.pricing.tiers == (PriceTierDraft(10_000, "0.001", "0"), PriceTierDraft(0, "0.0005", "0"))
    assert plan.pricing.tier_mode == "GRADUATED"
    assert plan.limits.quota_policy == "SOFT"


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (_plan(recurring_fee="10"), "pricing.currency is required for a priced plan"),
        (_plan(tiers=(PriceTierDraft(0, "0.1"),)), "pricing.currency is required"),
        (_plan(currency="EURO"), "not a known ISO 4217 code"),
        (_plan(currency="XAU", recurring_fee="1"), "not a known ISO 4217 code"),
        (_plan(currency="EUR", unit_price="-1"), "pricing.unit_price must not be negative"),
        (_plan(currency="EUR", recurring_fee="1e2"), "pricing.recurring_fee must be a decimal amount"),
        (_plan(currency="EUR", recurring_fee="49.001"), "more decimals than EUR allows"),
        (_plan(currency="JPY", minimum_charge="100.5"), "pricing.minimum_charge 100.5 JPY has more decimals"),
        (
            _plan(currency="EUR", unit_price="0.1", tiers=(PriceTierDraft(0, "0.1"),)),
            "mutually exclusive",
        ),
        (
            _plan(currency="EUR", tiers=(PriceTierDraft(100, "0.1"),)),
            r"pricing.tiers\[0\].up_to must be 0: the last tier must be unbounded",
        ),
        (
            _plan(currency="EUR", tiers=(PriceTierDraft(0, "0.1"), PriceTierDraft(0, "0.1"))),
            r"pricing.tiers\[0\].up_to is 0 \(unbounded\), but only the last",
        ),
        (
            _plan(
                currency="EUR",
                tiers=(PriceTierDraft(100, "0.1"), PriceTierDraft(100, "0.1"), PriceTierDraft(0, "0")),
            ),
            r"pricing.tiers\[1\].up_to \(100\) must be greater than pricing.tiers\[0\].up_to \(100\)",
        ),
        (
            _plan(currency="EUR", tiers=(PriceTierDraft(0, "x"),)),
            r"pricing.tiers\[0\].unit_price must be a decimal amount",
        ),
        (
            _plan(currency="EUR", tiers=tuple(PriceTierDraft(i, "1") for i in range(1, 34))),
            "at most 32 tiers",
        ),
        (
            _plan(currency="EUR", overage_price="0.1"),
            "overage_price applies only beyond a soft monthly quota",
        ),
        (
            _plan(currency="EUR", overage_price="0.1", limits=PlanLimits(quota_policy="SOFT")),
            "overage_price applies only",
        ),
        (_plan(included_requests=MAX_COUNT + 1), "pricing.included_requests must be at most"),
        (
            _plan(limits=PlanLimits(requests_per_second=-1)),
            "limits.requests_per_second must not be negative",
        ),
        (_plan(limits=PlanLimits(monthly_quota=MAX_COUNT + 1)), "limits.monthly_quota must be at most"),
        (_plan(limits=PlanLimits(quota_policy="7")), "limits.quota_policy must be HARD or SOFT"),
    ],
)
def test_invalid_plans(plan: PlanDraft, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_plan(plan)


def test_limits_need_no_consistency_between_windows() -> None:
    # 1/s next to 1000/min is odd but legal: each window is enforced on its own.
    plan = validate_plan(_plan(limits=PlanLimits(requests_per_second=1, requests_per_minute=1000)))
    assert plan.limits.requests_per_minute == 1000


def test_free_plan_may_name_a_currency() -> None:
    assert validate_plan(_plan(currency="USD")).pricing.currency == "USD"


_tier_bounds = st.lists(st.integers(min_value=1, max_value=MAX_COUNT), max_size=6, unique=True)


@given(_tier_bounds)
def test_sorted_tiers_ending_unbounded_are_valid(bounds: list[int]) -> None:
    tiers = (*(PriceTierDraft(up_to, "0.001", "0") for up_to in sorted(bounds)), PriceTierDraft(0, "0", "0"))
    assert validate_plan(_plan(currency="EUR", tiers=tiers)).pricing.tiers == tiers


@given(_tier_bounds.filter(lambda bounds: len(bounds) >= 2 and bounds != sorted(bounds)))
def test_unsorted_tiers_are_rejected(bounds: list[int]) -> None:
    tiers = (*(PriceTierDraft(up_to, "0.001") for up_to in bounds), PriceTierDraft(0, "0"))
    with pytest.raises(InvalidArgument, match="must be greater than"):
        validate_plan(_plan(currency="EUR", tiers=tiers))


_money = st.one_of(
    st.just(""),
    st.decimals(min_value=0, max_value=1000, places=4).map(money_text),
    st.sampled_from(["0", "49.00", "-1", "1e2", "0.00000000001"]),
)
_counts = st.integers(min_value=0, max_value=10**6)
_drafts = st.builds(
    PlanDraft,
    name=st.sampled_from(["gold", "", " x"]),
    limits=st.builds(
        PlanLimits,
        requests_per_second=_counts,
        monthly_quota=_counts,
        quota_policy=st.sampled_from(["", "HARD", "SOFT", "soft", "7"]),
    ),
    pricing=st.builds(
        PricingDraft,
        currency=st.sampled_from(["", "EUR", "jpy", "KWD", "XXX"]),
        recurring_fee=_money,
        included_requests=_counts,
        unit_price=_money,
        tiers=st.lists(st.builds(PriceTierDraft, up_to=_counts, unit_price=_money), max_size=3).map(tuple),
        overage_price=_money,
        minimum_charge=_money,
    ),
)


@given(_drafts)
def test_validation_rejects_cleanly_or_returns_a_fixed_point(plan: PlanDraft) -> None:
    try:
        canonical = validate_plan(plan)
    except InvalidArgument as error:
        assert error.message  # never another exception type, never an empty message
        return
    assert validate_plan(canonical) == canonical
    assert canonical.pricing.currency in ("", *CURRENCY_MINOR_UNITS)


# --- APIs -----------------------------------------------------------------------------------------


def test_api_canonical() -> None:
    api = validate_api(
        ApiDraft(
            name="weather",
            version="v1",
            context_path="/weather/v1",
            upstream_urls=("HTTP://Backend:8080/",),
            plan_ids=("gold", "plan_x"),
        )
    )
    assert api.upstream_urls == ("http://backend:8080",)
    assert api.plan_ids == ("gold", "plan_x")


@pytest.mark.parametrize(
    ("api", "message"),
    [
        (ApiDraft(context_path="/a"), "name is required"),
        (ApiDraft(name="a"), "context_path is required"),
        (ApiDraft(name="a", context_path="/a", plan_ids=("p", "p")), "plan_ids lists 'p' twice"),
        (ApiDraft(name="a", context_path="/a", plan_ids=("",)), r"plan_ids\[0\] must not be empty"),
        (ApiDraft(name="a", context_path="/a", upstream_urls=("ftp://x",)), r"upstream_urls\[0\]"),
        (ApiDraft(name="a", context_path="/a", version="v 1"), "version"),
        (ApiDraft(name="a", context_path="/a", description="x" * 4001), "description must be at most"),
    ],
)
def test_invalid_apis(api: ApiDraft, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_api(api)


# --- price models -------------------------------------------------------------------------------------

VOLUME_TIERS = (PriceTierDraft(10_000, "0.0010", "10"), PriceTierDraft(0, "0.0004", "10.00"))


def test_volume_tiers_with_flat_fees_are_canonical() -> None:
    pricing = validate_plan(_plan(currency="usd", tiers=VOLUME_TIERS, tier_mode="volume")).pricing
    assert pricing.tier_mode == "VOLUME"
    assert pricing.tiers == (PriceTierDraft(10_000, "0.0010", "10"), PriceTierDraft(0, "0.0004", "10.00"))


def test_package_and_trial_are_canonical() -> None:
    pricing = validate_plan(
        _plan(currency="EUR", included_requests=100, package_size=100, package_price="05.00", trial_days=14)
    ).pricing
    assert (pricing.package_size, pricing.package_price, pricing.trial_days) == (100, "5.00", 14)
    assert pricing.tier_mode == ""  # no tiers


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tier_mode": "STAIRS", "tiers": VOLUME_TIERS}, "tier_mode must be GRADUATED or VOLUME"),
        ({"tier_mode": "VOLUME"}, "tier_mode VOLUME needs pricing.tiers"),
        (
            {"tiers": (PriceTierDraft(5, "1", "-1"), PriceTierDraft(0, "1"))},
            "tiers[0].flat_fee must not be negative",
        ),
        (
            {"tiers": (PriceTierDraft(5, "1", "0.001"), PriceTierDraft(0, "1"))},
            "tiers[0].flat_fee 0.001 EUR has more",
        ),
        (
            {"package_size": 10, "package_price": "1", "unit_price": "0.1"},
            "package_size prices requests per package",
        ),
        (
            {"package_size": 10, "package_price": "1", "tiers": VOLUME_TIERS},
            "package_size prices requests per",
        ),
        ({"package_price": "1"}, "package_price needs pricing.package_size"),
        ({"package_size": 10**13}, "package_size must be at most"),
        ({"trial_days": 367}, "trial_days must be 0 to 366"),
        ({"trial_days": -1}, "trial_days must be 0 to 366"),
    ],
)
def test_bad_price_models_are_invalid_argument(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        validate_plan(_plan(currency="EUR", **fields))


def test_pricing_columns_round_trip() -> None:
    pricing = validate_plan(
        _plan(currency="EUR", tiers=VOLUME_TIERS, tier_mode="VOLUME", trial_days=3)
    ).pricing
    assert PricingDraft.from_columns(pricing.columns()) == pricing
