"""How the pages write values (pure): times in UTC, states as words, limits and prices of a plan."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from jinja2 import Environment

from tollway.billing.v1 import billing_pb2
from tollway.catalog.v1 import catalog_pb2
from tollway.store.v1 import store_pb2
from tollway.throttle.v1 import throttle_pb2

_SUBSCRIPTION_STATES: dict[int, str] = {
    store_pb2.SUBSCRIPTION_STATE_ACTIVE: "Active",
    store_pb2.SUBSCRIPTION_STATE_PENDING_APPROVAL: "Pending approval",
    store_pb2.SUBSCRIPTION_STATE_BLOCKED: "Blocked",
    store_pb2.SUBSCRIPTION_STATE_SUSPENDED: "Suspended",
    store_pb2.SUBSCRIPTION_STATE_CANCELLED: "Cancelled",
    store_pb2.SUBSCRIPTION_STATE_REJECTED: "Rejected",
}
_KEY_STATES: dict[int, str] = {
    store_pb2.API_KEY_STATE_ACTIVE: "Active",
    store_pb2.API_KEY_STATE_EXPIRED: "Expired",
    store_pb2.API_KEY_STATE_REVOKED: "Revoked",
}
_INVOICE_STATES: dict[int, str] = {
    billing_pb2.INVOICE_STATE_DRAFT: "Draft",
    billing_pb2.INVOICE_STATE_FINALIZED: "Final",
    billing_pb2.INVOICE_STATE_VOID: "Void",
}
_WINDOWS: dict[int, str] = {
    throttle_pb2.WINDOW_SECOND: "per second",
    throttle_pb2.WINDOW_MINUTE: "per minute",
    throttle_pb2.WINDOW_HOUR: "per hour",
    throttle_pb2.WINDOW_DAY: "per day",
    throttle_pb2.WINDOW_BILLING_PERIOD: "per billing period",
}


def when(value: Timestamp | datetime | None, with_time: bool = True) -> str:
    """ "2026-11-26 10:41 UTC"; "" for an unset value."""
    if value is None:
        return ""
    if isinstance(value, Timestamp):
        if not value.ByteSize():
            return ""
        value = value.ToDatetime(tzinfo=UTC)
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")


def iso(value: Timestamp) -> str:
    return value.ToDatetime(tzinfo=UTC).isoformat() if value.ByteSize() else ""


def subscription_state(state: int) -> str:
    return _SUBSCRIPTION_STATES.get(state, "Unknown")


def key_state(state: int) -> str:
    return _KEY_STATES.get(state, "Unknown")


def invoice_state(state: int) -> str:
    return _INVOICE_STATES.get(state, "Unknown")


def window_name(window: int) -> str:
    return _WINDOWS.get(window, "")


def plan_limits(plan: catalog_pb2.Plan) -> list[str]:
    """A plan's limits as phrases; ["No limits"] when it has none."""
    limits = plan.limits
    phrases = [
        f"{count:,} requests {unit}"
        for count, unit in (
            (limits.requests_per_second, "per second"),
            (limits.requests_per_minute, "per minute"),
            (limits.requests_per_hour, "per hour"),
            (limits.requests_per_day, "per day"),
        )
        if count
    ]
    if limits.monthly_quota:
        policy = (
            "billed as overage beyond" if limits.quota_policy == catalog_pb2.QUOTA_POLICY_SOFT else "at most"
        )
        phrases.append(f"{policy} {limits.monthly_quota:,} requests per billing period")
    return phrases or ["No limits"]


def plan_prices(plan: catalog_pb2.Plan) -> list[str]:
    """A plan's prices in its currency, as phrases; ["Free"] when it charges nothing."""
    pricing = plan.pricing
    currency = pricing.currency
    phrases = []
    if _nonzero(pricing.recurring_fee):
        phrases.append(f"{currency} {pricing.recurring_fee} per billing period")
    if pricing.included_requests:
        phrases.append(f"{pricing.included_requests:,} requests included")
    if pricing.tiers:
        start = pricing.included_requests
        for tier in pricing.tiers:
            upper = f"up to {tier.up_to:,}" if tier.up_to else f"beyond {start:,}"
            phrases.append(f"{currency} {tier.unit_price} per request {upper}")
            start = tier.up_to or start
    elif _nonzero(pricing.unit_price):
        phrases.append(f"{currency} {pricing.unit_price} per request")
    if _nonzero(pricing.overage_price):
        phrases.append(f"{currency} {pricing.overage_price} per request over the quota")
    if _nonzero(pricing.minimum_charge):
        phrases.append(f"at least {currency} {pricing.minimum_charge} per billing period")
    return phrases or ["Free"]


def _nonzero(amount: str) -> bool:
    try:
        return Decimal(amount or "0") != 0
    except InvalidOperation:
        return bool(amount)


ALERT_KINDS = {
    "QUOTA": "monthly quota",
    "CAP_CHARGE": "spend cap (charge)",
    "CAP_REQUESTS": "spend cap (requests)",
    "CREDIT": "prepaid credit used",
}


def alert_kind(kind: str) -> str:
    return ALERT_KINDS.get(kind, kind)


def install(environment: Environment) -> None:
    filters: dict[str, Any] = {
        "when": when,
        "iso": iso,
        "subscription_state": subscription_state,
        "key_state": key_state,
        "invoice_state": invoice_state,
        "window_name": window_name,
        "plan_limits": plan_limits,
        "plan_prices": plan_prices,
        "alert_kind": alert_kind,
    }
    environment.filters.update(filters)
