"""Two throttle replicas on the memory store and one database each admit a plan's whole limit (100
for a plan of 50); the second to start is refused, through the throttle_memory_replica table of the
real PostgreSQL (a schema of the test's own)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from tests.conftest import close_database, open_database
from throttle.replicas import MemoryStoreRegistration, UnsafeSetup
from tollway import schema
from tollway.db import Database


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[Database]:
    db = await open_database("postgres", tmp_path)
    try:
        yield db
    finally:
        await close_database(db)


async def _rows(db: Database) -> list[schema.ThrottleMemoryReplica]:
    async with db.session() as session:
        return list(await session.exec(select(schema.ThrottleMemoryReplica)))


async def test_a_second_memory_store_replica_on_one_database_is_refused(postgres: Database) -> None:
    first = MemoryStoreRegistration(postgres, host="host-a")
    await first.register()
    second = MemoryStoreRegistration(postgres, host="host-b")
    with pytest.raises(UnsafeSetup, match="TOLLWAY_RATELIMIT_STORE=redis"):
        await second.register()
    # The refused one leaves no row behind; the first keeps running.
    assert [row.id for row in await _rows(postgres)] == [first.id]
    await first.unregister()
    assert await _rows(postgres) == []
    # With the first one stopped, the next one starts.
    third = MemoryStoreRegistration(postgres, host="host-b")
    await third.register()
    await third.unregister()


async def test_a_replica_that_stopped_without_a_word_is_forgotten(postgres: Database) -> None:
    # Gone long ago (no heartbeat for longer than the staleness limit), from another host.
    stale = schema.ThrottleMemoryReplica(
        id="replica_gone", host="host-x", pid=1, last_seen=schema.utcnow() - timedelta(minutes=5)
    )
    # Killed with kill -9 on this host a moment ago: its process no longer exists.
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    killed = MemoryStoreRegistration(postgres, pid=int(finished.stdout))
    async with postgres.session() as session:
        session.add(stale)
        session.add(schema.ThrottleMemoryReplica(id="replica_killed", host=killed.host, pid=killed.pid))
        await session.commit()
    replica = MemoryStoreRegistration(postgres, pid=os.getpid())
    await replica.register()
    assert [row.id for row in await _rows(postgres)] == [replica.id]
    await replica.unregister()


async def test_the_heartbeat_keeps_a_replica_live(postgres: Database) -> None:
    first = MemoryStoreRegistration(postgres, host="host-a", heartbeat_seconds=0.05, stale_after_seconds=0.5)
    await first.register()
    try:
        (row,) = await _rows(postgres)
        seen = schema.as_utc(row.last_seen)
        for _ in range(100):
            (row,) = await _rows(postgres)
            if schema.as_utc(row.last_seen) != seen:
                break
            await asyncio.sleep(0.05)
        assert schema.as_utc(row.last_seen) != seen
        with pytest.raises(UnsafeSetup):
            await MemoryStoreRegistration(postgres, host="host-b", stale_after_seconds=600).register()
    finally:
        await first.unregister()
