"""Refuses the unsafe setup: two throttle replicas on the memory store, one database. Each counts
only what it sees, so each admits a plan's whole limit (measured: 100 admitted for a plan of 50),
and nothing used to say so.

A replica on the memory store registers in the throttle_memory_replica table and refreshes its
last_seen every HEARTBEAT_SECONDS in the background. At start it inserts its row first, then looks
for other live rows: when there is one, the replica that started later refuses to start (raising
UnsafeSetup, naming TOLLWAY_RATELIMIT_STORE=redis), so two replicas starting at once cannot both pass.
A row is live until STALE_AFTER_SECONDS after its last heartbeat; a row of this host whose process no
longer exists is dead at once, so a replica killed with kill -9 can be restarted straight away.
A replica stopped normally deletes its row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import datetime, timedelta

from sqlmodel import col, delete, select

from tollway import schema
from tollway.background import cancel_task
from tollway.db import Database
from tollway.errors import StartupRefused
from tollway.settings import ThrottleSettings

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 20.0


class UnsafeSetup(StartupRefused):
    """Another throttle replica on the memory store uses this database."""


def refuse_memory_store_workers(settings: ThrottleSettings) -> None:
    """Several workers of one process are several replicas: on the memory store each would admit a
    plan's whole limit, so they are refused before any of them starts (the registration below would
    stop only the later ones, after the first had started serving)."""
    if settings.store == "memory" and settings.workers > 1:
        raise UnsafeSetup(
            f"TOLLWAY_WORKERS={settings.workers} with TOLLWAY_RATELIMIT_STORE=memory: each worker would keep"
            " its own rate-limit counters and admit a plan's whole limit. Set TOLLWAY_RATELIMIT_STORE=redis"
            " (and TOLLWAY_REDIS_URL) to run several workers, or run one."
        )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MemoryStoreRegistration:
    """This replica's row in throttle_memory_replica, from `register` to `unregister`."""

    def __init__(
        self,
        db: Database,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stale_after_seconds: float = STALE_AFTER_SECONDS,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self._db = db
        self._heartbeat = heartbeat_seconds
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.id = schema.new_id("replica")
        self._task: asyncio.Task[None] | None = None

    def _live(self, row: schema.ThrottleMemoryReplica, now: datetime) -> bool:
        last_seen = schema.as_utc(row.last_seen)
        if last_seen is None or now - last_seen > self._stale_after:
            return False
        return not (row.host == self.host and row.pid != self.pid and not _process_exists(row.pid))

    async def register(self) -> None:
        """Registers this replica; UnsafeSetup (and no row left behind) when another live one started
        before it."""
        now = schema.utcnow()
        Row = schema.ThrottleMemoryReplica
        async with self._db.session() as session:
            session.add(Row(id=self.id, host=self.host, pid=self.pid, started_at=now, last_seen=now))
            await session.commit()
        async with self._db.session() as session:
            rows = list(await session.exec(select(Row)))
            dead = [row.id for row in rows if row.id != self.id and not self._live(row, now)]
            if dead:
                await session.exec(delete(Row).where(col(Row.id).in_(dead)))
                await session.commit()
        me = next(row for row in rows if row.id == self.id)
        earlier = [
            row
            for row in rows
            if row.id != self.id
            and self._live(row, now)
            and (schema.as_utc(row.started_at), row.id) < (schema.as_utc(me.started_at), me.id)
        ]
        if earlier:
            await self._delete_own()
            other = earlier[0]
            raise UnsafeSetup(
                f"another throttle replica (host {other.host}, pid {other.pid}) keeps its rate-limit"
                " counters in memory on this database: two such replicas each admit a plan's whole limit."
                " Set TOLLWAY_RATELIMIT_STORE=redis (and TOLLWAY_REDIS_URL) on every throttle replica, or"
                f" run only one. A replica that stopped without unregistering is forgotten"
                f" {self._stale_after.total_seconds():.0f} s after its last heartbeat."
            )
        self._task = asyncio.get_running_loop().create_task(self._beat(), name="throttle-replica-heartbeat")

    async def _beat(self) -> None:
        Row = schema.ThrottleMemoryReplica
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                async with self._db.session() as session:
                    row = await session.get(Row, self.id)
                    if row is None:  # removed as stale during a long pause: register again
                        row = Row(id=self.id, host=self.host, pid=self.pid)
                    row.last_seen = schema.utcnow()
                    session.add(row)
                    await session.commit()
            except Exception as exc:  # the database may be away for a while; keep beating
                log.warning("throttle replica heartbeat failed: %s", type(exc).__name__)

    async def _delete_own(self) -> None:
        Row = schema.ThrottleMemoryReplica
        async with self._db.session() as session:
            await session.exec(delete(Row).where(col(Row.id) == self.id))
            await session.commit()

    async def unregister(self) -> None:
        await cancel_task(self._task)
        self._task = None
        try:
            await self._delete_own()
        except Exception as exc:  # the row goes stale by itself
            log.warning("throttle replica could not unregister: %s", type(exc).__name__)
