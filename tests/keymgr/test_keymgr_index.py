"""KeyIndex / load_snapshot over SQLite and PostgreSQL: full loads, incremental apply of changes, and
revocation reaching a second replica through PostgreSQL NOTIFY within one second (also after its LISTEN
connection was killed). The property test of incremental = full load is in test_keymgr_index_apply.py."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, text
from sqlmodel import col, select

import keymgr.index as index_module
from keymgr.decision import Allowed, AuthzRequest, Denied, decide
from keymgr.index import EMPTY_SNAPSHOT, KeyIndex, load_snapshot
from keymgr.keys import key_hash, new_key
from tollway import schema
from tollway.change_log import Change, Op, Topic, change_of
from tollway.changes import ChangeFeed
from tollway.db import Database

SECRET = "index-test-secret"


@dataclass
class Seeded:
    api_id: str
    hidden_api_id: str
    plan_id: str
    application_id: str
    subscription_id: str
    key_id: str
    full_key: str
    revoked_key_id: str


async def seed(db: Database) -> Seeded:
    key = new_key()
    revoked = new_key()
    plan = schema.Plan(id=schema.new_id("plan"), name="gold")
    api = schema.Api(id=schema.new_id("api"), name="weather", context_path="/weather/v1", published=True)
    hidden = schema.Api(id=schema.new_id("api"), name="draft", context_path="/draft/v1", published=False)
    app = schema.Application(id=schema.new_id("app"), name="one")
    gone = schema.Application(id=schema.new_id("app"), name="gone", deleted_at=schema.utcnow())
    async with db.session() as session:
        session.add_all([plan, api, hidden, app, gone])
        await session.flush()
        subscription = schema.Subscription(
            id=schema.new_id("sub"), application_id=app.id, api_id=api.id, plan_id=plan.id
        )
        session.add_all(
            [
                subscription,
                # Cancelled subscriptions are history, not live.
                schema.Subscription(
                    id=schema.new_id("sub"),
                    application_id=app.id,
                    api_id=hidden.id,
                    plan_id=plan.id,
                    state="CANCELLED",
                ),
                schema.ApiKey(
                    key_id=key.key_id,
                    application_id=app.id,
                    key_hash=key_hash(SECRET, key.full_key),
                    expires_at=datetime(2099, 1, 1, tzinfo=UTC),
                ),
                schema.ApiKey(
                    key_id=revoked.key_id,
                    application_id=app.id,
                    key_hash=key_hash(SECRET, revoked.full_key),
                    revoked_at=schema.utcnow(),
                ),
                schema.BlockRule(id=schema.new_id("blk"), target="CLIENT_CIDR", value="203.0.113.0/24"),
                schema.BlockRule(id=schema.new_id("blk"), target="CLIENT_CIDR", value="2001:db8::/32"),
                schema.BlockRule(id=schema.new_id("blk"), target="API", value="api_other"),
                schema.BlockRule(id=schema.new_id("blk"), target="APPLICATION", value=gone.id),
                schema.BlockRule(id=schema.new_id("blk"), target="API_KEY", value="aaaaaaaaaaaa"),
                # Never written by the store; must be skipped, not fail the load.
                schema.BlockRule(id=schema.new_id("blk"), target="CLIENT_CIDR", value="not a cidr"),
            ]
        )
        await db.record_change(session)
        await session.commit()
    return Seeded(
        api_id=api.id,
        hidden_api_id=hidden.id,
        plan_id=plan.id,
        application_id=app.id,
        subscription_id=subscription.id,
        key_id=key.key_id,
        full_key=key.full_key,
        revoked_key_id=revoked.key_id,
    )


async def revoke(db: Database, key_id: str) -> None:
    async with db.session() as session:
        api_key = await session.get(schema.ApiKey, key_id)
        assert api_key is not None
        api_key.revoked_at = schema.utcnow()
        session.add(api_key)
        await db.record_change(session)
        await session.commit()


def key_change(key_id: str) -> Change:
    return Change(seq=0, topic=Topic.KEYS, entity_id=key_id, op=Op.UPSERT)


def check(index: KeyIndex, seeded: Seeded) -> Allowed | Denied:
    request = AuthzRequest(headers={"x-api-key": seeded.full_key}, api_id=seeded.api_id)
    return decide(index.snapshot, request, schema.utcnow(), SECRET)


async def test_load_snapshot_contents(database: Database) -> None:
    seeded = await seed(database)
    snapshot = await load_snapshot(database)

    assert snapshot.loaded
    assert snapshot.revision == await database.current_revision() >= 1
    assert set(snapshot.apis) == {seeded.api_id}  # the unpublished API is absent
    assert snapshot.apis[seeded.api_id].name == "weather"
    assert snapshot.plans[seeded.plan_id].name == "gold"
    assert not snapshot.applications[seeded.application_id].deleted
    assert [a.deleted for a in snapshot.applications.values() if a.id != seeded.application_id] == [True]
    assert list(snapshot.subscriptions) == [(seeded.application_id, seeded.api_id)]
    assert snapshot.subscriptions[(seeded.application_id, seeded.api_id)].id == seeded.subscription_id

    key = snapshot.keys[seeded.key_id]
    assert key.expires_at == datetime(2099, 1, 1, tzinfo=UTC)  # aware UTC on SQLite too
    assert key.key_hash == key_hash(SECRET, seeded.full_key)
    assert not key.revoked
    revoked = snapshot.keys[seeded.revoked_key_id]
    assert revoked.revoked and revoked.revoked_at is not None and revoked.revoked_at.tzinfo is not None

    assert snapshot.blocked_api_ids == {"api_other"}
    assert len(snapshot.blocked_application_ids) == 1
    assert snapshot.blocked_key_ids == {"aaaaaaaaaaaa"}
    assert set(snapshot.blocked_networks) == {
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    }
    with pytest.raises(TypeError):
        snapshot.keys["x"] = key  # type: ignore[index]


async def test_empty_database_loads(database: Database) -> None:
    snapshot = await load_snapshot(database)
    assert snapshot.loaded and not snapshot.keys and not snapshot.apis


async def test_apply_after_revocation(database: Database) -> None:
    seeded = await seed(database)
    index = KeyIndex(database)
    assert index.snapshot is EMPTY_SNAPSHOT and not index.ready
    await index.load_all()
    assert index.ready
    assert isinstance(check(index, seeded), Allowed)

    await revoke(database, seeded.key_id)
    before = index.snapshot
    version = before.version
    assert isinstance(check(index, seeded), Allowed)  # no database work until the change is applied
    await index.apply([key_change(seeded.key_id)])
    # Changed in place, not reloaded; the version tells caches that it changed.
    assert index.snapshot is before and index.snapshot.version > version
    result = check(index, seeded)
    assert isinstance(result, Denied) and result.reason == "key_revoked"
    assert index.snapshot.contents() == (await load_snapshot(database)).contents()


async def test_apply_of_a_deleted_row_removes_it(database: Database) -> None:
    seeded = await seed(database)
    index = KeyIndex(database)
    await index.load_all()
    async with database.session() as session:
        api_key = await session.get(schema.ApiKey, seeded.key_id)
        await session.delete(api_key)
        await session.commit()
    await index.apply([Change(seq=0, topic=Topic.KEYS, entity_id=seeded.key_id, op=Op.DELETE)])
    assert seeded.key_id not in index.snapshot.keys
    result = check(index, seeded)
    assert isinstance(result, Denied) and result.reason == "key_invalid"


async def test_load_failure_keeps_old_snapshot_and_raises(database: Database) -> None:
    seeded = await seed(database)
    index = KeyIndex(database)
    await index.load_all()
    kept = index.snapshot
    async with database.engine.begin() as conn:
        await conn.execute(text("DROP TABLE api_key"))
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises must reach the feed
        await index.load_all()
    assert index.snapshot is kept
    with pytest.raises(Exception):  # noqa: B017 - an apply that cannot read fails whole
        await index.apply([key_change(seeded.key_id)])
    assert index.snapshot is kept
    assert isinstance(check(index, seeded), Allowed)


async def test_apply_before_the_first_load_waits_for_it(database: Database) -> None:
    seeded = await seed(database)
    index = KeyIndex(database)
    await index.apply([key_change(seeded.key_id)])
    assert not index.ready and index.snapshot is EMPTY_SNAPSHOT


async def test_change_feed_drives_applies(database: Database) -> None:
    seeded = await seed(database)
    index = KeyIndex(database)
    feed = ChangeFeed(database, poll_seconds=30)
    feed.subscribe(index)
    await feed.start()
    try:
        assert index.ready  # start() loads once
        assert isinstance(check(index, seeded), Allowed)
        await revoke(database, seeded.key_id)
        feed.committed()  # what an in-process writer does after committing
        deadline = time.monotonic() + 5  # generous: make check runs on two busy workers
        while isinstance(check(index, seeded), Allowed):
            assert time.monotonic() < deadline, "revocation not picked up"
            await asyncio.sleep(0.01)
        result = check(index, seeded)
        assert isinstance(result, Denied) and result.reason == "key_revoked"
        stats = feed.stats()["keymgr"]
        assert stats["full_loads"] == 1 and stats["applied"] >= 1  # applied, not reloaded
    finally:
        await feed.stop()


@pytest.mark.postgres
async def test_revocation_reaches_another_replica_within_one_second(database: Database) -> None:
    if not database.is_postgres:
        pytest.skip("replicas share state through PostgreSQL (SQLite is single-machine)")
    first = database
    second = Database(first.url, schema_name=first.schema_name)
    feeds: list[ChangeFeed] = []
    try:
        seeded = await seed(first)
        indexes = []
        for db in (first, second):
            index = KeyIndex(db)
            # A long poll interval: only NOTIFY can deliver the change in time.
            feed = ChangeFeed(db, poll_seconds=30)
            feed.subscribe(index)
            await feed.start()
            feeds.append(feed)
            indexes.append(index)
        replica = indexes[1]
        assert isinstance(check(replica, seeded), Allowed)
        # Give the LISTEN connections a moment to be registered server-side.
        await asyncio.sleep(0.1)

        started = time.monotonic()
        await revoke(first, seeded.key_id)  # no feed.committed(): the second replica must learn via NOTIFY
        deadline = started + 1.0
        while isinstance(check(replica, seeded), Allowed):
            assert time.monotonic() < deadline, "revocation did not reach the second replica within 1 s"
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        result = check(replica, seeded)
        assert isinstance(result, Denied) and result.reason == "key_revoked"
        assert elapsed < 1.0
        print(f"revocation visible on the second replica after {elapsed * 1000:.1f} ms")
    finally:
        for feed in feeds:
            await feed.stop()
        await second.dispose()


async def test_a_write_landing_mid_load_is_corrected_by_the_changes_after_its_head(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = await seed(database)
    head = await last_seq(database)
    real_chunks = index_module._chunks
    written = False

    async def chunks_then_write(session: Any, topic: Topic) -> Any:
        nonlocal written
        async for rows in real_chunks(session, topic):
            yield rows
            if topic is Topic.KEYS and not written:
                written = True
                await revoke(database, seeded.key_id)  # commits between this load's statements

    monkeypatch.setattr(index_module, "_chunks", chunks_then_write)
    index = KeyIndex(database)
    await index.load_all()
    assert written
    # What the change feed does after a load: apply every change after the head it read before.
    await index.apply(await changes_after(database, head))
    assert index.snapshot.keys[seeded.key_id].revoked
    assert index.snapshot.contents() == (await load_snapshot(database)).contents()


async def last_seq(db: Database) -> int:
    async with db.session() as session:
        newest = (await session.exec(select(func.max(schema.ChangeLogEntry.seq)))).one_or_none()
    return int(newest or 0)


async def changes_after(db: Database, seq: int) -> list[Change]:
    entry = schema.ChangeLogEntry
    async with db.session() as session:
        rows = (await session.exec(select(entry).where(col(entry.seq) > seq).order_by(col(entry.seq)))).all()
    return [change_of(row) for row in rows]


@pytest.mark.postgres
async def test_killed_listen_connection_still_delivers_changes(database: Database) -> None:
    if not database.is_postgres:
        pytest.skip("LISTEN is PostgreSQL's")
    first = database
    second = Database(first.url, schema_name=first.schema_name)
    index = KeyIndex(second)
    feed = ChangeFeed(second, poll_seconds=30)
    feed.subscribe(index)
    try:
        seeded = await seed(first)
        await feed.start()
        assert isinstance(check(index, seeded), Allowed)
        listen_pid = feed._pg_conn.get_server_pid()
        async with first.session() as session:
            await session.exec(text("SELECT pg_terminate_backend(:pid)").bindparams(pid=listen_pid))  # type: ignore[call-overload]
        # LISTEN reconnects within about a second; the change must then arrive without the 30 s poll.
        deadline = time.monotonic() + 5
        while (
            feed._pg_conn is None or feed._pg_conn.is_closed() or feed._pg_conn.get_server_pid() == listen_pid
        ):
            assert time.monotonic() < deadline, "LISTEN did not reconnect"
            await asyncio.sleep(0.05)
        await revoke(first, seeded.key_id)
        deadline = time.monotonic() + 3
        while isinstance(check(index, seeded), Allowed):
            assert time.monotonic() < deadline, "revocation not delivered after LISTEN's connection died"
            await asyncio.sleep(0.01)
    finally:
        await feed.stop()
        await second.dispose()


async def test_changes_arrive_without_an_in_process_signal(database: Database) -> None:
    """A write through another connection and no `committed()`: NOTIFY (PostgreSQL) or the poll, the
    floor on any database, delivers it."""
    seeded = await seed(database)
    index = KeyIndex(database)
    feed = ChangeFeed(database, poll_seconds=0.05)
    feed.subscribe(index)
    await feed.start()
    try:
        await revoke(database, seeded.key_id)
        deadline = time.monotonic() + 3
        while isinstance(check(index, seeded), Allowed):
            assert time.monotonic() < deadline, "the poll did not deliver the revocation"
            await asyncio.sleep(0.01)
    finally:
        await feed.stop()
