"""The plan's billing settings added for billing/: billable classes (catalog validation, pure)."""

from __future__ import annotations

import pytest

from billing import pricing as pr
from tollway.catalog.limits import PlanLimits
from tollway.catalog.validation import PricingDraft, validate_pricing
from tollway.errors import InvalidArgument


def test_billable_classes_are_canonical_and_checked() -> None:
    draft = PricingDraft(
        currency="EUR", unit_price="0.01", billable_classes=("client_error", "success", "success")
    )
    assert validate_pricing(draft, PlanLimits(quota_policy="HARD")).billable_classes == (
        "success",
        "client_error",
    )
    assert validate_pricing(PricingDraft(), PlanLimits(quota_policy="HARD")).billable_classes == ()
    with pytest.raises(InvalidArgument, match=r"billable_classes\[0\]"):
        validate_pricing(PricingDraft(billable_classes=("throttled",)), PlanLimits(quota_policy="HARD"))


def test_billing_and_catalog_agree_on_the_billable_classes() -> None:
    from tollway.catalog.validation import BILLABLE_CLASSES

    assert BILLABLE_CLASSES == pr.BILLABLE_CLASSES
    assert pr.Pricing.from_json({"currency": "EUR", "billable_classes": []}).billable_classes == ("success",)
