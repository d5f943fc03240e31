"""Conversions between protobuf well-known types and Python values, shared by the admin servicers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from tollway.errors import InvalidArgument
from tollway.schema import Subscription, as_utc
from tollway.store.v1 import store_pb2


def timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp for a stored datetime, None when unset (so the proto field stays unset)."""
    value = as_utc(value)
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


# The instants a request may name. Wider than any real billing period or usage query, narrow enough that
# adding a period (months, a year) to one never leaves Python's datetime range (years 1..9999): a quota
# query `at` year 9999 used to answer INTERNAL from that overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_EARLIEST_SECONDS = int(EARLIEST.timestamp())
_LATEST_SECONDS = int(LATEST.timestamp())


def timestamp_problem(value: Timestamp, field: str) -> str | None:
    """Why a request's Timestamp is unacceptable (outside [EARLIEST, LATEST), nanos out of range)."""
    if not 0 <= value.nanos < 1_000_000_000:
        return f"{field} has nanos out of range: {value.nanos}"
    if not _EARLIEST_SECONDS <= value.seconds < _LATEST_SECONDS:
        return (
            f"{field} must be from {EARLIEST.date().isoformat()} to before {LATEST.date().isoformat()}, "
            f"got {value.seconds} seconds since the epoch"
        )
    return None


def to_datetime(value: Timestamp, field: str) -> datetime:
    """A request's Timestamp as an aware UTC datetime; InvalidArgument naming `field` when out of range."""
    problem = timestamp_problem(value, field)
    if problem is not None:
        raise InvalidArgument(problem)
    return value.ToDatetime(tzinfo=UTC)


def duration(value: Duration, field: str) -> timedelta:
    if value.seconds < 0 or value.nanos < 0:
        raise InvalidArgument(f"{field} must not be negative")
    return value.ToTimedelta()


def mask_fields(mask: FieldMask, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Top-level field names an update replaces: all `allowed` when the mask is empty."""
    if not mask.paths:
        return allowed
    unknown = sorted(set(mask.paths) - set(allowed))
    if unknown:
        raise InvalidArgument(f"update_mask names unknown or immutable fields: {', '.join(unknown)}")
    return tuple(mask.paths)


def subscription_to_proto(row: Subscription) -> store_pb2.Subscription:
    """The store contract's view of a subscription row, for every admin service that returns one
    (the store's RPCs and billing's approval workflow). A state the proto lacks reads UNSPECIFIED."""
    try:
        # Value() is typed as a plain int; it is one of the enum's numbers.
        state = cast(
            "store_pb2.SubscriptionState",
            store_pb2.SubscriptionState.Value(f"SUBSCRIPTION_STATE_{row.state}"),
        )
    except ValueError:
        state = store_pb2.SUBSCRIPTION_STATE_UNSPECIFIED
    return store_pb2.Subscription(
        id=row.id,
        application_id=row.application_id,
        api_id=row.api_id,
        plan_id=row.plan_id,
        state=state,
        billing_anchor_day=row.billing_anchor_day,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        state_reason=row.state_reason,
    )
