"""The portal's effects at the gateway (a real Envoy): a subscription to a plan requiring approval is
pending on the page and refused (403), then usable within a second of the publisher approving it on the
publisher page; an account the publisher disables has its keys refused within a second. And no key,
password or reset link reaches a log line or a database column as given."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
from sqlalchemy import select, text

from tests.e2e.harness import Stack
from tests.portal.portal_helpers import published_api
from tests.portal.web_client import WebClient, error_of
from tollway.app.demo_openapi import demo_document_bytes
from tollway.billing.v1 import billing_pb2, billing_pb2_grpc
from tollway.catalog.v1 import catalog_pb2
from tollway.schema import SQLModel

PASSWORD = "gateway test password"


def signed_up(stack: Stack) -> tuple[WebClient, str]:
    client = WebClient(f"http://{stack.settings.portal_addr}")
    email = f"gw-{secrets.token_hex(4)}@example.com"
    assert client.sign_up(email, PASSWORD).status_code == 303
    return client, email


def publisher(stack: Stack) -> WebClient:
    client = WebClient(f"http://{stack.settings.portal_addr}")
    response = client.post(
        "/publisher/sign-in", {"admin_token": stack.settings.admin_token}, "/publisher/sign-in"
    )
    assert response.status_code == 303
    return client


def app_with_key(client: WebClient, name: str, api_id: str, plan_id: str) -> tuple[str, str, str]:
    """(application id, subscription id, full key), all made through the pages."""
    page = client.follow(client.post("/apps", {"name": name}, "/apps"))
    app_id = re.search(r"/apps/(app_\w+)/keys", page.text).group(1)  # type: ignore[union-attr]
    subscribed = client.post(f"/apis/{api_id}/subscribe", {"application_id": app_id, "plan_id": plan_id},
                             f"/apis/{api_id}")  # fmt: skip
    page = client.follow(subscribed)
    sub_id = re.search(r"/subscriptions/(sub_\w+)/cancel", page.text).group(1)  # type: ignore[union-attr]
    created = client.post(f"/apps/{app_id}/keys", {"name": "gw", "ttl": ""}, f"/apps/{app_id}")
    key = re.search(r'id="new-key" class="key" readonly value="(tw_[a-z2-7_]+)"', created.text)
    assert key is not None, created.text
    return app_id, sub_id, key.group(1)


def test_pending_subscription_is_refused_until_the_publisher_approves_it(portal_stack: Stack) -> None:
    api, plan = published_api(portal_stack, "approved", approval=True)
    client, _ = signed_up(portal_stack)
    app_id, sub_id, key = app_with_key(client, "approval-app", api.id, plan.id)
    assert "Pending approval" in client.get(f"/apps/{app_id}").text
    path, headers = f"{api.context_path}/data", {"x-api-key": key}
    response, _ = portal_stack.wait_for_status(path, 403, headers, timeout=10)
    assert response.status == 403 and response.json()["reason"] == "subscription_pending_approval"

    admin = publisher(portal_stack)
    queue = admin.get("/publisher")
    assert sub_id in queue.text
    approved = admin.post(f"/publisher/subscriptions/{sub_id}/approve", {}, "/publisher")
    assert approved.status_code == 303
    response, seconds = portal_stack.wait_for_status(path, 200, headers, timeout=5)
    assert response.status == 200 and seconds < 1.0, seconds
    assert "Active" in client.get(f"/apps/{app_id}").text
    assert sub_id not in admin.get("/publisher").text


def test_rejecting_needs_a_reason_and_shows_it_to_the_consumer(portal_stack: Stack) -> None:
    api, plan = published_api(portal_stack, "rejected", approval=True)
    client, _ = signed_up(portal_stack)
    app_id, sub_id, _ = app_with_key(client, "reject-app", api.id, plan.id)
    admin = publisher(portal_stack)
    refused = admin.post(f"/publisher/subscriptions/{sub_id}/reject", {"reason": ""}, "/publisher")
    assert refused.status_code == 400 and "reason" in error_of(refused)
    assert (
        admin.post(
            f"/publisher/subscriptions/{sub_id}/reject", {"reason": "not a partner"}, "/publisher"
        ).status_code
        == 303
    )
    page = client.get(f"/apps/{app_id}").text
    assert "Rejected" in page and "not a partner" in page


def test_a_disabled_accounts_keys_are_refused_within_a_second(portal_stack: Stack) -> None:
    api, plan = published_api(portal_stack, "disabled")
    client, email = signed_up(portal_stack)
    _, _, key = app_with_key(client, "disabled-app", api.id, plan.id)
    path, headers = f"{api.context_path}/data", {"x-api-key": key}
    portal_stack.wait_for_status(path, 200, headers, timeout=10)
    admin = publisher(portal_stack)
    rows = re.findall(
        r"<th scope=\"row\">([^<]+)</th>.*?/publisher/accounts/(acct_\w+)/disable",
        admin.get("/publisher").text,
        re.S,
    )
    account_id = dict(rows)[email]
    assert (
        admin.post(
            f"/publisher/accounts/{account_id}/disable", {"reason": "unpaid"}, "/publisher"
        ).status_code
        == 303
    )
    response, seconds = portal_stack.wait_for_status(path, 403, headers, timeout=5)
    assert response.status == 403 and seconds < 1.0, seconds
    assert response.json()["reason"] == "application_blocked"
    assert client.get("/apps").status_code == 303  # signed out
    assert "disabled" in error_of(client.sign_in(email, PASSWORD))

    assert admin.post(f"/publisher/accounts/{account_id}/enable", {}, "/publisher").status_code == 303
    response, seconds = portal_stack.wait_for_status(path, 200, headers, timeout=5)
    assert response.status == 200 and seconds < 1.0, seconds


def test_no_key_password_or_reset_link_in_logs_or_database(portal_stack: Stack) -> None:
    api, plan = published_api(portal_stack, "secrets")
    client, email = signed_up(portal_stack)
    _, _, key = app_with_key(client, "secret-app", api.id, plan.id)
    portal_stack.wait_for_status(f"{api.context_path}/x", 200, {"x-api-key": key}, timeout=10)
    client.post("/forgot-password", {"email": email}, "/forgot-password")
    outbox = Path(portal_stack.settings.portal_outbox_dir or "")
    messages = sorted(outbox.glob("*.eml"))
    assert messages and all(m.stat().st_mode & 0o777 == 0o600 for m in messages)
    assert outbox.stat().st_mode & 0o777 == 0o700
    link = re.search(r"/reset-password/(\S+)", messages[-1].read_text())
    assert link is not None
    reset_token = link.group(1)
    new_password = "a new gateway password"
    assert (
        client.post(
            f"/reset-password/{reset_token}", {"password": new_password}, f"/reset-password/{reset_token}"
        ).status_code
        == 200
    )
    session_cookie = client.http.cookies.get("tollway_session") or ""

    secrets_given = [key, key.split("_")[2], PASSWORD, new_password, reset_token]
    logged = "\n".join(portal_stack.logs.lines)
    for secret in secrets_given:
        assert secret not in logged, "a secret reached a log line"

    async def stored() -> str:
        values = []
        async with portal_stack.process.db.engine.connect() as conn:
            for table in SQLModel.metadata.sorted_tables:
                rows = await conn.execute(select(table))
                values.extend(str(v) for row in rows for v in row)
            values.extend(
                str(v) for row in await conn.execute(text("SELECT * FROM portal_session")) for v in row
            )
        return "\n".join(values)

    database = portal_stack.run(stored())
    for secret in [*secrets_given, *([session_cookie] if session_cookie else [])]:
        assert secret not in database, "a secret is stored as given"


def test_publisher_analytics_show_the_apis_traffic(portal_stack: Stack) -> None:
    plan = portal_stack.create_plan(
        "analytics-plan",
        limits=catalog_pb2.PlanLimits(requests_per_minute=3),
        pricing=catalog_pb2.PlanPricing(currency="EUR", recurring_fee="20.00"),
    )
    api = portal_stack.create_api("analytics", "/analytics/v1", [plan.id])
    client, _ = signed_up(portal_stack)
    app_id, _, key = app_with_key(client, "analytics-app", api.id, plan.id)
    headers = {"x-api-key": key}
    portal_stack.wait_for_status("/analytics/v1/items/1", 200, headers, timeout=10)
    statuses = [portal_stack.get(f"/analytics/v1/items/{n}", headers).status for n in range(2, 6)]
    assert 429 in statuses
    assert portal_stack.get("/analytics/v1/items/9", {"x-api-key": "tw_wrong"}).status == 401
    billing = billing_pb2_grpc.BillingServiceStub(grpc.insecure_channel(portal_stack.settings.admin_addr))
    month = datetime.now(UTC).strftime("%Y-%m")

    admin = publisher(portal_stack)
    deadline = time.monotonic() + 30
    while True:
        page = admin.get(f"/publisher/analytics?api={api.id}")
        total = re.search(r'data-total="requests">(\d+)<', page.text)
        if (total and int(total.group(1)) >= 6) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert page.status_code == 200
    # At least the six made here (readiness polls may add refusals of their own).
    assert total is not None and int(total.group(1)) >= 6, page.text
    portal_stack.call(
        billing.GenerateInvoices,
        billing_pb2.GenerateInvoicesRequest(billing_month=month, application_id=app_id),
    )
    page = admin.get(f"/publisher/analytics?api={api.id}&granularity=day")
    text = page.text
    assert "analytics-app" in text  # top consumers
    assert "/analytics/v1/items/{id}" in text  # resources (method and route)
    statuses_table = text[text.index('id="statuses"') :]
    assert ">200<" in statuses_table and ">429<" in statuses_table and ">401<" in statuses_table
    destinations = text[text.index('id="destinations"') :]
    assert portal_stack.upstream_url.removeprefix("http://") in destinations
    throttled = re.search(r'data-total="throttled">(\d+)', text)
    assert throttled is not None and int(throttled.group(1)) == statuses.count(429)
    revenue = text[text.index('id="revenue"') :]
    assert "analytics-plan" in revenue and "EUR" in revenue
    assert 'id="analytics-chart"' in text and 'id="analytics-data"' in text
    assert admin.get(f"/publisher/analytics?api={api.id}&granularity=week").status_code == 400
    assert client.get("/publisher/analytics").status_code == 303  # consumers are sent to sign in


def test_the_cli_manages_accounts_documents_and_reads_the_breakdown(
    portal_stack: Stack, tmp_path: Path
) -> None:
    env = {**os.environ, "TOLLWAY_ADMIN_ADDR": portal_stack.settings.admin_addr,
           "TOLLWAY_ADMIN_TOKEN": portal_stack.settings.admin_token}  # fmt: skip
    tollway = str(Path(sys.executable).parent / "tollway")

    def run(*args: str) -> tuple[int, str, str]:
        done = subprocess.run([tollway, *args], env=env, capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout, done.stderr

    api, plan = published_api(portal_stack, "cli")
    client, email = signed_up(portal_stack)
    _, _, key = app_with_key(client, "cli-app", api.id, plan.id)
    path, headers = f"{api.context_path}/things/7", {"x-api-key": key}
    portal_stack.wait_for_status(path, 200, headers, timeout=10)

    code, out, _ = run("portal", "account", "list")
    assert code == 0 and email in out
    code, out, _ = run("portal", "account", "disable", email, "--reason", "cli test")
    assert code == 0 and json.loads(out)["account"]["disabled_reason"] == "cli test"
    response, seconds = portal_stack.wait_for_status(path, 403, headers, timeout=5)
    assert response.status == 403 and seconds < 1.0
    assert run("portal", "account", "enable", email)[0] == 0
    portal_stack.wait_for_status(path, 200, headers, timeout=5)
    code, _, err = run("portal", "account", "disable", "nobody@example.com")
    assert code == 1 and "NOT_FOUND" in err

    bad = tmp_path / "bad.json"
    bad.write_text('{"openapi": "3.0.0"}')
    code, _, err = run("api", "doc", "set", api.id, str(bad))
    assert code == 1 and "INVALID_ARGUMENT" in err and "invalid OpenAPI document" in err
    good = tmp_path / "good.json"
    good.write_bytes(demo_document_bytes())
    code, out, _ = run("api", "doc", "set", api.id, str(good))
    assert code == 0 and json.loads(out)["title"] == "Echo"
    code, out, _ = run("api", "doc", "get", api.id)
    assert code == 0 and json.loads(out) == json.loads(demo_document_bytes())

    deadline = time.monotonic() + 20
    while True:
        code, out, _ = run(
            "usage", "breakdown", "--api", api.id, "--by", "method", "--by", "route", "--by", "status"
        )
        rows = json.loads(out).get("rows", [])
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 0
    assert {"method": "GET", "route": f"{api.context_path}/things/{{id}}", "status_code": 200} in [
        {k: row.get(k) for k in ("method", "route", "status_code")} for row in rows
    ]
