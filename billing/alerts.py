"""Alerts: a threshold of a quota, a spend cap or a credit balance crossed, raised once per scope,
period, kind and threshold (a unique index makes "once" hold across replicas and retries).

`raise_alert` is the one place an alert (and a credit-exhausted event) comes into being, so whatever
must happen when one does (an event for webhooks, a stream message) is added here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.credit import SCOPES
from tollway.errors import InvalidArgument
from tollway.schema_billing import Alert

QUOTA = "QUOTA"
CAP_CHARGE = "CAP_CHARGE"
CAP_REQUESTS = "CAP_REQUESTS"
CREDIT = "CREDIT"
ALERT_KINDS = (QUOTA, CAP_CHARGE, CAP_REQUESTS, CREDIT)
MAX_LISTED = 1000


async def raise_alert(
    session: AsyncSession, scope: str, target_id: str, period: str, kind: str, threshold: int, value: str
) -> Alert | None:
    """Records the alert in the caller's transaction and returns it, or None when it was raised
    before (for this scope, target, period, kind and threshold)."""
    existing = (
        await session.exec(
            select(Alert.id).where(
                Alert.scope == scope,
                Alert.target_id == target_id,
                Alert.period == period,
                Alert.kind == kind,
                Alert.threshold == threshold,
            )
        )
    ).first()
    if existing is not None:
        return None
    alert = Alert(
        scope=scope, target_id=target_id, period=period, kind=kind, threshold=threshold, value=value
    )
    try:
        async with session.begin_nested():  # a concurrent raiser may win the unique index
            session.add(alert)
    except IntegrityError:
        return None
    return alert


async def list_alerts(
    session: AsyncSession, scope: str = "", target_id: str = "", kinds: Sequence[str] = (), limit: int = 0
) -> list[Alert]:
    """Alerts, newest first, filtered by scope, target and kinds."""
    if scope and scope not in SCOPES:
        raise InvalidArgument(f"scope must be APPLICATION or SUBSCRIPTION, got {scope!r}")
    unknown = sorted(set(kinds) - set(ALERT_KINDS))
    if unknown:
        raise InvalidArgument(f"unknown alert kinds: {', '.join(unknown)}; expected {', '.join(ALERT_KINDS)}")
    if limit < 0:
        raise InvalidArgument("limit must not be negative")
    statement = select(Alert)
    if scope:
        statement = statement.where(Alert.scope == scope)
    if target_id:
        statement = statement.where(Alert.target_id == target_id)
    if kinds:
        statement = statement.where(col(Alert.kind).in_(kinds))
    statement = statement.order_by(col(Alert.id).desc()).limit(min(limit or MAX_LISTED, MAX_LISTED))
    return list((await session.exec(statement)).all())
