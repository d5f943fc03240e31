"""Consumer accounts, the pure part: what an acceptable email, password and display name are, how
session and reset tokens are made and stored, and the CSRF token of a session. No I/O.

Tokens are 256 random bits (URL-safe base64); only their SHA-256 is stored, so a copy of the database
signs nobody in. A session's CSRF token is derived from its token with the portal's secret (HMAC), so
it needs no storage, differs per session and cannot be computed from anything a page shows."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from tollway.errors import InvalidArgument

EMAIL_MAX = 254
PASSWORD_MIN = 10
# argon2 takes any length; this bounds the work one request can ask for.
PASSWORD_MAX = 256
DISPLAY_NAME_MAX = 100
TOKEN_BYTES = 32
# Tokens as sent: 43 URL-safe base64 characters; anything else is refused before any lookup.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Deliberately plain: one @, no spaces, a dot in the domain. Whether mail arrives is the reset flow's
# business; this catches typos and keeps odd characters out of logs and pages.
_EMAIL_SHAPE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")


class SessionKind(StrEnum):
    """Who a session signs in: a consumer account, or the publisher (with the admin token)."""

    CONSUMER = "CONSUMER"
    PUBLISHER = "PUBLISHER"


def normalize_email(email: str) -> str:
    """The stored form of an email address: trimmed, lower-cased; INVALID_ARGUMENT when it is not one."""
    value = email.strip().lower()
    if not value:
        raise InvalidArgument("email is required")
    if len(value) > EMAIL_MAX:
        raise InvalidArgument(f"email must be at most {EMAIL_MAX} characters (got {len(value)})")
    if not _EMAIL_SHAPE.match(value) or not value.isprintable():
        raise InvalidArgument("email must be an address such as name@example.com")
    return value


def check_password(password: str, email: str = "") -> None:
    """INVALID_ARGUMENT unless `password` is acceptable for a new password (never echoed)."""
    if not password:
        raise InvalidArgument("password is required")
    if len(password) < PASSWORD_MIN:
        raise InvalidArgument(f"password must be at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidArgument(f"password must be at most {PASSWORD_MAX} characters")
    if email and password.strip().lower() == email.strip().lower():
        raise InvalidArgument("password must not be the email address")


def check_display_name(name: str) -> str:
    value = name.strip()
    if len(value) > DISPLAY_NAME_MAX:
        raise InvalidArgument(
            f"display_name must be at most {DISPLAY_NAME_MAX} characters (got {len(value)})"
        )
    if not value.isprintable():
        raise InvalidArgument("display_name must not contain control characters")
    return value


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_token(value: str) -> bool:
    return bool(_TOKEN_SHAPE.match(value))


def token_hash(token: str) -> str:
    """What is stored for a session or reset token."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(secret: str, session_token: str) -> str:
    """The CSRF token forms of this session carry."""
    digest = hmac.new(secret.encode(), b"csrf\x00" + session_token.encode(), hashlib.sha256).hexdigest()
    return digest


def csrf_valid(secret: str, session_token: str, presented: str) -> bool:
    if not presented or not session_token:
        return False
    return hmac.compare_digest(csrf_token(secret, session_token).encode(), presented.encode())


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just made; `token` (the cookie or bearer value) exists only here."""

    token: str
    kind: SessionKind
    account_id: str

    def __repr__(self) -> str:  # never the token
        return f"NewSession(kind={self.kind.value}, account_id={self.account_id!r})"
