"""Spend caps set by accounting: a limit on a subscription's or an application's billing-period metered
charge (CHARGE) or billable requests (REQUESTS). billing/metering.py measures them and flips the
`billing_gate` row that makes the gateway refuse (402 spend_cap_reached)."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import col, select

from billing.credit import APPLICATION, SCOPES, SPEND_CAP_REACHED, SUBSCRIPTION, parse_cap
from billing.usage_queries import require
from tollway.db import Database
from tollway.errors import InvalidArgument, NotFound
from tollway.schema import Application, Subscription, utcnow
from tollway.schema_billing import BillingGate, SpendCap


def cap_gate_id(scope: str, target_id: str) -> str:
    return f"cap:{scope}:{target_id}"


class SpendCapStore:
    def __init__(self, db: Database, on_commit: Callable[[], None]) -> None:
        self._db = db
        self._on_commit = on_commit

    async def set_cap(self, scope: str, target_id: str, kind: str, limit: str, currency: str) -> SpendCap:
        """Sets (replaces) the cap of `kind` on the scope's target."""
        scope = scope.strip().upper()
        if scope not in SCOPES:
            raise InvalidArgument(f"scope must be APPLICATION or SUBSCRIPTION, got {scope!r}")
        target_id = require(target_id, "target_id")
        kind, limit, currency = parse_cap(kind, limit, currency)
        async with self._db.session() as session:
            table = Application if scope == APPLICATION else Subscription
            if await session.get(table, target_id) is None:
                raise NotFound(f"{scope.lower()} {target_id!r} not found")
            cap = await session.get(SpendCap, (scope, target_id, kind))
            if cap is None:
                cap = SpendCap(scope=scope, target_id=target_id, kind=kind, limit=limit, currency=currency)
            else:
                cap.limit, cap.currency, cap.updated_at = limit, currency, utcnow()
            session.add(cap)
            await session.commit()
        self._on_commit()
        return cap

    async def clear_cap(self, scope: str, target_id: str, kind: str) -> bool:
        """Removes a cap (and the refusal it caused once no other cap of the target holds it)."""
        scope, kind = scope.strip().upper(), kind.strip().upper()
        target_id = require(target_id, "target_id")
        async with self._db.session() as session:
            cap = await session.get(SpendCap, (scope, target_id, kind))
            if cap is None:
                return False
            await session.delete(cap)
            others = (
                await session.exec(
                    select(SpendCap.kind).where(SpendCap.scope == scope, SpendCap.target_id == target_id)
                )
            ).all()
            gate = await session.get(BillingGate, cap_gate_id(scope, target_id))
            if gate is not None and not [other for other in others if other != kind]:
                await session.delete(gate)
            await session.commit()
        self._on_commit()
        return True

    async def list_caps(self, scope: str = "", target_id: str = "") -> list[SpendCap]:
        async with self._db.session() as session:
            statement = select(SpendCap)
            if scope:
                statement = statement.where(SpendCap.scope == scope.strip().upper())
            if target_id:
                statement = statement.where(SpendCap.target_id == target_id.strip())
            order = (col(SpendCap.scope), col(SpendCap.target_id), col(SpendCap.kind))
            return list((await session.exec(statement.order_by(*order).limit(1000))).all())


def cap_gate(scope: str, target_id: str, refused: bool, detail: str) -> BillingGate:
    return BillingGate(
        id=cap_gate_id(scope, target_id), reason=SPEND_CAP_REACHED, scope=scope, target_id=target_id,
        refused=refused, detail=detail,
    )  # fmt: skip


__all__ = ["APPLICATION", "SUBSCRIPTION", "SpendCapStore", "cap_gate", "cap_gate_id"]
