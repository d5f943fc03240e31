"""Signing consumers (and the publisher) in and out: sign-up, sign-in with its attempt limits, sessions,
password reset through the outbox, and an admin's disabling of an account.

One service for the web pages and the consumer gRPC API alike: a session token is a cookie in a
browser and `authorization: Bearer <token>` metadata over gRPC; both resolve through `authenticate`.
What a caller can learn is the same either way: a wrong password and an unknown email get one answer
(portal/errors.py WRONG_CREDENTIALS) after the same argon2 work; a reset request gets one answer
whether or not the email has an account."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from portal.accounts import (
    NewSession,
    SessionKind,
    check_display_name,
    check_password,
    csrf_token,
    csrf_valid,
    is_token,
    new_token,
    normalize_email,
    token_hash,
)
from portal.errors import WRONG_CREDENTIALS, PermissionDenied, TooManyAttempts, Unauthenticated
from portal.outbox import Outbox, OutboxMessage
from portal.passwords import Passwords
from portal.signin_limits import SignInLimiter
from portal.store import AccountStore, new_account_id
from tollway.errors import InvalidArgument, NotFound
from tollway.schema import utcnow
from tollway.schema_portal import PortalAccount, PortalResetToken, PortalSession

log = logging.getLogger(__name__)

SESSION_TTL = timedelta(hours=12)
RESET_TTL = timedelta(hours=1)
REASON_MAX = 500
# The limiter's account key for the publisher's sign-in (the admin token has no email).
_PUBLISHER_KEY = "publisher"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a consumer account, or the publisher."""

    kind: SessionKind
    account: PortalAccount | None
    session_token: str = field(repr=False)

    @property
    def account_id(self) -> str:
        return self.account.id if self.account is not None else ""


