"""Taxes and line descriptions (pure): which rate applies to a line, each line's tax rounded once,
tax lines and totals by rate, inclusive and exclusive rates on one invoice, a zero-decimal currency.
Every expected value is worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import descriptions
from billing.tax import Rate, check_rate_set, invoice_taxes, line_taxes, parse_rate
from tollway.errors import InvalidArgument

VAT20_INCL = Rate("tax_vat", "VAT 20%", D("20"), True)
SALES_EXCL = Rate("tax_sales", "Sales tax 8.875%", D("8.875"), False)
TEN_EXCL = Rate("tax_ten", "GST 10%", D("10"), False)
JP_INCL = Rate("tax_jp", "Consumption tax 10%", D("10"), True)
JP_EXCL = Rate("tax_jp8", "Reduced rate 8%", D("8"), False)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


LINE_CASES = [
    # (name, amount, rates, currency, [(net, tax) per rate])
    # 49.00 / 1.2 = 40.8333... → 40.83; tax = 49.00 - 40.83 = 8.17.
    ("inclusive, rounded net", D("49.00"), [VAT20_INCL], "USD", [("40.83", "8.17")]),
    # 23.46 / 1.2 = 19.55 exactly; tax 3.91.
    ("inclusive, exact net", D("23.46"), [VAT20_INCL], "USD", [("19.55", "3.91")]),
    # 10.00 x 8.875% = 0.8875 → 0.89 (above half a cent).
    ("exclusive", D("10.00"), [SALES_EXCL], "USD", [("10.00", "0.89")]),
    # 0.15 x 10% = 0.015 → half-even → 0.02.
    ("exclusive half-even up", D("0.15"), [TEN_EXCL], "USD", [("0.15", "0.02")]),
    # 0.25 x 10% = 0.025 → half-even → 0.02.
    ("exclusive half-even down", D("0.25"), [TEN_EXCL], "USD", [("0.25", "0.02")]),
    # JPY has no minor unit: 1,000 / 1.1 = 909.09 → 909; tax 91.
    ("JPY inclusive", D("1000"), [JP_INCL], "JPY", [("909", "91")]),
    # 1,234 x 8% = 98.72 → 99.
    ("JPY exclusive", D("1234"), [JP_EXCL], "JPY", [("1234", "99")]),
    # 5 x 10% = 0.5 → half-even → 0; 15 x 10% = 1.5 → 2.
    ("JPY half-even to even 0", D("5"), [TEN_EXCL], "JPY", [("5", "0")]),
    ("JPY half-even to even 2", D("15"), [TEN_EXCL], "JPY", [("15", "2")]),
    # An inclusive rate and an exclusive one on the same line: the exclusive one is taken on the net.
    # 1,000 / 1.1 = 909.09 → 909 (tax 91); 909 x 8% = 72.72 → 73.
    ("JPY inclusive + exclusive", D("1000"), [JP_INCL, JP_EXCL], "JPY", [("909", "91"), ("909", "73")]),
    # A late-usage correction lowering a charge lowers the tax charged: -10.00 x 10% = -1.00.
    ("negative correction", D("-10.00"), [TEN_EXCL], "USD", [("-10.00", "-1.00")]),
    ("no rate", D("10.00"), [], "USD", []),
]


@pytest.mark.parametrize(
    ("amount", "rates", "currency", "expected"),
    [case[1:] for case in LINE_CASES],
    ids=[case[0] for case in LINE_CASES],
)
def test_line_taxes(amount: D, rates: list[Rate], currency: str, expected: list[tuple[str, str]]) -> None:
    taxes = line_taxes(amount, rates, currency)
    assert [(str(t.net), str(t.tax)) for t in taxes] == expected


def test_mixed_invoice_taxes_by_rate_with_per_line_rounding() -> None:
    """Plan "eu" carries VAT 20% inclusive; plan "addon" has none, so the account's 8.875% exclusive
    applies to its lines; plan "gst" carries 10% exclusive."""
    plan_rates = {"eu": [VAT20_INCL], "gst": [TEN_EXCL]}
    account_rates = [SALES_EXCL]
    lines = [
        ("eu", True, D("49.00")),  # VAT: net 40.83, tax 8.17
        ("eu", False, D("0.00")),  # informational (included requests): never taxed
        ("eu", True, D("23.46")),  # VAT: net 19.55, tax 3.91
        ("addon", True, D("10.00")),  # sales: 0.8875 → 0.89
        ("addon", True, D("3.30")),  # sales: 0.292875 → 0.29
        ("gst", True, D("0.15")),  # GST: 0.015 → 0.02
        ("gst", True, D("0.15")),  # 0.02
        ("gst", True, D("0.15")),  # 0.02 (on the sum, 0.45 x 10% = 0.045 → 0.04: not what is charged)
    ]
    taxes = invoice_taxes(lines, "USD", plan_rates, account_rates)
    # subtotal: 49.00 + 23.46 + 10.00 + 3.30 + 3 x 0.15 = 86.21
    assert str(taxes.subtotal) == "86.21"
    by_rate = {t.rate.id: (str(t.taxable), str(t.amount)) for t in taxes.lines}
    assert by_rate == {
        "tax_vat": ("60.38", "12.08"),  # 40.83 + 19.55; 8.17 + 3.91
        "tax_sales": ("13.30", "1.18"),  # 10.00 + 3.30; 0.89 + 0.29
        "tax_ten": ("0.45", "0.06"),  # 3 x 0.15; 3 x 0.02
    }
    # Exclusive rates first by name, inclusive ones after.
    assert [t.rate.id for t in taxes.lines] == ["tax_ten", "tax_sales", "tax_vat"]
    # Every tax: 12.08 + 1.18 + 0.06 = 13.32; the customer pays the subtotal plus the exclusive taxes:
    # 86.21 + 1.18 + 0.06 = 87.45 (the inclusive VAT is inside the subtotal already).
    assert str(taxes.tax_total) == "13.32"
    assert str(taxes.total) == "87.45"
    assert taxes.per_line[1] == []


def test_no_rates_leave_the_total_as_the_lines_sum() -> None:
    taxes = invoice_taxes([("p", True, D("1.10")), ("p", True, D("2.20"))], "EUR", {}, [])
    assert (str(taxes.subtotal), str(taxes.tax_total), str(taxes.total), taxes.lines) == (
        "3.30", "0.00", "3.30", [],
    )  # fmt: skip


def test_jpy_invoice() -> None:
    # 1,000 incl. 10%: net 909, tax 91; 55 incl.: 55 / 1.1 = 50, tax 5; 1,234 excl. 8%: 99.
    lines = [("jp", True, D("1000")), ("jp", True, D("55")), ("other", True, D("1234"))]
    taxes = invoice_taxes(lines, "JPY", {"jp": [JP_INCL]}, [JP_EXCL])
    assert {t.rate.id: (str(t.taxable), str(t.amount)) for t in taxes.lines} == {
        "tax_jp": ("959", "96"),
        "tax_jp8": ("1234", "99"),
    }
    # 2,289 + 99 = 2,388
    assert (str(taxes.subtotal), str(taxes.tax_total), str(taxes.total)) == ("2289", "195", "2388")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "percentage"),
        ("-5", "percentage"),
        ("abc", "percentage"),
        ("NaN", "percentage"),
        ("1e1", "percentage"),
        ("0", "above 0"),
        ("100.01", "at most 100"),
        ("8.12345", "at most 4 decimal places"),
    ],
)
def test_bad_rates_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_rate(text)


def test_two_inclusive_rates_on_the_same_lines_are_refused() -> None:
    check_rate_set([VAT20_INCL, SALES_EXCL, TEN_EXCL])
    with pytest.raises(InvalidArgument, match="at most one inclusive"):
        check_rate_set([VAT20_INCL, JP_INCL])


amounts = st.decimals(min_value=0, max_value=D(10) ** 9, places=2, allow_nan=False, allow_infinity=False)
percents = st.decimals(min_value=D("0.0001"), max_value=100, places=4, allow_nan=False, allow_infinity=False)


@given(amount=amounts, percent=percents)
def test_inclusive_tax_is_never_negative_and_net_plus_tax_is_gross(amount: D, percent: D) -> None:
    [tax] = line_taxes(amount, [Rate("r", "r", percent, True)], "EUR")
    assert tax.tax >= 0 and tax.net >= 0
    assert tax.net + tax.tax == amount
    assert tax.tax.as_tuple().exponent == -2
    # The net is the exact one rounded once: within half a cent.
    assert abs(tax.net - amount / (1 + percent / 100)) <= D("0.005")


@given(amount=amounts, percent=percents)
def test_exclusive_tax_is_never_negative_and_rounded_once(amount: D, percent: D) -> None:
    [tax] = line_taxes(amount, [Rate("r", "r", percent, False)], "EUR")
    assert tax.tax >= 0
    exact = amount * percent / 100  # exact: at most 2 + 4 + 2 decimal places within 28 digits
    assert abs(tax.tax - exact) <= D("0.005")
    assert tax.tax.as_tuple().exponent == -2


@given(lines=st.lists(st.tuples(st.sampled_from(["a", "b"]), amounts), max_size=12))
def test_tax_lines_sum_the_rounded_line_taxes(lines: list[tuple[str, D]]) -> None:
    taxes = invoice_taxes(
        [(plan, True, amount) for plan, amount in lines], "USD", {"a": [VAT20_INCL]}, [SALES_EXCL]
    )
    per_rate: dict[str, D] = {}
    for line in taxes.per_line:
        for tax in line:
            per_rate[tax.rate.id] = per_rate.get(tax.rate.id, D(0)) + tax.tax
    assert {t.rate.id: t.amount for t in taxes.lines} == per_rate
    assert taxes.total == taxes.subtotal + per_rate.get("tax_sales", D(0))
    assert taxes.tax_total == sum(per_rate.values(), D(0))


DESCRIPTION_CASES = [
    (
        descriptions.fee("", [(utc(2026, 12, 10), utc(2027, 1, 1))], True),
        "Recurring fee, Dec 10-31 (prorated)",
    ),
    (descriptions.fee("", [(utc(2026, 11, 1), utc(2026, 12, 1))], False), "Recurring fee, Nov 1-30"),
    (descriptions.fee("", [(utc(2026, 11, 15), utc(2026, 12, 15))], False), "Recurring fee, Nov 15-Dec 14"),
    (
        descriptions.fee("pro: ", [(utc(2026, 12, 20), utc(2027, 1, 20))], False),
        "pro: Recurring fee, Dec 20, 2026-Jan 19, 2027",
    ),
    (
        descriptions.fee(
            "", [(utc(2026, 11, 1), utc(2026, 11, 10)), (utc(2026, 11, 20), utc(2026, 12, 1))], True
        ),
        "Recurring fee, Nov 1-9, Nov 20-30 (prorated)",
    ),
    (
        descriptions.fee("", [(utc(2026, 11, 5, 10), utc(2026, 11, 5, 18))], True),
        "Recurring fee, Nov 5 (prorated)",
    ),
    (
        descriptions.unit_usage("", 100_000, 23_456, D("0.001"), "USD"),
        "Requests above 100,000 included: 23,456 \u00d7 0.001 USD",
    ),
    (descriptions.unit_usage("", 0, 1_500, D("0.002"), "EUR"), "Requests: 1,500 \u00d7 0.002 EUR"),
    (descriptions.included("", 80_000, 100_000), "Included requests: 80,000 of 100,000"),
    (
        descriptions.adjustment(utc(2026, 11, 1), utc(2026, 12, 1), 4, 0),
        "Late usage for Nov 1-30, 2026 (+4 successful, +0 overage requests)",
    ),
]


@pytest.mark.parametrize(("actual", "expected"), DESCRIPTION_CASES, ids=[c[1] for c in DESCRIPTION_CASES])
def test_descriptions(actual: str, expected: str) -> None:
    assert actual == expected
