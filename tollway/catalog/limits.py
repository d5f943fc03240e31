"""A plan's traffic limits: one value object from the admin RPC to the throttle's decision.

The catalog validates it (tollway.catalog.validation.validate_limits) and stores it in the plan row;
the throttle reads it back from the row and turns it into counting windows. Field names are those of
the proto's PlanLimits and of the plan table, and the mappings to and from both live here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollway import schema
from tollway.catalog.v1 import catalog_pb2
from tollway.vocabulary import QuotaPolicy, WindowName

# Count fields, in window order (shortest first, then the billing period).
LIMIT_FIELDS = (
    "requests_per_second",
    "requests_per_minute",
    "requests_per_hour",
    "requests_per_day",
    "monthly_quota",
)
_WINDOW_FIELDS = {
    WindowName.SECOND: "requests_per_second",
    WindowName.MINUTE: "requests_per_minute",
    WindowName.HOUR: "requests_per_hour",
    WindowName.DAY: "requests_per_day",
    WindowName.BILLING_PERIOD: "monthly_quota",
}

_QUOTA_POLICY_NAMES: dict[int, str] = {
    catalog_pb2.QUOTA_POLICY_UNSPECIFIED: "",
    catalog_pb2.QUOTA_POLICY_HARD: QuotaPolicy.HARD,
    catalog_pb2.QUOTA_POLICY_SOFT: QuotaPolicy.SOFT,
}
_QUOTA_POLICY_VALUES: dict[str, catalog_pb2.QuotaPolicy] = {
    QuotaPolicy.HARD: catalog_pb2.QUOTA_POLICY_HARD,
    QuotaPolicy.SOFT: catalog_pb2.QUOTA_POLICY_SOFT,
}


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """The throttling side of one plan; 0 = no limit."""

    requests_per_second: int = 0
    requests_per_minute: int = 0
    requests_per_hour: int = 0
    requests_per_day: int = 0
    monthly_quota: int = 0
    # HARD or SOFT once validated (and in every stored plan); as a client sent it until then, "" when
    # unspecified (which means HARD).
    quota_policy: str = ""
    # The throttle counts and reports what it would deny, but admits everything.
    shadow_mode: bool = False

    @property
    def soft_quota(self) -> bool:
        """Beyond the monthly quota requests are admitted and marked as overage."""
        return self.quota_policy == QuotaPolicy.SOFT

    def limit_of(self, window: WindowName) -> int:
        value: int = getattr(self, _WINDOW_FIELDS[window])
        return value

    # --- the plan row ---------------------------------------------------------------------------------

    @classmethod
    def from_row(cls, row: schema.Plan) -> PlanLimits:
        return cls(
            requests_per_second=row.requests_per_second,
            requests_per_minute=row.requests_per_minute,
            requests_per_hour=row.requests_per_hour,
            requests_per_day=row.requests_per_day,
            monthly_quota=row.monthly_quota,
            quota_policy=row.quota_policy,
            shadow_mode=bool(row.shadow_mode),
        )

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> PlanLimits:
        """From a plan version's limits record (as `columns` wrote it)."""
        return cls(
            requests_per_second=int(columns.get("requests_per_second") or 0),
            requests_per_minute=int(columns.get("requests_per_minute") or 0),
            requests_per_hour=int(columns.get("requests_per_hour") or 0),
            requests_per_day=int(columns.get("requests_per_day") or 0),
            monthly_quota=int(columns.get("monthly_quota") or 0),
            quota_policy=str(columns.get("quota_policy") or QuotaPolicy.HARD),
            shadow_mode=bool(columns.get("shadow_mode")),
        )

    def columns(self) -> dict[str, Any]:
        """The plan row's limit columns."""
        return {
            "requests_per_second": self.requests_per_second,
            "requests_per_minute": self.requests_per_minute,
            "requests_per_hour": self.requests_per_hour,
            "requests_per_day": self.requests_per_day,
            "monthly_quota": self.monthly_quota,
            "quota_policy": self.quota_policy,
            "shadow_mode": self.shadow_mode,
        }

    # --- the proto ------------------------------------------------------------------------------------

    @classmethod
    def from_proto(cls, limits: catalog_pb2.PlanLimits) -> PlanLimits:
        return cls(
            requests_per_second=limits.requests_per_second,
            requests_per_minute=limits.requests_per_minute,
            requests_per_hour=limits.requests_per_hour,
            requests_per_day=limits.requests_per_day,
            monthly_quota=limits.monthly_quota,
            # An enum number this server does not know stays visible, so validation can reject it.
            quota_policy=_QUOTA_POLICY_NAMES.get(limits.quota_policy, str(limits.quota_policy)),
            shadow_mode=limits.shadow_mode,
        )

    def to_proto(self) -> catalog_pb2.PlanLimits:
        return catalog_pb2.PlanLimits(
            requests_per_second=self.requests_per_second,
            requests_per_minute=self.requests_per_minute,
            requests_per_hour=self.requests_per_hour,
            requests_per_day=self.requests_per_day,
            monthly_quota=self.monthly_quota,
            quota_policy=_QUOTA_POLICY_VALUES.get(self.quota_policy, catalog_pb2.QUOTA_POLICY_UNSPECIFIED),
            shadow_mode=self.shadow_mode,
        )
