"""The consumer's whole journey in a real headless Chromium (Debian's `chromium`, driven by Playwright;
`make test` installs it): sign up → browse the catalog → read the API's docs → create an application and
subscribe → create a key → a request through the real Envoy with that key returns 200 → the usage chart
shows it → after an invoice run the invoice is listed. A screenshot of each page is kept under
test-artifacts/portal/ (gitignored)."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.harness import Stack
from tests.portal.portal_helpers import published_api
from tollway.app.demo_openapi import demo_document
from tollway.billing.v1 import billing_pb2, billing_pb2_grpc
from tollway.catalog.v1 import catalog_pb2

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "portal"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make browser` installs it (make test does)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_sign_up_to_invoice_in_a_browser(portal_stack: Stack, browser: Browser) -> None:
    api, plan = published_api(portal_stack, "forecast")
    document = json.dumps({**demo_document(), "info": {"title": "Forecast", "version": "2.0.0"}}).encode()
    portal_stack.call(
        portal_stack.catalog.SetApiDocument,
        catalog_pb2.SetApiDocumentRequest(api_id=api.id, content=document),
    )
    base = f"http://{portal_stack.settings.portal_addr}"
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=base)
    page = context.new_page()
    page.set_default_timeout(15_000)

    # Sign up, with the keyboard only: the skip link comes first, every field is labelled.
    page.goto("/sign-up")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.get_by_label("Email").focus()
    page.keyboard.type(f"browser-{secrets.token_hex(3)}@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type("Browser Tester")
    page.keyboard.press("Tab")
    page.keyboard.type("browser test password")
    shot(page, "01-sign-up")
    page.keyboard.press("Enter")
    page.wait_for_url("**/catalog")

    # The catalog, with the plan's limits and prices in its currency.
    card = page.locator(".card", has_text="forecast")
    expect(card).to_contain_text("100 requests per minute")
    expect(card).to_contain_text("EUR 10.00 per billing period")
    shot(page, "02-catalog")

    # The API's reference docs, rendered from its OpenAPI document.
    card.get_by_role("link", name="forecast").click()
    expect(page.get_by_role("heading", name="API reference")).to_be_visible()
    expect(page.locator(".reference")).to_contain_text("Forecast 2.0.0")
    expect(page.locator("article.operation").first).to_contain_text("GET /{path}")
    shot(page, "03-docs")

    # An application, then the subscription.
    page.get_by_role("link", name="create an application").click()
    page.get_by_label("Name").fill("browser-app")
    page.get_by_role("button", name="Create application").click()
    expect(page.get_by_role("heading", name="browser-app")).to_be_visible()
    page.goto(f"/apis/{api.id}")
    page.get_by_label("Application").select_option(label="browser-app")
    page.get_by_label(plan.name).check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("table").first).to_contain_text("Active")
    shot(page, "04-subscribed")

    # A key, shown once, with a copy button (the script ran).
    page.get_by_label("Name (optional").fill("browser")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").input_value()
    assert key.startswith("tw_")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    shot(page, "05-key")

    # Through the real Envoy with that key.
    response, _ = portal_stack.wait_for_status(
        f"{api.context_path}/today", 200, {"x-api-key": key}, timeout=10
    )
    assert response.status == 200

    # The usage chart shows it (access logs are counted within a second or so).
    deadline = time.monotonic() + 30
    while True:
        page.goto("/usage?granularity=hour")
        if page.locator('[data-outcome="successful"]').inner_text() == "1" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(page.locator('[data-outcome="successful"]')).to_have_text("1")
    expect(page.locator('#usage-chart[data-drawn="true"] canvas').first).to_be_visible()
    expect(page.locator("#quota-table")).to_contain_text("per minute")
    shot(page, "06-usage")

    # After an invoice run, the invoice is listed, with its detail and CSV.
    billing = billing_pb2_grpc.BillingServiceStub(grpc.insecure_channel(portal_stack.settings.admin_addr))
    month = datetime.now(UTC).strftime("%Y-%m")
    portal_stack.call(billing.GenerateInvoices, billing_pb2.GenerateInvoicesRequest(billing_month=month))
    page.goto("/invoices")
    rows = page.locator("#invoices tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("browser-app")
    expect(rows.first).to_contain_text("EUR")
    shot(page, "07-invoices")
    rows.first.get_by_role("link").first.click()
    expect(page.locator("#invoice-lines")).to_contain_text("EUR")
    shot(page, "08-invoice")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.startswith("invoice,period_start") and "TOTAL" in csv_text

    # Phone-sized: the same pages fit.
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, base_url=base, storage_state=context.storage_state()
    )
    small = phone.new_page()
    small.goto("/usage")
    expect(small.locator("#usage-chart")).to_be_visible()
    shot(small, "09-usage-phone")
    phone.close()

    # The publisher's view of the same API.
    publisher = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=base)
    admin = publisher.new_page()
    admin.goto("/publisher/sign-in")
    admin.get_by_label("Admin token").fill(portal_stack.settings.admin_token)
    admin.get_by_role("button", name="Sign in").click()
    expect(admin.get_by_role("heading", name="Approval queue")).to_be_visible()
    shot(admin, "10-publisher")
    admin.goto(f"/publisher/analytics?api={api.id}")
    expect(admin.locator('#analytics-chart[data-drawn="true"] canvas').first).to_be_visible()
    expect(admin.locator("#top-consumers")).to_contain_text("browser-app")
    shot(admin, "11-publisher-analytics")
    assert os.listdir(ARTIFACTS)
    publisher.close()
    context.close()
