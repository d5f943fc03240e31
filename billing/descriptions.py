"""Invoice line descriptions a customer reads (pure): "Recurring fee, Dec 10-31 (prorated)",
"Requests above 100,000 included: 23,456 \u00d7 0.001 USD". The machine fields stay on the line (kind,
quantity, unit price, amount, and in its details the share, the tier, the stretch of the period), so
nothing an accounting system parses lives only in this text.

Dates are UTC calendar days; a stretch [start, end) is shown up to the day of its last second."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from tollway.money import money_text

_LAST_INSTANT = timedelta(microseconds=1)
TIMES = "\u00d7"  # the multiplication sign


def count(n: int | Decimal) -> str:
    return f"{int(n):,}"


def _day(instant: datetime, with_year: bool) -> str:
    text = f"{instant:%b} {instant.day}"
    return f"{text}, {instant.year}" if with_year else text


def date_span(start: datetime, end: datetime) -> str:
    """[start, end) as days: "Dec 10-31", "Nov 15-Dec 14", "Dec 5", "Dec 20, 2026-Jan 19, 2027"."""
    last = max(start, end - _LAST_INSTANT)
    if start.year != last.year:
        return f"{_day(start, True)}-{_day(last, True)}"
    if start.date() == last.date():
        return _day(start, False)
    if start.month == last.month:
        return f"{_day(start, False)}-{last.day}"
    return f"{_day(start, False)}-{_day(last, False)}"


def spans(stretches: Sequence[tuple[datetime, datetime]]) -> str:
    return ", ".join(date_span(lo, hi) for lo, hi in stretches)


def priced(quantity: int | Decimal, unit_price: Decimal, currency: str) -> str:
    """ "23,456 \u00d7 0.001 USD" (a multiplication sign)."""
    return f"{count(quantity)} {TIMES} {money_text(unit_price)} {currency}"


def fee(prefix: str, stretches: Sequence[tuple[datetime, datetime]], prorated: bool) -> str:
    text = f"{prefix}Recurring fee"
    if stretches:
        text += f", {spans(stretches)}"
    return text + (" (prorated)" if prorated else "")


def included(prefix: str, used: int, allowance: int) -> str:
    return f"{prefix}Included requests: {count(used)} of {count(allowance)}"


def unit_usage(prefix: str, allowance: int, quantity: int, unit_price: Decimal, currency: str) -> str:
    head = f"Requests above {count(allowance)} included" if allowance else "Requests"
    return f"{prefix}{head}: {priced(quantity, unit_price, currency)}"


def tier_name(prefix: str, index: int, lower: int, up_to: int, volume: bool) -> str:
    """A tier's fixed part, e.g. "Requests, tier 2 (10,001-1,000,000)"."""
    bound = f"{count(lower + 1)}-{count(up_to)}" if up_to else f"> {count(lower)}"
    kind = "volume tier" if volume else "tier"
    text = f"{prefix}Requests, {kind} {index} ({bound})"
    return text + ", every request at this tier's price" if volume else text


def tier_usage(name: str, quantity: int, unit_price: Decimal, currency: str) -> str:
    return f"{name}: {priced(quantity, unit_price, currency)}"


def tier_flat_fee(prefix: str, index: int, lower: int, up_to: int) -> str:
    bound = f"{count(lower + 1)}-{count(up_to)}" if up_to else f"> {count(lower)}"
    return f"{prefix}Flat fee of tier {index} ({bound})"


def packages(prefix: str, size: int, requests: int, started: int, price: Decimal, currency: str) -> str:
    return (
        f"{prefix}Requests in packages of {count(size)} ({count(requests)} requests: "
        f"{count(started)} started packages): {priced(started, price, currency)}"
    )


def overage(prefix: str, quantity: int, unit_price: Decimal, currency: str) -> str:
    return f"{prefix}Requests beyond the soft quota: {priced(quantity, unit_price, currency)}"


def minimum(prefix: str, minimum_amount: Decimal, currency: str, prorated: bool) -> str:
    text = f"{prefix}Minimum charge top-up to {money_text(minimum_amount)} {currency}"
    return text + (" (prorated)" if prorated else "")


def trial(prefix: str, until: datetime) -> str:
    return f"{prefix}Free trial until {until:%Y-%m-%d %H:%M} UTC: nothing charged"


def not_charged(prefix: str, what: str, quantity: int) -> str:
    return f"{prefix}{what} requests (not charged): {count(quantity)}"


def adjustment(start: datetime, end: datetime, successful: int, overage_delta: int) -> str:
    span = date_span(start, end)
    if "," not in span:  # a span across years names them already
        span += f", {start.year}"
    return f"Late usage for {span} ({successful:+,} successful, {overage_delta:+,} overage requests)"
