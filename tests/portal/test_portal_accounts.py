"""The pure part of consumer accounts: email, password and name rules, tokens, CSRF tokens and the
sign-in attempt limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.accounts import (
    check_display_name,
    check_password,
    csrf_token,
    csrf_valid,
    is_token,
    new_token,
    normalize_email,
    token_hash,
)
from portal.signin_limits import SignInLimiter, client_key
from tollway.errors import InvalidArgument


def test_emails_are_normalized() -> None:
    assert normalize_email("  Alice@Example.COM ") == "alice@example.com"


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "email is required"),
        ("   ", "email is required"),
        ("alice", "email must be an address"),
        ("alice@example", "email must be an address"),
        ("al ice@example.com", "email must be an address"),
        ("a@b@example.com", "email must be an address"),
        ("x" * 250 + "@example.com", "at most 254"),
        ("alice\x00@example.com", "email must be an address"),
    ],
)
def test_bad_emails_are_refused_with_a_message(email: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        normalize_email(email)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "password is required"),
        ("short", "at least 10"),
        ("x" * 257, "at most 256"),
        ("Alice@Example.com", "must not be the email"),
    ],
)
def test_weak_passwords_are_refused_without_echoing_them(password: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as refused:
        check_password(password, "alice@example.com")
    if password:
        assert password not in str(refused.value)


def test_display_names_are_bounded() -> None:
    assert check_display_name("  Alice ") == "Alice"
    with pytest.raises(InvalidArgument, match="at most 100"):
        check_display_name("x" * 101)


def test_tokens_are_random_and_stored_only_as_hashes() -> None:
    first, second = new_token(), new_token()
    assert first != second and is_token(first) and is_token(second)
    assert token_hash(first) != token_hash(second)
    assert first not in token_hash(first)
    assert not is_token(first + "x") and not is_token("") and not is_token("a" * 42 + "!")


def test_csrf_tokens_differ_per_session_and_secret_and_verify_in_constant_time() -> None:
    session = new_token()
    token = csrf_token("secret", session)
    assert csrf_valid("secret", session, token)
    assert not csrf_valid("secret", new_token(), token)
    assert not csrf_valid("other", session, token)
    assert not csrf_valid("secret", session, "")
    assert token != csrf_token("secret", new_token())


def test_an_account_is_limited_after_its_failures_and_a_success_clears_them() -> None:
    limiter = SignInLimiter(per_account=3, per_client=100, window_seconds=60)
    for second in range(3):
        assert limiter.check("alice", f"10.0.0.{second}", now=second) is None
        limiter.failed("alice", f"10.0.0.{second}", now=second)
    refusal = limiter.check("alice", "10.0.0.9", now=10)
    assert refusal is not None and refusal.scope == "account" and 0 < refusal.retry_after_seconds <= 51
    # Other accounts are unaffected; the window slides.
    assert limiter.check("bob", "10.0.0.9", now=10) is None
    assert limiter.check("alice", "10.0.0.9", now=61) is None
    limiter.failed("alice", "10.0.0.1", now=62)
    limiter.succeeded("alice")
    assert limiter.check("alice", "10.0.0.1", now=63) is None


def test_a_client_address_is_limited_across_accounts() -> None:
    limiter = SignInLimiter(per_account=100, per_client=4, window_seconds=60)
    for number in range(4):
        limiter.failed(f"user{number}@example.com", "192.0.2.7", now=number)
        limiter.succeeded(f"user{number}@example.com")
    refusal = limiter.check("new@example.com", "192.0.2.7", now=5)
    assert refusal is not None and refusal.scope == "client"
    assert limiter.check("new@example.com", "192.0.2.8", now=5) is None


def test_ipv6_clients_count_per_64() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("testclient") == "testclient"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=300))
def test_memory_stays_bounded_whatever_callers_send(attempts: list[tuple[str, str]]) -> None:
    limiter = SignInLimiter(per_account=2, per_client=2, window_seconds=60, max_keys=16)
    for now, (account, client) in enumerate(attempts):
        if limiter.check(account, client, now) is None:
            limiter.failed(account, client, now)
    accounts, clients = limiter.tracked()
    assert accounts <= 16 and clients <= 16
