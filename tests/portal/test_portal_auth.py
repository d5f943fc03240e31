"""Consumer accounts against the real store (SQLite and PostgreSQL): sign-up, sign-in and its limits,
sessions, password reset through the outbox, disabling an account; nothing secret stored as given."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from portal.accounts import SessionKind
from portal.auth import AccountService
from portal.errors import WRONG_CREDENTIALS, PermissionDenied, TooManyAttempts, Unauthenticated
from portal.outbox import MemoryOutbox
from portal.signin_limits import SignInLimiter
from portal.store import SqlAccountStore
from tollway.db import Database
from tollway.errors import AlreadyExists, InvalidArgument
from tollway.schema import Application, BlockRule, utcnow
from tollway.vocabulary import BlockTarget

PASSWORD = "correct horse battery"
ADMIN_TOKEN = "admin-token-for-tests"


@pytest.fixture
async def service(database: Database) -> AsyncIterator[AccountService]:
    commits: list[int] = []
    store = SqlAccountStore(database, lambda: commits.append(1))
    yield AccountService(
        store,
        MemoryOutbox(),
        secret="portal-secret",
        admin_token=ADMIN_TOKEN,
        public_url="http://portal.test/",
        limiter=SignInLimiter(per_account=3, per_client=50),
    )


def outbox(service: AccountService) -> MemoryOutbox:
    box = service._outbox
    assert isinstance(box, MemoryOutbox)
    return box


async def test_sign_up_then_sign_in_gives_sessions_that_authenticate(service: AccountService) -> None:
    created = await service.sign_up(" Alice@Example.com ", PASSWORD, "Alice")
    principal = await service.authenticate(created.token)
    assert principal is not None and principal.kind is SessionKind.CONSUMER
    assert principal.account is not None and principal.account.email == "alice@example.com"

    signed_in = await service.sign_in("alice@example.com", PASSWORD, "127.0.0.1")
    assert signed_in.token != created.token
    await service.sign_out(signed_in.token)
    assert await service.authenticate(signed_in.token) is None
    assert await service.authenticate(created.token) is not None
    assert await service.authenticate("not-a-token") is None

    with pytest.raises(AlreadyExists):
        await service.sign_up("alice@example.com", PASSWORD)


async def test_wrong_password_and_unknown_email_get_the_same_answer(service: AccountService) -> None:
    await service.sign_up("alice@example.com", PASSWORD)
    with pytest.raises(Unauthenticated) as wrong_password:
        await service.sign_in("alice@example.com", "wrong password!", "127.0.0.1")
    with pytest.raises(Unauthenticated) as unknown_email:
        await service.sign_in("nobody@example.com", PASSWORD, "127.0.0.1")
    assert wrong_password.value.message == unknown_email.value.message == WRONG_CREDENTIALS


async def test_sign_in_is_limited_per_account_even_with_the_right_password(service: AccountService) -> None:
    await service.sign_up("alice@example.com", PASSWORD)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await service.sign_in("alice@example.com", "wrong password!", "127.0.0.1")
    with pytest.raises(TooManyAttempts):
        await service.sign_in("alice@example.com", PASSWORD, "127.0.0.2")
    # Unknown emails are limited the same way (the limit says nothing about which emails exist).
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await service.sign_in("nobody@example.com", "wrong password!", "127.0.0.1")
    with pytest.raises(TooManyAttempts):
        await service.sign_in("nobody@example.com", "wrong password!", "127.0.0.1")


async def test_publisher_signs_in_with_the_admin_token(service: AccountService) -> None:
    with pytest.raises(Unauthenticated):
        await service.sign_in_publisher("wrong", "127.0.0.1")
    session = await service.sign_in_publisher(ADMIN_TOKEN, "127.0.0.1")
    principal = await service.authenticate(session.token)
    assert principal is not None and principal.kind is SessionKind.PUBLISHER and principal.account is None


async def test_password_reset_through_the_outbox(service: AccountService) -> None:
    old_session = await service.sign_up("alice@example.com", PASSWORD)
    await service.request_password_reset("nobody@example.com")
    assert outbox(service).messages == []
    await service.request_password_reset("ALICE@example.com")
    (message,) = outbox(service).messages
    assert message.to == "alice@example.com"
    assert "body" not in repr(message) and message.body not in repr(message)
    match = re.search(r"http://portal\.test/reset-password/(\S+)", message.body)
    assert match is not None
    token = match.group(1)

    with pytest.raises(InvalidArgument, match="at least 10"):
        await service.reset_password(token, "short")
    await service.reset_password(token, "a brand new password")
    assert await service.authenticate(old_session.token) is None  # every session ended
    with pytest.raises(InvalidArgument, match="invalid or has expired"):
        await service.reset_password(token, "yet another password")  # used once
    with pytest.raises(Unauthenticated):
        await service.sign_in("alice@example.com", PASSWORD, "127.0.0.1")
    assert await service.sign_in("alice@example.com", "a brand new password", "127.0.0.1")


async def test_expired_reset_links_and_sessions_are_refused(database: Database) -> None:
    clock = [utcnow()]
    service = AccountService(
        SqlAccountStore(database, lambda: None),
        MemoryOutbox(),
        secret="s",
        admin_token=ADMIN_TOKEN,
        public_url="http://portal.test",
        session_ttl=timedelta(minutes=5),
        reset_ttl=timedelta(minutes=5),
        clock=lambda: clock[0],
    )
    session = await service.sign_up("alice@example.com", PASSWORD)
    await service.request_password_reset("alice@example.com")
    token = outbox(service).messages[0].body.split("/reset-password/")[1].split()[0]
    clock[0] += timedelta(minutes=6)
    assert await service.authenticate(session.token) is None
    with pytest.raises(InvalidArgument, match="invalid or has expired"):
        await service.reset_password(token, "a brand new password")
    assert await service.store.prune(clock[0]) >= 1


async def test_disabling_an_account_blocks_its_applications_and_ends_its_sessions(
    service: AccountService, database: Database
) -> None:
    session = await service.sign_up("alice@example.com", PASSWORD)
    principal = await service.authenticate(session.token)
    assert principal is not None
    async with database.session() as db_session:
        db_session.add(Application(id="app_alice1", name="one", owner=principal.account_id))
        db_session.add(Application(id="app_alice2", name="two", owner=principal.account_id))
        db_session.add(Application(id="app_other", name="x", owner="someone-else"))
        await db_session.commit()
    async with database.session() as db_session:
        # An admin's own rule on one of them stays when the account is enabled again.
        db_session.add(BlockRule(id="block_admin", target=BlockTarget.APPLICATION, value="app_alice2"))
        await db_session.commit()

    revision = await database.current_revision()
    await service.set_disabled("alice@example.com", True, "unpaid invoices")
    assert await database.current_revision() > revision  # keymgr replicas pick the rules up
    assert await service.authenticate(session.token) is None
    with pytest.raises(PermissionDenied, match="disabled"):
        await service.sign_in("alice@example.com", PASSWORD, "127.0.0.1")
    rules = await _rules(database)
    assert {(rule.target, rule.value) for rule in rules} == {
        ("APPLICATION", "app_alice1"),
        ("APPLICATION", "app_alice2"),
    }

    await service.set_disabled(principal.account_id, False)
    assert {rule.id for rule in await _rules(database)} == {"block_admin"}
    assert await service.sign_in("alice@example.com", PASSWORD, "127.0.0.1")


async def _rules(database: Database) -> list[BlockRule]:
    from sqlmodel import select

    async with database.session() as session:
        return list((await session.exec(select(BlockRule))).all())


async def test_no_password_or_token_is_stored_as_given(service: AccountService, database: Database) -> None:
    session = await service.sign_up("alice@example.com", PASSWORD)
    await service.request_password_reset("alice@example.com")
    reset_token = outbox(service).messages[0].body.split("/reset-password/")[1].split()[0]
    secrets_given = [PASSWORD, session.token, reset_token]
    dump = []
    async with database.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = await conn.execute(text(f'SELECT * FROM "{table.name}"'))
            dump.extend(str(value) for row in rows for value in row)
    stored = "\n".join(dump)
    assert "$argon2id$v=19$m=19456,t=2,p=1$" in stored
    for secret in secrets_given:
        assert secret not in stored
