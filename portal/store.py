"""The portal's own records behind a small interface: accounts, sessions, reset tokens, and an account's
suspension (SQL on the one database; SQLite embedded, PostgreSQL in production).

Disabling an account is one transaction: the flag, its sessions deleted, and a block rule (target
APPLICATION) for each of its live applications, written through the core lifecycle's transaction so
the change log carries the rules to every keymgr replica (its keys refuse within a second, as any
block does). Enabling removes exactly the rules that disabling made (portal_account_block)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tollway.db import Database
from tollway.errors import AlreadyExists, NotFound
from tollway.lifecycle import SubscriptionLifecycle
from tollway.schema import Application, BlockRule, as_utc, new_id
from tollway.schema_portal import PortalAccount, PortalAccountBlock, PortalResetToken, PortalSession
from tollway.vocabulary import BlockTarget

log = logging.getLogger(__name__)


class AccountStore(Protocol):
    async def create_account(self, account: PortalAccount) -> PortalAccount: ...
    async def account(self, account_id: str) -> PortalAccount | None: ...
    async def account_by_email(self, email: str) -> PortalAccount | None: ...
    async def list_accounts(self) -> Sequence[PortalAccount]: ...
    async def set_password_hash(self, account_id: str, password_hash: str) -> None: ...
    async def create_session(self, session: PortalSession) -> None: ...
    async def session(self, token_hash: str, now: datetime) -> PortalSession | None: ...
    async def delete_session(self, token_hash: str) -> None: ...
    async def create_reset_token(self, token: PortalResetToken) -> None: ...
    async def reset_password(
        self, token_hash: str, password_hash: str, now: datetime
    ) -> PortalAccount | None: ...
    async def set_disabled(
        self, account_id: str, disabled: bool, reason: str, now: datetime
    ) -> PortalAccount: ...
    async def prune(self, now: datetime) -> int: ...


class SqlAccountStore:
    def __init__(self, db: Database, on_commit: Callable[[], None]) -> None:
        self._db = db
        self._lifecycle = SubscriptionLifecycle(db, on_commit)

    async def create_account(self, account: PortalAccount) -> PortalAccount:
        async with self._db.session() as session:
            taken = await session.exec(select(PortalAccount.id).where(PortalAccount.email == account.email))
            if taken.first() is not None:
                raise AlreadyExists("an account with this email already exists")
            session.add(account)
            await session.commit()
        log.info("portal account %s created", account.id)
        return account

    async def account(self, account_id: str) -> PortalAccount | None:
        async with self._db.session() as session:
            return await session.get(PortalAccount, account_id)

    async def account_by_email(self, email: str) -> PortalAccount | None:
        async with self._db.session() as session:
            result = await session.exec(select(PortalAccount).where(PortalAccount.email == email))
            return result.first()

    async def list_accounts(self) -> Sequence[PortalAccount]:
        statement = select(PortalAccount).order_by(col(PortalAccount.created_at), col(PortalAccount.id))
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def set_password_hash(self, account_id: str, password_hash: str) -> None:
        """A rehash with newer parameters at sign-in (the password itself is unchanged)."""
        async with self._db.session() as session:
            account = await session.get(PortalAccount, account_id)
            if account is not None:
                account.password_hash = password_hash
                session.add(account)
                await session.commit()

    async def create_session(self, session_row: PortalSession) -> None:
        async with self._db.session() as session:
            session.add(session_row)
            await session.commit()

    async def session(self, token_hash: str, now: datetime) -> PortalSession | None:
        async with self._db.session() as session:
            row = await session.get(PortalSession, token_hash)
            if row is None:
                return None
            expires_at = as_utc(row.expires_at)
            if expires_at is None or expires_at <= now:
                await session.delete(row)
                await session.commit()
                return None
            return row

    async def delete_session(self, token_hash: str) -> None:
        async with self._db.session() as session:
            await session.exec(delete(PortalSession).where(col(PortalSession.token_hash) == token_hash))
            await session.commit()

    async def create_reset_token(self, token: PortalResetToken) -> None:
        async with self._db.session() as session:
            session.add(token)
            await session.commit()

    async def reset_password(
        self, token_hash: str, password_hash: str, now: datetime
    ) -> PortalAccount | None:
        """Sets the password of the token's account, uses the token up and signs every session out, in
        one transaction; None (nothing written) when the token is unknown, used or expired."""
        async with self._db.session() as session:
            token = await session.get(PortalResetToken, token_hash, with_for_update=True)
            expires_at = None if token is None else as_utc(token.expires_at)
            if token is None or token.used_at is not None or expires_at is None or expires_at <= now:
                return None
            account = await session.get(PortalAccount, token.account_id, with_for_update=True)
            if account is None:
                return None
            token.used_at = now
            account.password_hash = password_hash
            account.password_changed_at = now
            session.add(token)
            session.add(account)
            await session.exec(delete(PortalSession).where(col(PortalSession.account_id) == account.id))
            # Every other outstanding link of the account is spent too.
            others = await session.exec(
                select(PortalResetToken).where(
                    PortalResetToken.account_id == account.id, col(PortalResetToken.used_at).is_(None)
                )
            )
            for other in others.all():
                other.used_at = now
                session.add(other)
            await session.commit()
        log.info("portal account %s: password reset", account.id)
        return account

    async def set_disabled(
        self, account_id: str, disabled: bool, reason: str, now: datetime
    ) -> PortalAccount:
        async with self._lifecycle.write() as session:
            account = await session.get(PortalAccount, account_id, with_for_update=True)
            if account is None:
                raise NotFound(f"account {account_id!r} not found")
            if disabled:
                account.disabled_at = account.disabled_at or now
                account.disabled_reason = reason
                await session.exec(delete(PortalSession).where(col(PortalSession.account_id) == account_id))
                await self._block_applications(session, account_id, now)
            else:
                account.disabled_at = None
                account.disabled_reason = ""
                await self._unblock_applications(session, account_id)
            session.add(account)
            await self._lifecycle.commit(session)
        log.info("portal account %s %s", account_id, "disabled" if disabled else "enabled")
        return account

    async def _block_applications(self, session: AsyncSession, account_id: str, now: datetime) -> None:
        live = await session.exec(
            select(Application.id).where(
                Application.owner == account_id, col(Application.deleted_at).is_(None)
            )
        )
        for application_id in live.all():
            existing = await session.exec(
                select(BlockRule.id).where(
                    BlockRule.target == BlockTarget.APPLICATION.value, BlockRule.value == application_id
                )
            )
            if existing.first() is not None:
                continue  # already blocked (by an admin, or by an earlier disable)
            rule = BlockRule(
                id=new_id("block"),
                target=BlockTarget.APPLICATION.value,
                value=application_id,
                reason=f"portal account {account_id} disabled",
                created_at=now,
            )
            session.add(rule)
            session.add(PortalAccountBlock(block_rule_id=rule.id, account_id=account_id))

    async def _unblock_applications(self, session: AsyncSession, account_id: str) -> None:
        made = await session.exec(
            select(PortalAccountBlock).where(PortalAccountBlock.account_id == account_id)
        )
        for link in made.all():
            rule = await session.get(BlockRule, link.block_rule_id)
            if rule is not None:
                await session.delete(rule)
            await session.delete(link)

    async def prune(self, now: datetime) -> int:
        """Deletes expired sessions and reset tokens; returns how many."""
        async with self._db.session() as session:
            sessions = await session.exec(delete(PortalSession).where(col(PortalSession.expires_at) <= now))
            tokens = await session.exec(
                delete(PortalResetToken).where(col(PortalResetToken.expires_at) <= now)
            )
            await session.commit()
        return int(sessions.rowcount or 0) + int(tokens.rowcount or 0)


def new_account_id() -> str:
    return new_id("acct")
