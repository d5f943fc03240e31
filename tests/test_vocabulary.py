"""The shared enums keep the stored and wire spellings, and the one place they differ maps both ways."""

from __future__ import annotations

import pytest

from tollway.catalog.limits import PlanLimits
from tollway.catalog.v1 import catalog_pb2
from tollway.vocabulary import (
    SHARED_LIMIT_SCOPES,
    BlockTarget,
    FailureMode,
    LimitScope,
    QuotaPolicy,
    RedisMode,
    WindowName,
)


def test_values_are_the_existing_spellings() -> None:
    assert [str(p) for p in QuotaPolicy] == ["HARD", "SOFT"]
    assert [str(w) for w in WindowName] == ["second", "minute", "hour", "day", "billing_period"]
    assert [str(s) for s in LimitScope] == ["subscription", "api", "application"]
    assert [str(m) for m in FailureMode] == ["allow", "deny"]
    assert [str(m) for m in RedisMode] == ["standalone", "cluster"]
    assert [str(t) for t in BlockTarget] == ["API", "APPLICATION", "API_KEY", "CLIENT_CIDR"]


def test_block_targets_match_the_store_proto() -> None:
    from tollway.store.v1 import store_pb2

    names = [name.removeprefix("BLOCK_TARGET_") for name, _ in store_pb2.BlockTarget.items()]
    assert names == ["UNSPECIFIED", *BlockTarget]


@pytest.mark.parametrize(
    ("scope", "stored"), [(LimitScope.API, "API"), (LimitScope.APPLICATION, "APPLICATION")]
)
def test_limit_scope_stored_spelling_round_trips(scope: LimitScope, stored: str) -> None:
    assert scope.stored == stored
    assert LimitScope.from_stored(stored) is scope
    assert stored in SHARED_LIMIT_SCOPES


def test_subscription_scope_and_unknown_spellings_are_not_stored() -> None:
    with pytest.raises(KeyError):
        LimitScope.SUBSCRIPTION.stored  # noqa: B018
    with pytest.raises(ValueError):
        LimitScope.from_stored("api")
    assert SHARED_LIMIT_SCOPES == ("API", "APPLICATION")


def test_plan_limits_proto_round_trip() -> None:
    proto = catalog_pb2.PlanLimits(
        requests_per_second=1,
        requests_per_minute=2,
        requests_per_hour=3,
        requests_per_day=4,
        monthly_quota=5,
        quota_policy=catalog_pb2.QUOTA_POLICY_SOFT,
        shadow_mode=True,
    )
    limits = PlanLimits.from_proto(proto)
    assert limits == PlanLimits(1, 2, 3, 4, 5, QuotaPolicy.SOFT, True)
    assert limits.soft_quota
    assert [limits.limit_of(window) for window in WindowName] == [1, 2, 3, 4, 5]
    assert limits.to_proto() == proto
    # Unspecified stays "" until validation; an unknown number stays visible for validation to reject.
    assert PlanLimits.from_proto(catalog_pb2.PlanLimits()).quota_policy == ""
    assert PlanLimits.from_proto(catalog_pb2.PlanLimits(quota_policy=7)).quota_policy == "7"  # type: ignore[arg-type]


def test_plan_limits_columns_are_the_plan_row_fields() -> None:
    from tollway import schema

    limits = PlanLimits(requests_per_minute=7, monthly_quota=9, quota_policy=QuotaPolicy.HARD)
    row = schema.Plan(id="plan_x", name="x", **limits.columns())
    assert PlanLimits.from_row(row) == limits
