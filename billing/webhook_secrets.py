"""Endpoints' signing secrets, encrypted at rest. Signing needs the secret itself (a hash would not
do), so the database holds it encrypted (Fernet: AES-128-CBC with an HMAC-SHA256 tag) under a key that
lives outside it (TOLLWAY_WEBHOOK_SECRET_KEY, by default generated into the data dir): a copy of the
database alone does not reveal a secret. Secrets never appear in a log line."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("a webhook secret key is required")
        # Any text the operator chose becomes a valid Fernet key (32 bytes, URL-safe base64).
        digest = hashlib.sha256(b"tollway-webhook-secrets\0" + key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret; ValueError (never the secret or the token) when the key does not match."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "webhook secret cannot be decrypted: TOLLWAY_WEBHOOK_SECRET_KEY changed"
            ) from None