class AccountService:
    def __init__(
        self,
        store: AccountStore,
        outbox: Outbox,
        *,
        secret: str,
        admin_token: str,
        public_url: str,
        passwords: Passwords | None = None,
        limiter: SignInLimiter | None = None,
        session_ttl: timedelta = SESSION_TTL,
        reset_ttl: timedelta = RESET_TTL,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not secret or not admin_token:
            raise ValueError("the portal needs a secret and the admin token")
        self.store = store
        self._outbox = outbox
        self._secret = secret
        self._admin_token = admin_token.encode()
        self.public_url = public_url.rstrip("/")
        self._passwords = passwords or Passwords()
        self.limiter = limiter or SignInLimiter()
        self._session_ttl = session_ttl
        self._reset_ttl = reset_ttl
        self._clock = clock
        self._monotonic = monotonic

    @property
    def session_ttl(self) -> timedelta:
        return self._session_ttl

    # Accounts

    async def sign_up(self, email: str, password: str, display_name: str = "") -> NewSession:
        """A new account, signed in."""
        email = normalize_email(email)
        check_password(password, email)
        display_name = check_display_name(display_name)
        now = self._clock()
        account = PortalAccount(
            id=new_account_id(),
            email=email,
            display_name=display_name,
            password_hash=await self._passwords.hash(password),
            created_at=now,
            password_changed_at=now,
        )
        await self.store.create_account(account)
        return await self._new_session(SessionKind.CONSUMER, account.id)

    async def sign_in(self, email: str, password: str, client: str) -> NewSession:
        """A session for the account, or one answer for every wrong email/password pair."""
        key = email.strip().lower()[:254]
        self._check_limits(key, client)
        if not key or not password or len(password) > 256:
            self.limiter.failed(key, client, self._monotonic())
            raise Unauthenticated(WRONG_CREDENTIALS)
        account = await self.store.account_by_email(key)
        if not await self._passwords.verify(account.password_hash if account else None, password):
            self.limiter.failed(key, client, self._monotonic())
            raise Unauthenticated(WRONG_CREDENTIALS)
        assert account is not None
        self.limiter.succeeded(key)
        if account.disabled_at is not None:
            # Said only to whoever knows the password.
            raise PermissionDenied("this account is disabled; contact the API's publisher")
        if self._passwords.needs_rehash(account.password_hash):
            await self.store.set_password_hash(account.id, await self._passwords.hash(password))
        return await self._new_session(SessionKind.CONSUMER, account.id)

    async def sign_in_publisher(self, admin_token: str, client: str) -> NewSession:
        self._check_limits(_PUBLISHER_KEY, client)
        if not hmac.compare_digest(admin_token.strip().encode(), self._admin_token):
            self.limiter.failed(_PUBLISHER_KEY, client, self._monotonic())
            raise Unauthenticated("the admin token is incorrect")
        self.limiter.succeeded(_PUBLISHER_KEY)
        return await self._new_session(SessionKind.PUBLISHER, "")

    def _check_limits(self, key: str, client: str) -> None:
        refusal = self.limiter.check(key, client, self._monotonic())
        if refusal is not None:
            log.warning("portal sign-in refused: too many failures per %s", refusal.scope)
            raise TooManyAttempts(refusal.retry_after_seconds)

    async def _new_session(self, kind: SessionKind, account_id: str) -> NewSession:
        token = new_token()
        now = self._clock()
        await self.store.create_session(
            PortalSession(
                token_hash=token_hash(token),
                kind=kind.value,
                account_id=account_id,
                created_at=now,
                expires_at=now + self._session_ttl,
            )
        )
        return NewSession(token=token, kind=kind, account_id=account_id)

    async def authenticate(self, session_token: str) -> Principal | None:
        """The principal of a live session; None for anything else (unknown, expired, malformed, an
        account disabled since)."""
        if not is_token(session_token):
            return None
        row = await self.store.session(token_hash(session_token), self._clock())
        if row is None:
            return None
        if row.kind == SessionKind.PUBLISHER.value:
            return Principal(SessionKind.PUBLISHER, None, session_token)
        account = await self.store.account(row.account_id)
        if account is None or account.disabled_at is not None:
            return None
        return Principal(SessionKind.CONSUMER, account, session_token)

    async def sign_out(self, session_token: str) -> None:
        if is_token(session_token):
            await self.store.delete_session(token_hash(session_token))

    def csrf_token(self, session_token: str) -> str:
        return csrf_token(self._secret, session_token)

    def csrf_valid(self, session_token: str, presented: str) -> bool:
        return csrf_valid(self._secret, session_token, presented)

    # Password reset

    async def request_password_reset(self, email: str) -> None:
        """Sends a reset link when the email has an enabled account; the same (silent) outcome otherwise."""
        email = normalize_email(email)
        account = await self.store.account_by_email(email)
        if account is None or account.disabled_at is not None:
            log.info("portal password reset requested for an email without an enabled account")
            return
        token = new_token()
        now = self._clock()
        await self.store.create_reset_token(
            PortalResetToken(
                token_hash=token_hash(token),
                account_id=account.id,
                created_at=now,
                expires_at=now + self._reset_ttl,
            )
        )
        minutes = int(self._reset_ttl.total_seconds() // 60)
        body = (
            "Someone asked to reset the password of your API portal account.\n\n"
            f"To choose a new password, open this link within {minutes} minutes:\n"
            f"{self.public_url}/reset-password/{token}\n\n"
            "If it was not you, ignore this message: your password stays as it is.\n"
        )
        await self._outbox.send(OutboxMessage(account.email, "Reset your password", body, account.id))

    async def reset_password(self, reset_token: str, new_password: str) -> None:
        check_password(new_password)
        invalid = InvalidArgument("this password-reset link is invalid or has expired; ask for a new one")
        if not is_token(reset_token):
            raise invalid
        password_hash = await self._passwords.hash(new_password)
        account = await self.store.reset_password(token_hash(reset_token), password_hash, self._clock())
        if account is None:
            raise invalid

    # Administration

    async def find_account(self, reference: str) -> PortalAccount:
        """An account by id or email; NOT_FOUND otherwise."""
        reference = reference.strip()
        if not reference:
            raise InvalidArgument("account is required (an account id or email)")
        account = await self.store.account(reference)
        if account is None and "@" in reference:
            account = await self.store.account_by_email(reference.lower())
        if account is None:
            raise NotFound(f"account {reference[:80]!r} not found")
        return account

    async def ensure_account(self, email: str, password: str, display_name: str = "") -> PortalAccount:
        """The account with this email, created or given this password (the demo's consumer)."""
        email = normalize_email(email)
        check_password(password, email)
        account = await self.store.account_by_email(email)
        password_hash = await self._passwords.hash(password)
        if account is None:
            now = self._clock()
            account = PortalAccount(
                id=new_account_id(),
                email=email,
                display_name=check_display_name(display_name),
                password_hash=password_hash,
                created_at=now,
                password_changed_at=now,
            )
            return await self.store.create_account(account)
        await self.store.set_password_hash(account.id, password_hash)
        return account

    async def set_disabled(self, reference: str, disabled: bool, reason: str = "") -> PortalAccount:
        """Disables (sessions ended, applications blocked at the gateway) or enables an account."""
        reason = reason.strip()
        if len(reason) > REASON_MAX:
            raise InvalidArgument(f"reason must be at most {REASON_MAX} characters (got {len(reason)})")
        account = await self.find_account(reference)
        return await self.store.set_disabled(account.id, disabled, reason, self._clock())
