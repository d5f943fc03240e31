"""API key format and keyed hashing (pure).

A key reads `tw_<key id>_<secret>`: the key id (12 chars) is public and indexes the key; the secret is
160 random bits in lowercase base32 (32 chars). Only HMAC-SHA256(server secret, whole key) is stored, and
presented keys are compared against it in constant time.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "tw"
KEY_ID_LENGTH = 12
SECRET_BYTES = 20  # 160 bits
SECRET_LENGTH = 32  # base32 of 20 bytes, no padding
_KEY_PATTERN = re.compile(rf"^{PREFIX}_([a-z2-7]{{{KEY_ID_LENGTH}}})_([a-z2-7]{{{SECRET_LENGTH}}})$")
_KEY_ID_PATTERN = re.compile(rf"^[a-z2-7]{{{KEY_ID_LENGTH}}}$")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    full_key: str


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def new_key_id() -> str:
    return _b32(secrets.token_bytes(10))[:KEY_ID_LENGTH]


def new_key(key_id: str | None = None) -> ParsedKey:
    key_id = key_id or new_key_id()
    return ParsedKey(key_id=key_id, full_key=f"{PREFIX}_{key_id}_{_b32(secrets.token_bytes(SECRET_BYTES))}")


def parse_key(presented: str) -> ParsedKey | None:
    """The key's id when `presented` has the key format, else None (malformed)."""
    match = _KEY_PATTERN.match(presented)
    if match is None:
        return None
    return ParsedKey(key_id=match.group(1), full_key=presented)


def is_key_id(value: str) -> bool:
    return bool(_KEY_ID_PATTERN.match(value))


def key_hash(server_secret: str, full_key: str) -> str:
    # hmac.digest: the one-shot C path (Check hashes every presented key), the same HMAC-SHA256.
    return hmac.digest(server_secret.encode(), full_key.encode(), "sha256").hex()


def verify_key(server_secret: str, full_key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(key_hash(server_secret, full_key), stored_hash)


def display(key_id: str) -> str:
    """What a console may show of a key."""
    return f"{PREFIX}_{key_id}_…"
