"""Tables of the developer portal (portal/): consumer accounts, their sessions and password-reset
tokens, the block rules an account's suspension made, and the OpenAPI documents the catalog serves to
consumers. Part of the one schema (registered with tollway/schema.py's tables by tollway/db.py).

Nothing secret is stored as given: passwords as argon2id hashes (salted, memory-hard), session and
reset tokens as SHA-256 of 256 random bits (enough entropy that a fast hash is safe; a keyed or slow
hash would add nothing but work per request)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, LargeBinary
from sqlmodel import Field, SQLModel

from tollway.schema import utcnow


def _timestamp(nullable: bool = False) -> Any:
    column = Column(DateTime(timezone=True), nullable=nullable)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


class PortalAccount(SQLModel, table=True):
    """An API consumer who signs in to the portal. Its applications are those whose `owner` is the
    account's id (keymgr's Application.owner), so admin tools see who owns what."""

    __tablename__ = "portal_account"

    id: str = Field(primary_key=True)
    # Normalized (trimmed, lower-cased) and unique.
    email: str = Field(unique=True, index=True)
    display_name: str = ""
    # argon2id, PHC string format (algorithm, parameters, salt and hash).
    password_hash: str
    created_at: datetime = _timestamp()
    password_changed_at: datetime = _timestamp()
    # Set while an admin has disabled the account: no sign-in, its applications blocked.
    disabled_at: datetime | None = _timestamp(nullable=True)
    disabled_reason: str = ""


class PortalSession(SQLModel, table=True):
    """A signed-in browser or API client. `token_hash` is SHA-256 of the bearer token (cookie or
    `authorization` metadata); the token itself is never stored."""

    __tablename__ = "portal_session"

    token_hash: str = Field(primary_key=True)
    # CONSUMER (account_id set) or PUBLISHER (signed in with the admin token; account_id empty).
    kind: str
    account_id: str = Field(default="", index=True)
    created_at: datetime = _timestamp()
    expires_at: datetime = _timestamp()


class PortalResetToken(SQLModel, table=True):
    """A password-reset link's token, as SHA-256; usable once, until `expires_at`."""

    __tablename__ = "portal_reset_token"

    token_hash: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    created_at: datetime = _timestamp()
    expires_at: datetime = _timestamp()
    used_at: datetime | None = _timestamp(nullable=True)


class PortalAccountBlock(SQLModel, table=True):
    """A block rule (keymgr's block_rule, target APPLICATION) that disabling an account created, so
    enabling it removes exactly those and never a rule an admin made."""

    __tablename__ = "portal_account_block"

    block_rule_id: str = Field(primary_key=True)
    account_id: str = Field(index=True)


class ApiDocument(SQLModel, table=True):
    """An API's OpenAPI 3 document, validated on upload, as the publisher sent it (JSON or YAML)."""

    __tablename__ = "api_document"

    api_id: str = Field(primary_key=True, foreign_key="api.id", ondelete="CASCADE")
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # application/json or application/yaml
    media_type: str = "application/json"
    # info.title and info.version of the document, for listings.
    title: str = ""
    version: str = ""
    updated_at: datetime = _timestamp()
