"""Taxes on an invoice (pure): which rates apply to a line, each line's tax rounded once, the invoice's
tax lines (one per rate) and totals.

Which rates apply to a line: the rates set on the line's plan when the plan has any, else the rates of
the billing account the invoice is addressed to, else none. A plan's rates override the account's for
that plan's lines only, so one invoice can mix them (a plan priced tax-inclusive beside account rates
added on top). Several rates may apply to a line (a state and a city tax), at most one of them
inclusive (validated where rates are written, billing/accounts.py).

Per line, with r = rate / 100, amounts rounded half-even to the currency's minor unit (tollway/money.py):
- inclusive: the line's amount is gross; net = round(gross / (1 + r)), tax = gross - net, so
  net + tax == gross exactly and nothing is added to the invoice total;
- exclusive: tax = round(base x r) on the line's net amount (its amount, less an inclusive tax if one
  applies), added to the invoice total.
An invoice's tax line for a rate is the sum of its lines' rounded taxes (never recomputed on the sum),
with the net amounts it was taken from. A negative line (a late-usage correction that lowers a charge)
carries a negative tax: the correction of the tax charged before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from fractions import Fraction
from typing import Any

from billing.pricing import exact_sum, round_amount
from tollway.errors import InvalidArgument
from tollway.money import minor_units, money_text

RATE_MAX = Decimal(100)
RATE_DIGITS = 4
# Scaling an integer by a power of ten is exact in this context, whatever its digits.
_WIDE = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


@dataclass(frozen=True, slots=True)
class Rate:
    id: str
    name: str
    percent: Decimal
    inclusive: bool

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "rate": rate_text(self.percent),
            "inclusive": self.inclusive,
        }


def parse_rate(text: str) -> Decimal:
    """A tax rate in percent: plain decimal text, 0 < rate <= 100, at most RATE_DIGITS decimals."""
    value = text.strip()
    try:
        rate = Decimal(value)
    except ArithmeticError:
        rate = Decimal("NaN")
    if not value or not rate.is_finite() or not all(c.isdigit() or c == "." for c in value):
        raise InvalidArgument(f"rate must be a percentage such as 20 or 8.875, got {text!r}")
    if not 0 < rate <= RATE_MAX:
        raise InvalidArgument(f"rate must be above 0 and at most {RATE_MAX} percent, got {value}")
    exponent = rate.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > RATE_DIGITS:
        raise InvalidArgument(f"rate must have at most {RATE_DIGITS} decimal places, got {value}")
    return rate


def rate_text(percent: Decimal) -> str:
    """A rate's canonical text: "20", "8.875" (no trailing zeros, no exponent)."""
    return format(percent.normalize(), "f")


def check_rate_set(rates: Sequence[Rate]) -> None:
    """A plan's or an account's rates: at most one inclusive (a gross amount has one net)."""
    if sum(rate.inclusive for rate in rates) > 1:
        raise InvalidArgument("at most one inclusive tax rate may apply to the same lines")


@dataclass(frozen=True, slots=True)
class LineTax:
    rate: Rate
    net: Decimal  # what the tax was taken from
    tax: Decimal


@dataclass(frozen=True, slots=True)
class TaxLine:
    """An invoice's tax line for one rate."""

    rate: Rate
    taxable: Decimal
    amount: Decimal


@dataclass
class InvoiceTaxes:
    subtotal: Decimal
    tax_total: Decimal  # every tax, inclusive and exclusive
    total: Decimal  # subtotal + exclusive taxes: what the customer pays
    lines: list[TaxLine] = field(default_factory=list)
    per_line: list[list[LineTax]] = field(default_factory=list)


def _round_fraction(value: Fraction, currency: str) -> Decimal:
    """`value` rounded once, half-even (Fraction's round), to the currency's minor unit."""
    digits = minor_units(currency)
    return _WIDE.scaleb(Decimal(round(value * 10**digits)), Decimal(-digits))


def line_taxes(amount: Decimal, rates: Sequence[Rate], currency: str) -> list[LineTax]:
    """The taxes of one line of `amount` (rounded already) under `rates`, each rounded once."""
    if not rates:
        return []
    result: list[LineTax] = []
    net = amount
    for rate in rates:
        if rate.inclusive:
            net = _round_fraction(Fraction(amount) / (1 + Fraction(rate.percent) / 100), currency)
            result.append(LineTax(rate, net, exact_sum([amount, net.copy_negate()])))
    for rate in rates:
        if not rate.inclusive:
            tax = _round_fraction(Fraction(net) * Fraction(rate.percent) / 100, currency)
            result.append(LineTax(rate, net, tax))
    return result


