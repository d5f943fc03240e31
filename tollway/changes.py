"""Change propagation: every replica learns of committed changes (revocations, blocks, publishing)
within a fraction of a second, so in-memory snapshots stay current without per-request database work.

Sources of a wake-up: a change committed by this process (immediate), PostgreSQL NOTIFY (immediate,
other replicas), and a periodic poll of the change revision (bounded delay, any database)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tollway.db import Database

log = logging.getLogger(__name__)

Listener = Callable[[], Awaitable[None]]


class ChangeFeed:
    def __init__(self, db: Database, poll_seconds: float = 0.25) -> None:
        self._db = db
        self._poll_seconds = poll_seconds
        self._listeners: list[Listener] = []
        self._wake = asyncio.Event()
        self._revision = -1
        self._task: asyncio.Task[None] | None = None
        self._pg_conn: Any = None

    def subscribe(self, listener: Listener) -> None:
        """Registers a coroutine called once now (at start) and after every observed change."""
        self._listeners.append(listener)

    def committed(self) -> None:
        """Called by writers after their transaction committed."""
        self._wake.set()

    async def start(self) -> None:
        await self._refresh()
        if self._db.is_postgres:
            await self._listen_postgres()
        self._task = asyncio.create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pg_conn is not None:
            with contextlib.suppress(Exception):
                await self._pg_conn.close()

    async def _listen_postgres(self) -> None:
        import asyncpg

        try:
            self._pg_conn = await asyncpg.connect(self._db.asyncpg_dsn(), timeout=5)
            await self._pg_conn.add_listener(self._db.notify_channel, lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError) as exc:
            # Polling still delivers changes; LISTEN only makes them faster.
            log.warning("LISTEN unavailable (%s); relying on polling", type(exc).__name__)
            self._pg_conn = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            self._wake.clear()
            try:
                await self._refresh()
            except Exception as exc:  # the database may be down: keep serving the last snapshot
                log.warning("change poll failed: %s", type(exc).__name__)
                await asyncio.sleep(self._poll_seconds)

    async def _refresh(self) -> None:
        revision = await self._db.current_revision()
        if revision == self._revision:
            return
        for listener in self._listeners:
            await listener()
        # Only advance once every listener has loaded the new state; a failure retries next round.
        self._revision = revision
