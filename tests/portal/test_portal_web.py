"""The web portal over HTTP against a whole running process: CSRF on every state-changing request,
session cookie flags, sign-in limits and one answer for a wrong password or an unknown email, a clear
message and nothing written for bad input in every form, the approval flow at the gateway, and an
account disabled from the publisher view."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tests.e2e.harness import Stack
from tests.portal.portal_helpers import published_api
from tests.portal.web_client import WebClient, error_of
from tollway.schema import SQLModel

PASSWORD = "web test password"
# What a form may write: everything a consumer or the publisher changes through the pages.
WRITTEN_TABLES = (
    "portal_account",
    "portal_session",
    "portal_reset_token",
    "application",
    "subscription",
    "subscription_event",
    "api_key",
    "block_rule",
    "api_document",
)


def snapshot(stack: Stack) -> dict[str, list[str]]:
    async def dump() -> dict[str, list[str]]:
        tables: dict[str, list[str]] = {}
        async with stack.process.db.engine.connect() as conn:
            for name in WRITTEN_TABLES:
                table = SQLModel.metadata.tables[name]
                rows = (await conn.execute(select(table))).mappings().all()
                tables[name] = sorted(repr(sorted(dict(row).items())) for row in rows)
        return tables

    return stack.run(dump())


def portal(stack: Stack) -> WebClient:
    return WebClient(f"http://{stack.settings.portal_addr}")


def new_email() -> str:
    return f"web-{secrets.token_hex(4)}@example.com"


@pytest.fixture
def consumer(portal_stack: Stack) -> Iterator[WebClient]:
    client = portal(portal_stack)
    assert client.sign_up(new_email(), PASSWORD).status_code == 303
    yield client
    client.close()


@pytest.fixture
def publisher(portal_stack: Stack) -> Iterator[WebClient]:
    client = portal(portal_stack)
    signed_in = client.post(
        "/publisher/sign-in", {"admin_token": portal_stack.settings.admin_token}, "/publisher/sign-in"
    )
    assert signed_in.status_code == 303
    yield client
    client.close()


def test_session_cookie_is_httponly_samesite_and_path_scoped(portal_stack: Stack) -> None:
    client = portal(portal_stack)
    response = client.sign_up(new_email(), PASSWORD)
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "session" in v)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert cookie.startswith("tollway_session=")
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP here; the HTTPS test checks Secure
    page = client.get("/apps")
    assert page.status_code == 200
    for header in ("content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options"):
        assert header in page.headers


def test_every_state_changing_request_needs_the_csrf_token(
    portal_stack: Stack, consumer: WebClient, publisher: WebClient
) -> None:
    api, plan = published_api(portal_stack, "csrf")
    created = consumer.follow(consumer.post("/apps", {"name": "csrf-app"}, "/apps"))
    app_id = re.search(r"/apps/(app_\w+)/keys", created.text).group(1)  # type: ignore[union-attr]
    key_page = consumer.post(f"/apps/{app_id}/keys", {"name": "k", "ttl": ""}, f"/apps/{app_id}")
    key_id = re.search(r"/keys/(\w+)/rotate", consumer.get(f"/apps/{app_id}").text).group(1)  # type: ignore[union-attr]
    assert key_page.status_code == 200
    other = portal(portal_stack)
    other.sign_up(new_email(), PASSWORD)
    foreign_token = other.csrf("/apps")  # a valid token of another session
    before = snapshot(portal_stack)
    posts = [
        (consumer, "/apps", {"name": "x"}),
        (consumer, f"/apps/{app_id}/delete", {}),
        (consumer, f"/apps/{app_id}/keys", {"name": "x"}),
        (consumer, f"/apis/{api.id}/subscribe", {"application_id": app_id, "plan_id": plan.id}),
        (consumer, f"/keys/{key_id}/rotate", {"grace": "0"}),
        (consumer, f"/keys/{key_id}/revoke", {}),
        (consumer, "/sign-out", {}),
        (consumer, "/sign-up", {"email": new_email(), "password": PASSWORD}),
        (consumer, "/forgot-password", {"email": "x@example.com"}),
        (publisher, "/publisher/accounts/acct_x/disable", {"reason": "x"}),
        (publisher, f"/publisher/apis/{api.id}/document", {"document": "{}"}),
    ]
    for client, path, data in posts:
        for token in (None, "", "forged", foreign_token):
            body = data if token is None else {"csrf_token": token, **data}
            response = client.http.post(path, data=body)
            assert response.status_code == 403, (path, token, response.status_code)
            assert "has expired or did not come from this site" in response.text
    assert snapshot(portal_stack) == before
    assert consumer.get("/apps").status_code == 200  # still signed in: sign-out was refused too


def test_wrong_password_and_unknown_email_get_the_same_page(portal_stack: Stack) -> None:
    email = new_email()
    portal(portal_stack).sign_up(email, PASSWORD)
    client = portal(portal_stack)
    wrong = client.sign_in(email, "not the password")
    unknown = client.sign_in("nobody-" + email, "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert error_of(wrong) == error_of(unknown) == "email or password is incorrect"

    def normalized(text: str) -> str:
        text = re.sub(r'name="csrf_token" value="[^"]+"', "", text)
        return re.sub(r'name="email"([^>]*) value="[^"]*"', r'name="email"\1', text)

    assert normalized(wrong.text) == normalized(unknown.text)


def test_sign_in_is_rate_limited_per_account(portal_stack: Stack) -> None:
    email = new_email()
    portal(portal_stack).sign_up(email, PASSWORD)
    client = portal(portal_stack)
    statuses = [client.sign_in(email, f"wrong password {n}").status_code for n in range(5)]
    assert statuses == [401] * 5
    refused = client.sign_in(email, PASSWORD)  # even the right password, for a while
    assert refused.status_code == 429
    assert "too many failed sign-in attempts" in error_of(refused)
    assert "tollway_session=" not in refused.headers.get("set-cookie", "")


def test_bad_input_in_every_form_shows_a_message_and_writes_nothing(
    portal_stack: Stack, consumer: WebClient, publisher: WebClient
) -> None:
    api, plan = published_api(portal_stack, "badinput", approval=True)
    app_page = consumer.follow(consumer.post("/apps", {"name": "bad-input-app"}, "/apps"))
    app_id = re.search(r"/apps/(app_\w+)/keys", app_page.text).group(1)  # type: ignore[union-attr]
    consumer.post(
        f"/apis/{api.id}/subscribe", {"application_id": app_id, "plan_id": plan.id}, f"/apis/{api.id}"
    )
    consumer.post(f"/apps/{app_id}/keys", {"name": "k", "ttl": ""}, f"/apps/{app_id}")
    key_id = re.search(r"/keys/(\w+)/rotate", consumer.get(f"/apps/{app_id}").text).group(1)  # type: ignore[union-attr]
    sub_id = re.search(r"/subscriptions/(sub_\w+)/cancel", consumer.get(f"/apps/{app_id}").text).group(1)  # type: ignore[union-attr]
    anonymous = portal(portal_stack)
    cases = [
        (anonymous, "/sign-up", "/sign-up", {"email": "", "password": PASSWORD}, "email is required"),
        (
            anonymous,
            "/sign-up",
            "/sign-up",
            {"email": "not-an-email", "password": PASSWORD},
            "email must be an address",
        ),
        (
            anonymous,
            "/sign-up",
            "/sign-up",
            {"email": "x" * 300 + "@example.com", "password": PASSWORD},
            "at most 254",
        ),
        (anonymous, "/sign-up", "/sign-up", {"email": new_email(), "password": "short"}, "at least 10"),
        (anonymous, "/sign-up", "/sign-up", {"email": new_email(), "password": "p" * 300}, "at most 256"),
        (
            anonymous,
            "/sign-up",
            "/sign-up",
            {"email": new_email(), "password": PASSWORD, "display_name": "n" * 101},
            "at most 100",
        ),
        (anonymous, "/sign-in", "/sign-in", {"email": "", "password": ""}, "email or password is incorrect"),
        (anonymous, "/forgot-password", "/forgot-password", {"email": "nope"}, "email must be an address"),
        (anonymous, "/forgot-password", "/forgot-password", {"email": ""}, "email is required"),
        (
            anonymous,
            "/reset-password/" + "a" * 43,
            "/reset-password/" + "a" * 43,
            {"password": PASSWORD},
            "invalid or has expired",
        ),
        (anonymous, "/reset-password/x", "/reset-password/x", {"password": "short"}, "at least 10"),
        (consumer, "/apps", "/apps", {"name": ""}, "name is required"),
        (consumer, "/apps", "/apps", {"name": "n" * 101}, "name must be at most 100 characters"),
        (consumer, "/apps", "/apps", {"name": "bad-input-app"}, "already has an application named"),
        (
            consumer,
            "/apps",
            "/apps",
            {"name": "x", "description": "d" * 2001},
            "description must be at most 2000",
        ),
        (
            consumer,
            f"/apis/{api.id}/subscribe",
            f"/apis/{api.id}",
            {"application_id": app_id, "plan_id": ""},
            "choose a plan",
        ),
        (
            consumer,
            f"/apis/{api.id}/subscribe",
            f"/apis/{api.id}",
            {"application_id": app_id, "plan_id": "nope"},
            "is not offered by API",
        ),
        (
            consumer,
            f"/apis/{api.id}/subscribe",
            f"/apis/{api.id}",
            {"application_id": "", "plan_id": plan.id},
            "choose an application",
        ),
        (
            consumer,
            f"/apis/{api.id}/subscribe",
            f"/apis/{api.id}",
            {"application_id": app_id, "plan_id": plan.id},
            "already subscribed",
        ),
        (
            consumer,
            f"/apps/{app_id}/keys",
            f"/apps/{app_id}",
            {"name": "k" * 101, "ttl": ""},
            "name must be at most 100",
        ),
        (
            consumer,
            f"/apps/{app_id}/keys",
            f"/apps/{app_id}",
            {"name": "k", "ttl": "12"},
            "expiry must be one of",
        ),
        (
            consumer,
            f"/keys/{key_id}/rotate",
            f"/apps/{app_id}",
            {"grace": "99"},
            "grace period must be one of",
        ),
        (publisher, f"/publisher/subscriptions/{sub_id}/reject", "/publisher", {"reason": ""}, "reason"),
        (
            publisher,
            f"/publisher/subscriptions/{sub_id}/reject",
            "/publisher",
            {"reason": "r" * 501},
            "at most 500",
        ),
        (publisher, "/publisher/accounts/acct_zzzz/disable", "/publisher", {"reason": "x"}, "not found"),
        (
            publisher,
            f"/publisher/apis/{api.id}/document",
            "/publisher",
            {"document": ""},
            "the OpenAPI document is empty",
        ),
        (
            publisher,
            f"/publisher/apis/{api.id}/document",
            "/publisher",
            {"document": '{"openapi": "3.0.0"}'},
            "invalid OpenAPI document",
        ),
        (
            publisher,
            f"/publisher/apis/{api.id}/document",
            "/publisher",
            {"document": "swagger: '2.0'"},
            "OpenAPI 3",
        ),
        (
            publisher,
            "/publisher/sign-in",
            "/publisher/sign-in",
            {"admin_token": "wrong"},
            "admin token is incorrect",
        ),
    ]
    before = snapshot(portal_stack)
    for client, path, form_page, data, message in cases:
        response = client.post(path, data, form_page)
        shown = error_of(response)
        assert 400 <= response.status_code < 500, (path, data, response.status_code)
        assert message in shown, (path, data, shown)
        assert snapshot(portal_stack) == before, (path, data)
    # An upload that is not an OpenAPI document, as a file.
    response = publisher.post(
        f"/publisher/apis/{api.id}/document",
        {},
        "/publisher",
        files={"file": ("api.yaml", b"openapi: 3.0.0\ninfo: {}\n", "application/yaml")},
    )
    assert response.status_code == 400 and "invalid OpenAPI document" in error_of(response)
    assert snapshot(portal_stack) == before
