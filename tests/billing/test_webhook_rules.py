"""Webhooks' pure rules: URL validation, signing and verification, retry delays, the secret box."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.webhook_secrets import SecretBox
from billing.webhook_signing import (
    EVENT_TYPES,
    retry_delay,
    signature,
    validate_event_types,
    validate_url,
    verify,
)
from tollway.errors import InvalidArgument
from tollway.vocabulary import EventType


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "https://example.com/a?b=c", "HTTPS://Example.com", "http://[::1]:9/x"],
)
def test_http_urls_are_accepted(url: str) -> None:
    assert validate_url(f"  {url} ") == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "required"),
        ("ftp://example.com/x", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("/relative/path", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http:///nohost", "host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com:99999/", "valid URL"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/" + "a" * 2100, "2048"),
    ],
)
def test_bad_urls_are_refused_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_url(url)
    assert message in info.value.message
    assert "pw" not in info.value.message


def test_event_types_are_the_vocabulary() -> None:
    assert set(EVENT_TYPES) == {
        "alert.raised", "invoice.finalized", "credit_note.issued", "subscription.state_changed",
        "credit.exhausted",
    }  # fmt: skip
    assert validate_event_types([" invoice.finalized", "invoice.finalized", ""]) == ["invoice.finalized"]
    assert validate_event_types([]) == []
    with pytest.raises(InvalidArgument, match=r"unknown event type 'invoice\.paid'"):
        validate_event_types(["invoice.paid"])
    assert EventType("credit.exhausted") is EventType.CREDIT_EXHAUSTED


def test_signature_verifies_and_detects_tampering() -> None:
    secret, body = "whsec_test", b'{"id":"evt_1"}'
    header = signature(secret, 1_790_000_000, body)
    assert header.startswith("t=1790000000,v1=")
    assert verify(secret, header, body, now=1_790_000_010)
    assert not verify(secret, header, body + b" ", now=1_790_000_010)  # body changed
    assert not verify("whsec_other", header, body, now=1_790_000_010)  # wrong secret
    assert not verify(secret, header, body, now=1_790_000_000 + 301)  # too old: a replay
    assert not verify(secret, header.replace("t=1790000000", "t=1790000001"), body, now=1_790_000_001)
    assert not verify(secret, "garbage", body, now=1_790_000_000)
    # Several v1 values (e.g. during a secret rotation): one match is enough.
    assert verify(secret, f"{header},v1=00", body, now=1_790_000_000)


@given(
    attempts=st.integers(1, 200), base=st.floats(0.01, 100), cap=st.floats(0.01, 10_000), seed=st.integers()
)
def test_retry_delay_grows_within_bounds(attempts: int, base: float, cap: float, seed: int) -> None:
    rng = random.Random(seed)
    ceiling = min(cap, base * 2 ** min(attempts - 1, 60))
    delay = retry_delay(attempts, base, cap, rng)
    assert ceiling / 2 <= delay <= ceiling + 1e-9


class Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_retry_delay_doubles_then_caps() -> None:
    highest = [retry_delay(n, 10, 3600, Fixed(1.0)) for n in range(1, 12)]
    assert highest[:4] == [10, 20, 40, 80] and highest[-1] == 3600
    assert [retry_delay(n, 10, 3600, Fixed(0.0)) for n in (1, 2)] == [5, 10]  # jitter: the upper half


def test_secret_box_round_trip_and_wrong_key() -> None:
    box = SecretBox("key-one")
    sealed = box.seal("whsec_abc")
    assert "whsec_abc" not in sealed
    assert box.open(sealed) == "whsec_abc"
    with pytest.raises(ValueError, match="cannot be decrypted") as info:
        SecretBox("key-two").open(sealed)
    assert "whsec" not in str(info.value)


def test_the_readme_verification_recipe_accepts_tollway_signatures() -> None:
    """The recipe receivers copy from the README verifies what the deliverer signs."""
    import re
    import time
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("**Verifying a signature**") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    namespace: dict[str, object] = {}
    exec(match.group(1), namespace)
    recipe = namespace["verify"]
    now, body = int(time.time()), b'{"id":"evt_1","data":{"total":"1.00"}}'
    header = signature("whsec_x", now, body)
    assert recipe("whsec_x", header, body) is True  # type: ignore[operator]
    assert recipe("whsec_y", header, body) is False  # type: ignore[operator]
    assert recipe("whsec_x", signature("whsec_x", now - 3600, body), body) is False  # type: ignore[operator]
