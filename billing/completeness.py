"""Whether a period's usage is all there, and the rule that guards finalizing an invoice without it.

usage/ accounts for every access-log entry Envoy wrote (counted, or skipped for a stated reason such as
"unrouted"), so a healthy period is COMPLETE. An invoice is finalized only when its period's usage is
not INCOMPLETE, or with an explicit override (who and why) that is recorded on the invoice with the
completeness figure of that moment. UNKNOWN (no Envoy counter readings, usage service unreachable) is
recorded on the invoice as such, and does not need the override: nothing is known to be missing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.invoice_records import OverrideRecord
from billing.periods import Period
from billing.usage_queries import chunks
from tollway.errors import FailedPrecondition, InvalidArgument
from tollway.schema import as_utc
from tollway.schema_billing import InvoiceCompletenessOverride

COMPLETE, INCOMPLETE, UNKNOWN = "COMPLETE", "INCOMPLETE", "UNKNOWN"
OVERRIDE_BY_MAX = 200
OVERRIDE_REASON_MAX = 500


@dataclass(frozen=True)
class Verdict:
    """COMPLETE | INCOMPLETE | UNKNOWN, a note saying why, and the lowest per-node completeness (0..1;
    1 when nothing is known to be missing)."""

    state: str
    note: str
    completeness: float = 1.0


class CompletenessSource(Protocol):
    async def verdict(self, period: Period) -> Verdict:
        """The verdict on the usage of `period`."""
        ...

    async def completeness(self, period: Period) -> tuple[str, str]:
        """(COMPLETE | INCOMPLETE | UNKNOWN, note) for the usage of `period`."""
        ...


class UnknownCompleteness:
    """Used when no usage service is reachable to report per-node completeness."""

    NOTE = "usage completeness is not reported by the usage service yet"

    async def verdict(self, period: Period) -> Verdict:
        return Verdict(UNKNOWN, self.NOTE)

    async def completeness(self, period: Period) -> tuple[str, str]:
        return UNKNOWN, self.NOTE


@dataclass(frozen=True)
class AllowIncomplete:
    """An operator's decision to finalize despite incomplete usage."""

    by: str
    reason: str

    def validated(self) -> AllowIncomplete:
        by, reason = self.by.strip(), self.reason.strip()
        if not by or not reason:
            raise InvalidArgument("allow_incomplete needs both `by` (who decides) and `reason`")
        if len(by) > OVERRIDE_BY_MAX:
            raise InvalidArgument(f"allow_incomplete.by must be at most {OVERRIDE_BY_MAX} characters")
        if len(reason) > OVERRIDE_REASON_MAX:
            raise InvalidArgument(f"allow_incomplete.reason must be at most {OVERRIDE_REASON_MAX} characters")
        return AllowIncomplete(by, reason)


def finalize_override(
    invoice_id: str, verdict: Verdict, allow: AllowIncomplete | None, now: datetime
) -> InvoiceCompletenessOverride | None:
    """The override to record when finalizing with this verdict; FailedPrecondition when the usage is
    INCOMPLETE and no override was given. None: nothing to record (the usage is not incomplete)."""
    if verdict.state != INCOMPLETE:
        return None
    if allow is None:
        raise FailedPrecondition(
            f"invoice {invoice_id!r} cannot be finalized: {verdict.note} (lowest node at"
            f" {verdict.completeness:.2%}); wait for the missing usage, or finalize with allow_incomplete"
            " (who and why; recorded on the invoice)"
        )
    return InvoiceCompletenessOverride(
        invoice_id=invoice_id,
        decided_by=allow.by,
        reason=allow.reason,
        decided_at=now,
        completeness=verdict.completeness,
        completeness_note=verdict.note,
    )


async def read_overrides(session: AsyncSession, invoice_ids: Sequence[str]) -> dict[str, OverrideRecord]:
    """The completeness overrides recorded on these (finalized) invoices, by invoice id."""
    found: dict[str, OverrideRecord] = {}
    for chunk in chunks(invoice_ids):
        statement = select(InvoiceCompletenessOverride).where(
            col(InvoiceCompletenessOverride.invoice_id).in_(chunk)
        )
        for row in (await session.exec(statement)).all():
            at = as_utc(row.decided_at) or row.decided_at
            found[row.invoice_id] = OverrideRecord(
                row.decided_by, row.reason, at, row.completeness, row.completeness_note
            )
    return found
