"""decide(): every refusal reason, the order of the checks, and the key's two delivery forms."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keymgr.decision import Allowed, AuthzRequest, Denied, decide, presented_key
from keymgr.index import (
    ApiEntry,
    ApplicationEntry,
    KeyEntry,
    KeySnapshot,
    PlanEntry,
    SubscriptionEntry,
)
from keymgr.keys import key_hash, new_key
from tollway.envoy_contract import WWW_AUTHENTICATE_REALM as REALM

SECRET = "server-secret-for-tests"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
API = ApiEntry(id="api_weather", name="weather")
OTHER_API = ApiEntry(id="api_maps", name="maps")
PLAN = PlanEntry(id="plan_gold", name="gold")
APP = ApplicationEntry(id="app_one", deleted=False)
KEY = new_key()
OTHER_KEY = new_key()  # valid format, never stored
INVALID_TOKEN = 'Bearer realm="tollway", error="invalid_token"'


def key_entry(**changes: object) -> KeyEntry:
    entry = KeyEntry(
        key_id=KEY.key_id,
        application_id=APP.id,
        key_hash=key_hash(SECRET, KEY.full_key),
        expires_at=None,
        revoked_at=None,
    )
    return replace(entry, **changes)  # type: ignore[arg-type]


def subscription(state: str = "ACTIVE") -> SubscriptionEntry:
    return SubscriptionEntry(id="sub_one", application_id=APP.id, api_id=API.id, plan_id=PLAN.id, state=state)


def snapshot(**changes: object) -> KeySnapshot:
    fields: dict[str, object] = {
        "keys": [key_entry()],
        "apis": [API, OTHER_API],
        "plans": [PLAN],
        "applications": [APP],
        "subscriptions": [subscription()],
    }
    fields.update(changes)
    return KeySnapshot.build(**fields)  # type: ignore[arg-type]


def request(
    key: str | None = KEY.full_key, *, api_id: str = API.id, ip: str = "198.51.100.7"
) -> AuthzRequest:
    headers = {"x-api-key": key} if key is not None else {}
    return AuthzRequest(headers=headers, api_id=api_id, client_ip=ip, request_id="req-1")


def denied(decision: object) -> Denied:
    assert isinstance(decision, Denied), decision
    return decision


def test_allowed_with_x_api_key() -> None:
    decision = decide(snapshot(), request(), NOW, SECRET)
    assert isinstance(decision, Allowed)
    assert decision.api == API
    assert decision.application == APP
    assert decision.subscription == subscription()
    assert decision.plan == PLAN
    assert decision.key_id == KEY.key_id
    assert decision.key_header_names_to_remove == ("x-api-key",)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "BeArEr"])
def test_allowed_with_bearer_any_case(scheme: str) -> None:
    req = AuthzRequest(headers={"authorization": f"{scheme} {KEY.full_key}"}, api_id=API.id)
    decision = decide(snapshot(), req, NOW, SECRET)
    assert isinstance(decision, Allowed)
    assert decision.key_header_names_to_remove == ("authorization",)


def test_x_api_key_wins_over_authorization() -> None:
    # The upstream's own Authorization header must survive when the key came in X-API-Key.
    req = AuthzRequest(
        headers={"x-api-key": KEY.full_key, "authorization": "Basic dXNlcjpwYXNz"}, api_id=API.id
    )
    decision = decide(snapshot(), req, NOW, SECRET)
    assert isinstance(decision, Allowed)
    assert decision.key_header_names_to_remove == ("x-api-key",)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-api-key": ""}, None),
        ({"x-api-key": "   "}, None),
        ({"authorization": "Basic abc"}, None),
        ({"authorization": ""}, None),
        ({"authorization": "Bearer"}, ("", "authorization")),
        ({"authorization": "Bearer   tok  "}, ("tok", "authorization")),
        ({"authorization": "bearer\ttok"}, ("tok", "authorization")),
        ({"x-api-key": " k "}, ("k", "x-api-key")),
    ],
)
def test_presented_key(headers: dict[str, str], expected: tuple[str, str] | None) -> None:
    assert presented_key(headers) == expected


def test_api_not_found_for_unknown_and_empty_api_id() -> None:
    for api_id in ("api_nope", ""):
        result = denied(decide(snapshot(), request(api_id=api_id), NOW, SECRET))
        assert (result.http_status, result.reason) == (404, "api_not_found")
        assert result.www_authenticate is None


def test_unpublished_api_is_not_found() -> None:
    # load_snapshot keeps published APIs only, so an unpublished API is simply absent.
    result = denied(decide(snapshot(apis=[OTHER_API]), request(), NOW, SECRET))
    assert result.reason == "api_not_found"


@pytest.mark.parametrize(
    ("cidr", "ip", "blocked"),
    [
        ("198.51.100.0/24", "198.51.100.7", True),
        ("198.51.100.7/32", "198.51.100.7", True),
        ("198.51.100.0/24", "198.51.101.7", False),
        ("198.51.100.0/24", "::ffff:198.51.100.7", True),  # v4 client on a dual-stack socket
        ("2001:db8::/32", "2001:db8::1", True),
        ("2001:db8::/32", "198.51.100.7", False),
        ("198.51.100.0/24", "", False),
        ("198.51.100.0/24", "not-an-ip", False),
    ],
)
def test_client_cidr(cidr: str, ip: str, blocked: bool) -> None:
    snap = snapshot(blocked_networks=[ipaddress.ip_network(cidr)])
    decision = decide(snap, request(ip=ip), NOW, SECRET)
    if blocked:
        assert (denied(decision).http_status, denied(decision).reason) == (403, "client_blocked")
    else:
        assert isinstance(decision, Allowed)


def test_key_missing() -> None:
    result = denied(decide(snapshot(), request(key=None), NOW, SECRET))
    assert (result.http_status, result.reason) == (401, "key_missing")
    assert result.www_authenticate == REALM == 'Bearer realm="tollway"'


@pytest.mark.parametrize(
    "presented",
    ["nope", KEY.full_key + "x", KEY.full_key.upper(), "tw__" + "a" * 32, f"tw_{KEY.key_id}_short"],
    # Stable ids (the key is random): parallel workers must collect the same tests.
    ids=["not-a-key", "trailing-char", "uppercased", "empty-key-id", "short-secret"],
)
def test_key_malformed(presented: str) -> None:
    result = denied(decide(snapshot(), request(key=presented), NOW, SECRET))
    assert (result.http_status, result.reason) == (401, "key_malformed")
    assert result.www_authenticate == INVALID_TOKEN
    assert result.key_id is None


def test_empty_bearer_is_malformed() -> None:
    req = AuthzRequest(headers={"authorization": "Bearer "}, api_id=API.id)
    assert denied(decide(snapshot(), req, NOW, SECRET)).reason == "key_malformed"


def test_unknown_key_and_wrong_secret_get_the_same_answer() -> None:
    wrong_secret = f"tw_{KEY.key_id}_{OTHER_KEY.full_key.rsplit('_', 1)[1]}"
    unknown = denied(decide(snapshot(), request(key=OTHER_KEY.full_key), NOW, SECRET))
    mismatch = denied(decide(snapshot(), request(key=wrong_secret), NOW, SECRET))
    assert unknown.reason == mismatch.reason == "key_invalid"
    assert unknown.http_status == mismatch.http_status == 401
    assert (unknown.title, unknown.detail, unknown.www_authenticate) == (
        mismatch.title,
        mismatch.detail,
        mismatch.www_authenticate,
    )
    assert unknown.www_authenticate == INVALID_TOKEN
    # Neither reveals anything established past the key check.
    assert "application_id" not in unknown.context and "application_id" not in mismatch.context


def test_server_secret_matters() -> None:
    result = denied(decide(snapshot(), request(), NOW, "another-secret"))
    assert result.reason == "key_invalid"


def test_revoked_key() -> None:
    snap = snapshot(keys=[key_entry(revoked_at=NOW - timedelta(days=1))])
    result = denied(decide(snap, request(), NOW, SECRET))
    assert (result.http_status, result.reason, result.key_id) == (401, "key_revoked", KEY.key_id)
    assert result.www_authenticate == INVALID_TOKEN


def test_revocation_ahead_of_this_clock_still_counts() -> None:
    # Another replica's clock may run ahead: revocation must not wait for ours to catch up.
    snap = snapshot(keys=[key_entry(revoked_at=NOW + timedelta(seconds=5))])
    assert denied(decide(snap, request(), NOW, SECRET)).reason == "key_revoked"


def test_revoked_with_wrong_secret_is_invalid_not_revoked() -> None:
    snap = snapshot(keys=[key_entry(revoked_at=NOW)])
    wrong_secret = f"tw_{KEY.key_id}_{OTHER_KEY.full_key.rsplit('_', 1)[1]}"
    assert denied(decide(snap, request(key=wrong_secret), NOW, SECRET)).reason == "key_invalid"


def test_expiry_at_the_exact_instant() -> None:
    snap = snapshot(keys=[key_entry(expires_at=NOW)])
    just_before = NOW - timedelta(microseconds=1)
    assert isinstance(decide(snap, request(), just_before, SECRET), Allowed)
    result = denied(decide(snap, request(), NOW, SECRET))
    assert (result.http_status, result.reason) == (401, "key_expired")
    assert result.www_authenticate == INVALID_TOKEN
    assert denied(decide(snap, request(), NOW + timedelta(days=1), SECRET)).reason == "key_expired"


def test_revoked_wins_over_expired() -> None:
    snap = snapshot(keys=[key_entry(expires_at=NOW - timedelta(days=1), revoked_at=NOW)])
    assert denied(decide(snap, request(), NOW, SECRET)).reason == "key_revoked"


def test_api_blocked() -> None:
    result = denied(decide(snapshot(blocked_api_ids={API.id}), request(), NOW, SECRET))
    assert (result.http_status, result.reason, result.www_authenticate) == (403, "api_blocked", None)


@pytest.mark.parametrize(
    "changes",
    [
        {"blocked_application_ids": {APP.id}},
        {"applications": [replace(APP, deleted=True)]},
        {"applications": []},
    ],
    ids=["blocked", "deleted", "absent"],
)
def test_application_blocked(changes: dict[str, object]) -> None:
    result = denied(decide(snapshot(**changes), request(), NOW, SECRET))
    assert (result.http_status, result.reason) == (403, "application_blocked")


def test_key_blocked() -> None:
    result = denied(decide(snapshot(blocked_key_ids={KEY.key_id}), request(), NOW, SECRET))
    assert (result.http_status, result.reason) == (403, "key_blocked")


def test_not_subscribed_to_this_api() -> None:
    other = replace(subscription(), api_id=OTHER_API.id)
    result = denied(decide(snapshot(subscriptions=[other]), request(), NOW, SECRET))
    assert (result.http_status, result.reason) == (403, "not_subscribed")
    assert isinstance(
        decide(snapshot(subscriptions=[other]), request(api_id=OTHER_API.id), NOW, SECRET), Allowed
    )


def test_subscription_whose_plan_is_missing_is_not_subscribed() -> None:
    assert denied(decide(snapshot(plans=[]), request(), NOW, SECRET)).reason == "not_subscribed"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("PENDING_APPROVAL", "subscription_pending_approval"),
        ("BLOCKED", "subscription_blocked"),
        ("SUSPENDED", "subscription_suspended"),
    ],
)
def test_subscription_not_active(state: str, reason: str) -> None:
    result = denied(decide(snapshot(subscriptions=[subscription(state)]), request(), NOW, SECRET))
    assert (result.http_status, result.reason, result.www_authenticate) == (403, reason, None)
    assert result.context["subscription_id"] == "sub_one"
    assert result.title and result.detail


def test_not_loaded_snapshot_is_unavailable() -> None:
    result = denied(decide(KeySnapshot(), request(), NOW, SECRET))
    assert (result.http_status, result.reason) == (503, "service_unavailable")


def test_no_decision_ever_contains_the_key() -> None:
    for snap in (snapshot(), snapshot(keys=[key_entry(revoked_at=NOW)]), snapshot(subscriptions=[])):
        for req in (request(), request(key=KEY.full_key + "!"), request(api_id="x")):
            decision = decide(snap, req, NOW, SECRET)
            secret_part = KEY.full_key.rsplit("_", 1)[1]
            assert secret_part not in repr(decision)


# The order of the checks: each fault, when present, hides every fault after it.
ORDER = [
    "api_not_found",
    "client_blocked",
    "key_missing",
    "key_malformed",
    "key_invalid",
    "key_revoked",
    "key_expired",
    "api_blocked",
    "application_blocked",
    "key_blocked",
    "not_subscribed",
    "subscription_state",
]


@settings(max_examples=400, deadline=None)
@given(
    api_unknown=st.booleans(),
    client_blocked=st.booleans(),
    presentation=st.sampled_from(["ok", "missing", "malformed", "unknown_id", "wrong_secret"]),
    bearer=st.booleans(),
    revoked=st.booleans(),
    expired=st.booleans(),
    api_blocked=st.booleans(),
    application=st.sampled_from(["ok", "blocked", "deleted"]),
    key_blocked=st.booleans(),
    subscribed=st.booleans(),
    state=st.sampled_from(["ACTIVE", "PENDING_APPROVAL", "BLOCKED", "SUSPENDED"]),
)
def test_check_order(
    api_unknown: bool,
    client_blocked: bool,
    presentation: str,
    bearer: bool,
    revoked: bool,
    expired: bool,
    api_blocked: bool,
    application: str,
    key_blocked: bool,
    subscribed: bool,
    state: str,
) -> None:
    snap = snapshot(
        keys=[
            key_entry(
                revoked_at=NOW - timedelta(hours=1) if revoked else None,
                expires_at=NOW - timedelta(seconds=1) if expired else NOW + timedelta(days=1),
            )
        ],
        applications=[replace(APP, deleted=application == "deleted")],
        subscriptions=[subscription(state)] if subscribed else [],
        blocked_api_ids={API.id} if api_blocked else set(),
        blocked_application_ids={APP.id} if application == "blocked" else set(),
        blocked_key_ids={KEY.key_id} if key_blocked else set(),
        blocked_networks=[ipaddress.ip_network("203.0.113.0/24")],
    )
    presented = {
        "ok": KEY.full_key,
        "missing": None,
        "malformed": "tw_nope",
        "unknown_id": OTHER_KEY.full_key,
        "wrong_secret": f"tw_{KEY.key_id}_{OTHER_KEY.full_key.rsplit('_', 1)[1]}",
    }[presentation]
    headers: dict[str, str] = {}
    if presented is not None:
        headers = {"authorization": f"Bearer {presented}"} if bearer else {"x-api-key": presented}
    req = AuthzRequest(
        headers=headers,
        api_id="api_unknown" if api_unknown else API.id,
        client_ip="203.0.113.9" if client_blocked else "192.0.2.1",
    )
    faults = {
        "api_not_found": api_unknown,
        "client_blocked": client_blocked,
        "key_missing": presentation == "missing",
        "key_malformed": presentation == "malformed",
        "key_invalid": presentation in ("unknown_id", "wrong_secret"),
        "key_revoked": revoked,
        "key_expired": expired,
        "api_blocked": api_blocked,
        "application_blocked": application != "ok",
        "key_blocked": key_blocked,
        "not_subscribed": not subscribed,
        "subscription_state": state != "ACTIVE",
    }
    first = next((name for name in ORDER if faults[name]), None)
    decision = decide(snap, req, NOW, SECRET)
    if first is None:
        assert isinstance(decision, Allowed)
        assert decision.key_header_names_to_remove == (("authorization",) if bearer else ("x-api-key",))
        return
    result = denied(decision)
    expected = f"subscription_{state.lower()}" if first == "subscription_state" else first
    assert result.reason == expected
    unauthenticated = {"key_missing", "key_malformed", "key_invalid", "key_revoked", "key_expired"}
    expected_status = 404 if first == "api_not_found" else 401 if first in unauthenticated else 403
    assert result.http_status == expected_status
    if result.http_status == 401:
        assert result.www_authenticate == (REALM if first == "key_missing" else INVALID_TOKEN)
    else:
        assert result.www_authenticate is None
