"""Plan versions as billing reads them (tollway/catalog/versions.py has the rule of when each applies)."""

from __future__ import annotations

from collections import defaultdict

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.invoice_engine import PlanVersionRecord
from tollway.catalog.versions import VersionTiming
from tollway.schema import PlanVersion, as_utc
from tollway.vocabulary import VersionEffect


async def stored_versions(session: AsyncSession) -> dict[str, list[PlanVersionRecord]]:
    """Every plan's stored versions, by plan id (a handful per plan: one per change of its terms)."""
    found: dict[str, list[PlanVersionRecord]] = defaultdict(list)
    for row in (await session.exec(select(PlanVersion))).all():
        at = as_utc(row.effective_at)
        assert at is not None
        timing = VersionTiming(row.version, VersionEffect(row.effect), at)
        found[row.plan_id].append(PlanVersionRecord(timing, row.pricing))
    return dict(found)
