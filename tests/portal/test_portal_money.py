"""A consumer's money in the portal, on a whole running process with a real Envoy: spend caps set and
cleared by the consumer over the consumer gRPC API (BillingService's validation and messages; another
account's ids NOT_FOUND like missing ones) and in a real Chromium (CSRF-checked forms; a bad value shows
the message and writes nothing), with spend so far, alerts and the prepaid credit ledger; and an
invoice page and CSV with the customer's details, subtotal, tax lines, total, paid from credit and
amount due."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.harness import Stack
from tests.portal.portal_helpers import PASSWORD, Consumer, published_api, sign_up
from tests.portal.test_portal_browser import browser, shot
from tollway.billing.v1 import accounts_pb2, accounts_pb2_grpc, billing_pb2, billing_pb2_grpc
from tollway.portal.v1 import portal_pb2 as pb

__all__ = ["browser"]  # the module-scoped Chromium fixture


def _billing(stack: Stack) -> billing_pb2_grpc.BillingServiceStub:
    return billing_pb2_grpc.BillingServiceStub(grpc.insecure_channel(stack.settings.admin_addr))


def _customer(stack: Stack, name: str) -> tuple[Consumer, str, str, str]:
    """A consumer with an application subscribed to a fresh API: (consumer, app id, sub id, path)."""
    api, plan = published_api(stack, name)
    consumer = sign_up(stack, name)
    app = consumer.call("CreateApplication", pb.CreateApplicationRequest(name=f"{name}-app")).application
    sub = consumer.call(
        "CreateSubscription",
        pb.CreateSubscriptionRequest(application_id=app.id, api_id=api.id, plan_id=plan.id),
    ).subscription
    return consumer, app.id, sub.id, api.context_path


def _refusal(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _caps(stack: Stack, scope: str, target_id: str) -> list[tuple[str, str, str]]:
    request = billing_pb2.ListSpendCapsRequest(scope=scope, target_id=target_id)
    return [(c.kind, c.limit, c.currency) for c in stack.call(_billing(stack).ListSpendCaps, request).caps]


def _eventually(check: Callable[[], bool], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.3)


def test_spend_caps_over_the_consumer_api(portal_stack: Stack) -> None:
    alice, app, sub, _ = _customer(portal_stack, "capper")
    bob, bob_app, bob_sub, _ = _customer(portal_stack, "capped-bob")
    cap = billing_pb2.SpendCap(
        scope="APPLICATION", target_id=app, kind="CHARGE", limit="12.50", currency="EUR"
    )
    set_cap = alice.call("SetSpendCap", pb.SetSpendCapRequest(cap=cap)).cap
    assert (set_cap.scope, set_cap.target_id, set_cap.limit, set_cap.currency) == (
        "APPLICATION",
        app,
        "12.50",
        "EUR",
    )
    requests_cap = billing_pb2.SpendCap(scope="subscription", target_id=sub, kind="REQUESTS", limit="100")
    alice.call("SetSpendCap", pb.SetSpendCapRequest(cap=requests_cap))
    listed = alice.call("ListSpendCaps", pb.ListSpendCapsRequest(application_id=app)).caps
    assert sorted((c.scope, c.kind, c.limit) for c in listed) == [
        ("APPLICATION", "CHARGE", "12.50"), ("SUBSCRIPTION", "REQUESTS", "100"),
    ]  # fmt: skip
    only_sub = alice.call("ListSpendCaps", pb.ListSpendCapsRequest(subscription_id=sub)).caps
    assert [(c.scope, c.kind) for c in only_sub] == [("SUBSCRIPTION", "REQUESTS")]

    # Bad input: BillingService's own status and message, nothing written.
    for bad in (
        billing_pb2.SpendCap(scope="APPLICATION", target_id=app, kind="CHARGE", limit="-1", currency="EUR"),
        billing_pb2.SpendCap(scope="APPLICATION", target_id=app, kind="CHARGE", limit="5", currency="XXQ"),
        billing_pb2.SpendCap(scope="APPLICATION", target_id=app, kind="BYTES", limit="5"),
        billing_pb2.SpendCap(scope="ACCOUNT", target_id=app, kind="CHARGE", limit="5", currency="EUR"),
        billing_pb2.SpendCap(scope="APPLICATION", target_id="", kind="CHARGE", limit="5", currency="EUR"),
    ):
        mine = _refusal(lambda bad=bad: alice.call("SetSpendCap", pb.SetSpendCapRequest(cap=bad)))
        theirs = _refusal(
            lambda bad=bad: portal_stack.call(
                _billing(portal_stack).SetSpendCap, billing_pb2.SetSpendCapRequest(cap=bad)
            )
        )
        assert mine.code() == theirs.code() == grpc.StatusCode.INVALID_ARGUMENT, mine.details()
        assert mine.details() == theirs.details()
    assert sorted(_caps(portal_stack, "APPLICATION", app)) == [("CHARGE", "12.50", "EUR")]

    # Another account's application or subscription: NOT_FOUND worded as a missing one; nothing written.
    for scope, theirs_id, missing in (
        ("APPLICATION", bob_app, "app_zzzzzzzzzzzz"), ("SUBSCRIPTION", bob_sub, "sub_zzzzzzzzzzzz"),
    ):  # fmt: skip
        for target in (theirs_id, missing):
            stolen = billing_pb2.SpendCap(scope=scope, target_id=target, kind="REQUESTS", limit="1")
            refused = _refusal(
                lambda stolen=stolen: alice.call("SetSpendCap", pb.SetSpendCapRequest(cap=stolen))
            )
            assert refused.code() == grpc.StatusCode.NOT_FOUND
            assert refused.details().replace(target, "<id>").startswith(scope.lower())
            cleared = _refusal(
                lambda target=target, scope=scope: alice.call(
                    "ClearSpendCap", pb.ClearSpendCapRequest(scope=scope, target_id=target, kind="REQUESTS")
                )
            )
            assert cleared.code() == grpc.StatusCode.NOT_FOUND
        assert _caps(portal_stack, scope, theirs_id) == []
    for rpc, request in (
        ("ListSpendCaps", pb.ListSpendCapsRequest(application_id=bob_app)),
        ("ListAlerts", pb.ListAlertsRequest(subscription_id=bob_sub)),
        ("GetCredit", pb.GetCreditRequest(application_id=bob_app)),
    ):
        assert (
            _refusal(lambda rpc=rpc, request=request: alice.call(rpc, request)).code()
            == grpc.StatusCode.NOT_FOUND
        )
    assert bob.call("ListSpendCaps", pb.ListSpendCapsRequest(application_id=bob_app)).caps == []

    clear = pb.ClearSpendCapRequest(scope="APPLICATION", target_id=app, kind="CHARGE")
    assert alice.call("ClearSpendCap", clear).cleared
    assert not alice.call("ClearSpendCap", clear).cleared
    assert _caps(portal_stack, "APPLICATION", app) == []


def _sign_in(browser: Browser, stack: Stack, consumer: Consumer) -> Page:
    context = browser.new_context(
        viewport={"width": 1200, "height": 900}, base_url=f"http://{stack.settings.portal_addr}"
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/sign-in")
    page.get_by_label("Email").fill(consumer.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/apps")
    return page


def _reload_until(page: Page, path: str, check: Callable[[], bool]) -> None:
    def fresh() -> bool:
        page.goto(path)
        return check()

    _eventually(fresh)


def test_caps_alerts_and_credit_in_a_browser(portal_stack: Stack, browser: Browser) -> None:
    consumer, app, sub, context_path = _customer(portal_stack, "browsercap")
    billing = _billing(portal_stack)
    portal_stack.call(
        billing.TopUpCredit,
        billing_pb2.TopUpCreditRequest(
            application_id=app, currency="EUR", amount="5.00", request_id=f"t-{app}"
        ),
    )
    key = consumer.call("CreateApiKey", pb.CreateApiKeyRequest(application_id=app, name="k")).key
    page = _sign_in(browser, portal_stack, consumer)
    page.goto(f"/apps/{app}")
    expect(page.locator("#no-caps")).to_be_visible()
    expect(page.locator("#credit-balances")).to_contain_text("5.00")
    expect(page.locator("#credit-ledger")).to_contain_text("Top-up")

    # A charge cap on the application, a requests cap on the subscription.
    page.locator("#cap-target").select_option(label="browsercap-app (application)")
    page.locator("#cap-kind").select_option(label="charge (amount)")
    page.locator("#cap-limit").fill("12.50")
    page.locator("#cap-currency").fill("EUR")
    page.get_by_role("button", name="Set cap").click()
    expect(page.get_by_role("status")).to_have_text("The spend cap is set.")
    expect(page.locator("#spend-caps")).to_contain_text("EUR 12.50")
    page.locator("#cap-target").select_option(value=f"SUBSCRIPTION:{sub}")
    page.locator("#cap-kind").select_option(label="billable requests")
    page.locator("#cap-limit").fill("4")
    page.locator("#cap-currency").fill("")
    page.get_by_role("button", name="Set cap").click()
    expect(page.locator("#spend-caps")).to_contain_text("4 requests")
    caps = {
        ("APPLICATION", app): [("CHARGE", "12.50", "EUR")],
        ("SUBSCRIPTION", sub): [("REQUESTS", "4", "")],
    }
    assert {target: _caps(portal_stack, *target) for target in caps} == caps

    # A bad value: the page says why (BillingService's message); nothing is written.
    page.locator("#cap-target").select_option(label="browsercap-app (application)")
    page.locator("#cap-kind").select_option(label="charge (amount)")
    page.locator("#cap-limit").fill("-5")
    page.locator("#cap-currency").fill("EUR")
    page.get_by_role("button", name="Set cap").click()
    bad = billing_pb2.SpendCap(scope="APPLICATION", target_id=app, kind="CHARGE", limit="-5", currency="EUR")
    expected = _refusal(
        lambda: portal_stack.call(billing.SetSpendCap, billing_pb2.SetSpendCapRequest(cap=bad))
    )
    expect(page.locator("#form-error")).to_contain_text(expected.details())
    expect(page.locator("#cap-limit")).to_have_value("-5")
    shot(page, "money-01-bad-cap")
    assert {target: _caps(portal_stack, *target) for target in caps} == caps
    # A form posted without its CSRF token is refused and writes nothing.
    forged = page.request.post(
        f"/apps/{app}/caps",
        form={"target": f"APPLICATION:{app}", "kind": "CHARGE", "limit": "1", "currency": "EUR"},
    )
    assert forged.status == 403
    assert {target: _caps(portal_stack, *target) for target in caps} == caps

    # Two requests through the real Envoy: spend so far, a 50 % alert, and the credit burned.
    for _ in range(2):
        portal_stack.wait_for_status(f"{context_path}/today", 200, {"x-api-key": key}, timeout=10)
    _reload_until(
        page,
        f"/apps/{app}",
        lambda: (
            "EUR 0.02" in page.locator("#spend-caps").inner_text()
            and "2 requests" in page.locator("#spend-caps").inner_text()
            and page.locator("#alerts").count() == 1
            and "50 %" in page.locator("#alerts").inner_text()
            and "4.98" in page.locator("#credit-balances").inner_text()
        ),
    )
    expect(page.locator("#alerts")).to_contain_text("spend cap (requests)")
    expect(page.locator("#credit-ledger")).to_contain_text("Usage")
    shot(page, "money-02-caps")

    # Clear the charge cap.
    page.get_by_role("button", name="Clear the charge cap on browsercap-app (application)").click()
    expect(page.get_by_role("status")).to_have_text("The spend cap is cleared.")
    expect(page.locator("#spend-caps")).not_to_contain_text("EUR 12.50")
    assert _caps(portal_stack, "APPLICATION", app) == []
    assert _caps(portal_stack, "SUBSCRIPTION", sub) == [("REQUESTS", "4", "")]
    page.context.close()


def test_an_invoice_with_tax_and_credit_in_a_browser(portal_stack: Stack, browser: Browser) -> None:
    consumer, app, _, context_path = _customer(portal_stack, "taxed")
    billing = _billing(portal_stack)
    accounts = accounts_pb2_grpc.BillingAccountServiceStub(
        grpc.insecure_channel(portal_stack.settings.admin_addr)
    )
    account = portal_stack.call(
        accounts.CreateBillingAccount,
        accounts_pb2.CreateBillingAccountRequest(
            name="Acme Widgets GmbH",
            email="ap@acme.example",
            address="Hauptstr. 1\n10115 Berlin",
            tax_id="DE123456789",
        ),
    ).billing_account
    portal_stack.call(
        accounts.SetApplicationBillingAccount,
        accounts_pb2.SetApplicationBillingAccountRequest(application_id=app, billing_account_id=account.id),
    )
    portal_stack.call(
        accounts.CreateTaxRate,
        accounts_pb2.CreateTaxRateRequest(
            billing_account_id=account.id, name="VAT", rate="19", inclusive=False
        ),
    )
    portal_stack.call(
        billing.TopUpCredit,
        billing_pb2.TopUpCreditRequest(
            application_id=app, currency="EUR", amount="5.00", request_id=f"t-{app}"
        ),
    )
    key = consumer.call("CreateApiKey", pb.CreateApiKeyRequest(application_id=app, name="k")).key
    for _ in range(3):
        portal_stack.wait_for_status(f"{context_path}/today", 200, {"x-api-key": key}, timeout=10)

    def burned() -> bool:
        balances = consumer.call("GetCredit", pb.GetCreditRequest(application_id=app)).balances
        return [b.balance for b in balances] == ["4.97"]

    _eventually(burned)
    month = datetime.now(UTC).strftime("%Y-%m")
    (draft,) = portal_stack.call(
        billing.GenerateInvoices, billing_pb2.GenerateInvoicesRequest(billing_month=month, application_id=app)
    ).invoices
    final = portal_stack.call(
        billing.FinalizeInvoice,
        billing_pb2.FinalizeInvoiceRequest(
            id=draft.id,
            allow_incomplete=billing_pb2.AllowIncompleteUsage(by="test", reason="the month is open"),
        ),
    ).invoice
    invoice = consumer.call("GetInvoice", pb.GetInvoiceRequest(id=final.id)).invoice
    (tax,) = invoice.taxes
    assert (tax.name, tax.rate, tax.inclusive) == ("VAT", "19", False)
    assert Decimal(invoice.total) == Decimal(invoice.subtotal) + Decimal(tax.amount) > 0
    assert invoice.paid_from_credit == "0.03"
    assert Decimal(invoice.amount_due) == Decimal(invoice.total) - Decimal("0.03")

    page = _sign_in(browser, portal_stack, consumer)
    page.goto(f"/invoices/{invoice.id}")
    customer = page.locator("#customer")
    for text in ("Acme Widgets GmbH", "Hauptstr. 1", "10115 Berlin", "ap@acme.example", "DE123456789"):
        expect(customer).to_contain_text(text)
    lines = page.locator("#invoice-lines tbody")
    for line in invoice.lines:
        expect(lines).to_contain_text(line.description)
    assert any(line.description.startswith("Recurring fee") for line in invoice.lines)
    totals = page.locator("#invoice-totals")
    expect(totals.locator('[data-total="subtotal"]')).to_have_text(invoice.subtotal)
    expect(totals.locator('[data-total="tax"]')).to_have_text(tax.amount)
    expect(totals).to_contain_text(f"VAT 19 % added, on {tax.taxable}")
    expect(totals.locator('[data-total="total"]')).to_have_text(invoice.total)
    expect(totals.locator('[data-total="paid"]')).to_have_text("0.03")
    expect(totals.locator('[data-total="due"]')).to_have_text(invoice.amount_due)
    expect(page.locator("#amount-due")).to_contain_text(f"EUR {invoice.amount_due}")
    shot(page, "money-03-invoice")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    summary = {row["kind"]: row for row in rows if not row["position"]}
    assert summary["SUBTOTAL"]["amount"] == invoice.subtotal
    assert (summary["TAX"]["description"], summary["TAX"]["amount"]) == ("VAT 19 % added", tax.amount)
    assert summary["TAX"]["quantity"] == tax.taxable
    assert summary["TOTAL"]["amount"] == invoice.total
    assert summary["PAID_FROM_CREDIT"]["amount"] == "0.03"
    assert summary["AMOUNT_DUE"]["amount"] == invoice.amount_due
    assert {row["customer_name"] for row in rows} == {"Acme Widgets GmbH"}
    assert {row["customer_tax_id"] for row in rows} == {"DE123456789"}
    described = [row["description"] for row in rows if row["position"]]
    assert described == [line.description for line in invoice.lines]
    page.context.close()
