"""Webhooks' pure rules (no I/O): what a valid endpoint is, how a body is signed and verified, and
when a failed delivery is tried again.

Signature: `Tollway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, where the
key is the endpoint's whole signing secret ("whsec_..." as shown at creation, UTF-8) and the body is the
exact bytes POSTed. Signing the timestamp with the body lets a receiver refuse replays of old requests.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from tollway.errors import InvalidArgument
from tollway.vocabulary import EventType

SIGNATURE_HEADER = "Tollway-Signature"
EVENT_ID_HEADER = "Tollway-Event-Id"
EVENT_TYPE_HEADER = "Tollway-Event-Type"
TIMESTAMP_HEADER = "Tollway-Timestamp"
SECRET_PREFIX = "whsec_"
URL_MAX = 2048
DESCRIPTION_MAX = 200
# A receiver should refuse a signature older than this (the verification recipe's default).
DEFAULT_TOLERANCE_SECONDS = 300

EVENT_TYPES: tuple[str, ...] = tuple(kind.value for kind in EventType)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def validate_url(url: str) -> str:
    """An absolute http:// or https:// URL with a host, no credentials, no fragment; else
    INVALID_ARGUMENT saying why (the URL is not echoed: it may carry a token in its query)."""
    url = url.strip()
    if not url:
        raise InvalidArgument("url is required")
    if len(url) > URL_MAX:
        raise InvalidArgument(f"url must be at most {URL_MAX} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidArgument("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        raise InvalidArgument(f"url is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidArgument("url must be http:// or https://")
    if not parts.hostname:
        raise InvalidArgument("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("url must not carry credentials (user:password@)")
    if parts.fragment:
        raise InvalidArgument("url must not have a fragment (#...)")
    del port
    return url


def validate_event_types(types: Iterable[str]) -> list[str]:
    """Known event types, deduplicated in the order given; empty = every type."""
    chosen = list(dict.fromkeys(kind.strip() for kind in types if kind.strip()))
    unknown = [kind for kind in chosen if kind not in EVENT_TYPES]
    if unknown:
        shown = ", ".join(repr(kind[:40]) for kind in unknown[:5])
        raise InvalidArgument(f"unknown event type {shown}; choose from {', '.join(EVENT_TYPES)}")
    return chosen


def wants(event_types: Sequence[str], event_type: str) -> bool:
    return not event_types or event_type in event_types


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Tollway-Signature header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, now: float, tolerance: float = DEFAULT_TOLERANCE_SECONDS
) -> bool:
    """The receiver's check: the header is well formed, one of its v1 signatures matches (compared in
    constant time) and its timestamp is within `tolerance` seconds of `now`."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def retry_delay(attempts: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: base * 2^(attempts-1), capped, with
    jitter (a uniform draw from the upper half), so receivers that came back are not hit in step."""
    exponent = min(max(attempts - 1, 0), 60)
    delay = min(cap, base * float(2**exponent))
    draw: float = (rng or random).random()
    return delay / 2 + draw * delay / 2