def rates_for(
    plan_id: str, plan_rates: Mapping[str, Sequence[Rate]], account_rates: Sequence[Rate]
) -> Sequence[Rate]:
    """The rule above: the plan's rates when it has any, else the account's."""
    return plan_rates.get(plan_id) or account_rates


def invoice_taxes(
    lines: Sequence[tuple[str, bool, Decimal]],
    currency: str,
    plan_rates: Mapping[str, Sequence[Rate]],
    account_rates: Sequence[Rate],
) -> InvoiceTaxes:
    """Taxes of an invoice whose lines are (plan id, charged, amount): per line, per rate, totals."""
    return taxes_of(
        [
            (rates_for(plan_id, plan_rates, account_rates) if charged else (), charged, amount)
            for plan_id, charged, amount in lines
        ],
        currency,
    )


def rates_from_details(details: Mapping[str, Any]) -> list[Rate]:
    """The rates an invoice line was taxed with, from its stored details (a credit note taxes what it
    credits with them, whatever the rates are now)."""
    return [
        Rate(str(t["tax_rate_id"]), str(t["name"]), Decimal(str(t["rate"])), bool(t["inclusive"]))
        for t in details.get("taxes") or []
    ]


def taxes_of(lines: Sequence[tuple[Sequence[Rate], bool, Decimal]], currency: str) -> InvoiceTaxes:
    """Taxes of lines given as (their rates, charged, amount): per line, per rate, totals."""
    zero = round_amount(Decimal(0), currency)
    per_line: list[list[LineTax]] = []
    by_rate: dict[str, tuple[Rate, list[Decimal], list[Decimal]]] = {}
    for rates, charged, amount in lines:
        taxes = line_taxes(amount, rates, currency) if charged else []
        per_line.append(taxes)
        for tax in taxes:
            entry = by_rate.setdefault(tax.rate.id, (tax.rate, [], []))
            entry[1].append(tax.net)
            entry[2].append(tax.tax)
    subtotal = exact_sum((amount for _, charged, amount in lines if charged), zero)
    tax_lines = [
        TaxLine(rate, exact_sum(nets, zero), exact_sum(taxes, zero)) for rate, nets, taxes in by_rate.values()
    ]
    tax_lines.sort(key=lambda t: (t.rate.inclusive, t.rate.name, t.rate.id))
    tax_total = exact_sum((t.amount for t in tax_lines), zero)
    added = exact_sum((t.amount for t in tax_lines if not t.rate.inclusive), zero)
    return InvoiceTaxes(subtotal, tax_total, exact_sum([subtotal, added]), tax_lines, per_line)


def per_line_json(taxes: Sequence[LineTax]) -> list[dict[str, object]]:
    """A line's taxes as stored in its details (machine-readable; exported)."""
    return [
        {"tax_rate_id": t.rate.id, "name": t.rate.name, "rate": rate_text(t.rate.percent),
         "inclusive": t.rate.inclusive, "net": money_text(t.net), "tax": money_text(t.tax)}
        for t in taxes
    ]  # fmt: skip


def tax_rows(invoice_id: str, taxes: InvoiceTaxes | None) -> list[tuple[Any, ...]]:
    """An invoice's InvoiceTax rows: (invoice id, position, rate id, name, rate, inclusive, taxable,
    amount)."""
    if taxes is None:
        return []
    return [
        (invoice_id, position, t.rate.id, t.rate.name, rate_text(t.rate.percent), t.rate.inclusive,
         money_text(t.taxable), money_text(t.amount))
        for position, t in enumerate(taxes.lines)
    ]  # fmt: skip


def tax_lines_json(taxes: InvoiceTaxes) -> list[dict[str, Any]]:
    """Tax lines as a credit note stores them."""
    return [
        {"tax_rate_id": t.rate.id, "name": t.rate.name, "rate": rate_text(t.rate.percent),
         "inclusive": t.rate.inclusive, "taxable": money_text(t.taxable), "amount": money_text(t.amount)}
        for t in taxes.lines
    ]  # fmt: skip
