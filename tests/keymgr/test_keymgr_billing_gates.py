"""decide() and billing's gates: a prepaid plan admits only while the application holds credit in the
plan's currency; a reached spend cap refuses any plan; both come after the subscription checks and
answer 402 with their own reason. The gates change in place as the change log applies them."""

from __future__ import annotations

from keymgr.decision import Allowed, decide
from keymgr.index import PlanEntry
from keymgr.snapshot import KeySnapshot
from tests.keymgr.test_keymgr_decision import APP, NOW, PLAN, SECRET, denied, request, snapshot, subscription

PREPAID = PlanEntry(id=PLAN.id, name=PLAN.name, prepaid=True, currency="EUR")


def _credit(snap: KeySnapshot, refused: bool, currency: str = "EUR") -> None:
    snap.set_gate(
        f"credit:{APP.id}:{currency}", ("credit_exhausted", "APPLICATION", APP.id, currency, refused)
    )


def test_a_prepaid_plan_without_credit_is_refused_with_402() -> None:
    snap = snapshot(plans=[PREPAID])
    refusal = denied(decide(snap, request(), NOW, SECRET))
    assert (refusal.http_status, refusal.reason, refusal.title) == (
        402,
        "credit_exhausted",
        "Credit exhausted",
    )
    assert refusal.context["subscription_id"] == "sub_one" and refusal.www_authenticate is None


def test_credit_in_the_plans_currency_admits_and_its_exhaustion_refuses() -> None:
    snap = snapshot(plans=[PREPAID])
    _credit(snap, refused=False, currency="USD")  # credit in another currency does not count
    assert denied(decide(snap, request(), NOW, SECRET)).reason == "credit_exhausted"
    _credit(snap, refused=False)
    assert isinstance(decide(snap, request(), NOW, SECRET), Allowed)
    _credit(snap, refused=True)
    assert denied(decide(snap, request(), NOW, SECRET)).reason == "credit_exhausted"
    snap.set_gate(f"credit:{APP.id}:EUR", None)
    assert denied(decide(snap, request(), NOW, SECRET)).reason == "credit_exhausted"


def test_a_postpaid_plan_ignores_credit() -> None:
    snap = snapshot()
    _credit(snap, refused=True)
    assert isinstance(decide(snap, request(), NOW, SECRET), Allowed)


def test_spend_caps_refuse_by_subscription_or_application() -> None:
    for scope, target in (("SUBSCRIPTION", "sub_one"), ("APPLICATION", APP.id)):
        snap = snapshot()
        gate_id = f"cap:{scope}:{target}"
        snap.set_gate(gate_id, ("spend_cap_reached", scope, target, "", True))
        refusal = denied(decide(snap, request(), NOW, SECRET))
        assert (refusal.http_status, refusal.reason) == (402, "spend_cap_reached")
        snap.set_gate(gate_id, ("spend_cap_reached", scope, target, "", False))
        assert isinstance(decide(snap, request(), NOW, SECRET), Allowed)
        snap.set_gate(gate_id, ("spend_cap_reached", scope, target, "", True))
        snap.set_gate(gate_id, None)
        assert isinstance(decide(snap, request(), NOW, SECRET), Allowed)
        assert not snap.capped and not snap.gates


def test_subscription_state_is_named_before_payment() -> None:
    snap = snapshot(plans=[PREPAID], subscriptions=[subscription("SUSPENDED")])
    assert denied(decide(snap, request(), NOW, SECRET)).reason == "subscription_suspended"
