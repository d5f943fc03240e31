"""Money: ISO 4217 currencies and strict parsing of decimal amounts (never float).

Amounts travel as plain decimal text ("49.00", "0.0004") and are stored as their canonical text (see
`money_text`), so SQLite never turns them into floats. Shared by the catalog (plan pricing) and billing.
"""

from __future__ import annotations

import re
from decimal import Decimal

from tollway.errors import InvalidArgument

# Active ISO 4217 currencies and their minor units (digits after the decimal point of the smallest coin
# or note unit), as listed on 2026-01-01: VED (Venezuela's digital bolívar) is in; ANG (replaced by the
# Caribbean guilder XCG in 2025) and BGN (Bulgaria adopted the euro on 2026-01-01) are out, as are
# ZWL (replaced by ZWG, Zimbabwe Gold, in 2024), SLL (by SLE), HRK and the other earlier withdrawals.
# Funds codes, precious metals and units of account (CLF, UYW, XAU, ...) are left out: nobody is
# invoiced in them.
CURRENCY_MINOR_UNITS: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2, "AZN": 2, "BAM": 2,
    "BBD": 2, "BDT": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BRL": 2, "BSD": 2, "BTN": 2,
    "BWP": 2, "BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2, "CHF": 2, "CLP": 0, "CNY": 2, "COP": 2, "CRC": 2,
    "CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2,
    "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2,
    "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2,
    "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0, "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0,
    "KWD": 3, "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2,
    "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2,
    "MXN": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3,
    "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2,
    "RUB": 2, "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2,
    "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2, "TMT": 2,
    "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2, "UYU": 2,
    "UZS": 2, "VED": 2, "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0,
    "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip

# Retired since plans could be priced in them: no new plan may use them, but what was priced in them
# (a plan version, a billed segment re-read for an adjustment) still rounds to their minor unit.
RETIRED_CURRENCIES: dict[str, tuple[int, str]] = {
    "ANG": (2, "replaced by XCG, the Caribbean guilder, in 2025"),
    "BGN": (2, "Bulgaria adopted the euro (EUR) on 2026-01-01"),
}

MAX_AMOUNT = Decimal(10) ** 9
MAX_FRACTION_DIGITS = 10
# Plain decimal notation only: no sign, exponent, NaN/Infinity, whitespace or thousands separators, so
# what a client sends is exactly what gets stored and billed.
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_MAX_TEXT_LENGTH = 40


def parse_money(text: str, field: str) -> Decimal:
    """The amount `text` denotes; empty text is zero (proto3 leaves unset strings empty).

    Raises InvalidArgument naming `field` unless the text is a plain non-negative decimal of at most
    MAX_FRACTION_DIGITS fractional digits and at most MAX_AMOUNT.
    """
    if text == "":
        return Decimal(0)
    if text.startswith("-") and _AMOUNT.fullmatch(text[1:]):
        raise InvalidArgument(f"{field} must not be negative, got {text!r}")
    if len(text) > _MAX_TEXT_LENGTH or not _AMOUNT.fullmatch(text):
        raise InvalidArgument(f'{field} must be a decimal amount such as "49.00" or "0.0004", got {text!r}')
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: the pattern admits no NaN or Infinity
    if -exponent > MAX_FRACTION_DIGITS:
        raise InvalidArgument(f"{field} has more than {MAX_FRACTION_DIGITS} fractional digits: {text!r}")
    if value > MAX_AMOUNT:
        raise InvalidArgument(f"{field} must be at most {MAX_AMOUNT}, got {text!r}")
    return value


def money_text(value: Decimal) -> str:
    """Canonical text of an amount: plain notation (never "1E-7"), scale kept ("49.00" stays "49.00")."""
    return format(value, "f")


def is_currency(code: str) -> bool:
    return code in CURRENCY_MINOR_UNITS


def retired_note(code: str) -> str:
    """Why `code` can no longer be used for a new price ("" when it is active or unknown)."""
    retired = RETIRED_CURRENCIES.get(code)
    return f"{code} is no longer an ISO 4217 currency: {retired[1]}" if retired else ""


def minor_units(currency: str) -> int:
    """Fractional digits of `currency`'s smallest unit, e.g. 2 for EUR, 0 for JPY, 3 for KWD; retired
    currencies keep theirs, so what was priced in them can still be rounded."""
    digits = CURRENCY_MINOR_UNITS.get(currency)
    if digits is not None:
        return digits
    retired = RETIRED_CURRENCIES.get(currency)
    if retired is not None:
        return retired[0]
    raise InvalidArgument(f"unknown currency {currency!r}; expected an ISO 4217 code such as EUR")
