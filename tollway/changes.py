"""Change propagation: every replica applies committed changes to its in-memory indexes within a
fraction of a second, in proportion to what changed, without per-request database work.

Each listener (keymgr's key index, the throttle's plan view, xds's catalog, billing's approval
watchers) follows the change log (tollway/change_log.py) on its own: it names its topics, loads in full
once, then applies only the changed entities of its topics, in sequence order. A listener that starts,
or finds that the log was pruned past its position, loads in full again. One listener's failure does
not hold back the others: each retries on its own, and keeps serving what it last loaded.

Sources of a wake-up: a change committed by this process (immediate), PostgreSQL NOTIFY (immediate,
other replicas; the LISTEN connection reconnects by itself), and a periodic poll (the floor, any
database). The log is pruned after `retention_seconds`; the newest entry is always kept so sequence
numbers never restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import delete, func, update
from sqlmodel import col, select

from tollway import schema
from tollway.change_log import Change, Topic, change_of
from tollway.db import Database
from tollway.metrics import component_registry

log = logging.getLogger(__name__)

# Changes fetched per query while catching up; a listener applies them between awaits.
BATCH = 2000
_MAX_RETRY_SECONDS = 5.0
_PRUNE_EVERY_SECONDS = 60.0
_LISTEN_CHECK_SECONDS = 1.0
_STOP_SECONDS = 2.0
# Propagation lag buckets (seconds): the promise is under one second (DESIGN.md).
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ChangeListener(Protocol):
    """Something that keeps an in-memory view of some topics."""

    @property
    def name(self) -> str: ...

    @property
    def topics(self) -> frozenset[Topic]: ...

    async def load_all(self) -> None:
        """Builds its view from the database in full, swapping it in when complete."""

    async def apply(self, changes: Sequence[Change]) -> None:
        """Applies changes of its topics, in sequence order. Re-reads each entity's current row, so a
        change applied twice, or already reflected by a full load, is harmless."""


@dataclass(frozen=True)
class ReloadOnChange:
    """A listener whose view is small (the catalog, billing's watchers): any change of its topics
    reloads it whole."""

    name: str
    topics: frozenset[Topic]
    reload: Callable[[], Awaitable[None]]

    async def load_all(self) -> None:
        await self.reload()

    async def apply(self, changes: Sequence[Change]) -> None:
        await self.reload()


@dataclass
class _Follower:
    listener: ChangeListener
    position: int = 0
    loaded: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    retry_delay: float = 0.0
    full_loads: int = 0
    applied: int = 0
    failures: int = 0


class ChangeFeed:
    def __init__(
        self,
        db: Database,
        poll_seconds: float = 0.25,
        retention_seconds: float = 3600.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._db = db
        # Commit → applied, per listener and topic (both fixed sets): the replica's propagation lag.
        self.lag = Histogram(
            "tollway_change_lag_seconds",
            "Seconds from a change's commit to this replica's listener applying it.",
            ["listener", "topic"],
            buckets=LAG_BUCKETS,
            registry=registry if registry is not None else component_registry(),
        )
        self._poll_seconds = poll_seconds
        self._retention = timedelta(seconds=retention_seconds)
        self._followers: list[_Follower] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pg_conn: Any = None

    def subscribe(self, listener: ChangeListener) -> None:
        """Registers a listener: loaded in full at `start()`, then kept current."""
        self._followers.append(_Follower(listener))

    def committed(self) -> None:
        """Called by writers after their transaction committed: every listener catches up now."""
        for follower in self._followers:
            follower.wake.set()

    def loaded(self, name: str) -> bool:
        """True once the named listener completed its first full load."""
        return any(f.loaded for f in self._followers if f.listener.name == name)

    def positions(self) -> dict[str, int]:
        """Each listener's position in the change log (the last sequence number it applied)."""
        return {f.listener.name: f.position for f in self._followers}

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            f.listener.name: {
                "position": f.position,
                "full_loads": f.full_loads,
                "applied": f.applied,
                "failures": f.failures,
            }
            for f in self._followers
        }

    async def start(self) -> None:
        """Loads every listener in full (raising if one cannot load: a replica must not serve without
        its view), then follows the log in the background."""
        for follower in self._followers:
            await self._catch_up(follower)
        if self._db.is_postgres:
            await self._listen_postgres()
            self._tasks.append(asyncio.create_task(self._keep_listening(), name="change-listen"))
        self._tasks += [
            asyncio.create_task(self._follow(f), name=f"change-feed-{f.listener.name}")
            for f in self._followers
        ]
        self._tasks.append(asyncio.create_task(self._poll(), name="change-poll"))
        self._tasks.append(asyncio.create_task(self._prune_periodically(), name="change-prune"))

    async def stop(self) -> None:
        """Stops following, within a bound: a task stuck in a database call that ignores its
        cancellation, or a LISTEN connection that does not close gracefully, must not hold up the
        process's shutdown."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=_STOP_SECONDS)
            if stuck:
                log.warning("change feed: %d task(s) did not stop in time", len(stuck))
        self._tasks = []
        if self._pg_conn is not None:
            try:
                await asyncio.wait_for(self._pg_conn.close(timeout=_STOP_SECONDS), _STOP_SECONDS)
            except Exception:
                self._pg_conn.terminate()
            self._pg_conn = None

    # --- following -------------------------------------------------------------------------------------

    async def _follow(self, follower: _Follower) -> None:
        """Catches up whenever woken (a local commit, a NOTIFY, or the shared poll seeing a newer head);
        after a failure, retries on its own with a growing delay."""
        while True:
            await follower.wake.wait()
            follower.wake.clear()
            try:
                await self._catch_up(follower)
                follower.retry_delay = 0.0
            except Exception as exc:  # the database may be down: keep serving the last view
                follower.failures += 1
                follower.retry_delay = min(
                    max(follower.retry_delay * 2, self._poll_seconds), _MAX_RETRY_SECONDS
                )
                log.warning(
                    "change listener %s failed (%s); retrying in %.2fs",
                    follower.listener.name,
                    type(exc).__name__,
                    follower.retry_delay,
                )
                await asyncio.sleep(follower.retry_delay)
                follower.wake.set()

    def poll_interval(self) -> float:
        """Seconds between polls. While LISTEN is up, NOTIFY brings other replicas' changes at once and
        the poll is only a safety net, so it runs no oftener than the LISTEN health check (1 s): three
        database round trips a second fewer per idle replica. Without LISTEN (SQLite, or the connection
        lost) it is the configured interval, the only way changes arrive."""
        if self._pg_conn is not None and not self._pg_conn.is_closed():
            return max(self._poll_seconds, _LISTEN_CHECK_SECONDS)
        return self._poll_seconds

    async def _poll(self) -> None:
        """The floor under NOTIFY and local commits: one query pair per interval for the whole process
        (not one per listener), waking only the listeners behind the log's head. With five listeners
        that is a fifth of the database round trips, all of them on the serving event loop."""
        while True:
            await asyncio.sleep(self.poll_interval())
            try:
                pruned_through, head = await self._bounds()
            except Exception as exc:
                log.debug("change feed poll failed (%s)", type(exc).__name__)
                continue
            for follower in self._followers:
                if not follower.loaded or follower.position < max(head, pruned_through):
                    follower.wake.set()

    async def _catch_up(self, follower: _Follower) -> None:
        pruned_through, head = await self._bounds()
        if not follower.loaded or follower.position < pruned_through:
            if follower.loaded:
                log.info(
                    "change listener %s at %d missed pruned changes (through %d): loading in full",
                    follower.listener.name,
                    follower.position,
                    pruned_through,
                )
            # Changes committed while it loads are applied after it: a full load reflects at least
            # everything up to `head`.
            await follower.listener.load_all()
            follower.position, follower.loaded = head, True
            follower.full_loads += 1
            follower.wake.set()
            return
        topics = [topic.value for topic in follower.listener.topics]
        while follower.position < head:
            changes = await self._changes(follower.position, head, topics)
            if changes:
                await follower.listener.apply(changes)
                follower.applied += len(changes)
                self._observe_lag(follower.listener.name, changes)
            if len(changes) < BATCH:
                follower.position = head
            else:
                follower.position = changes[-1].seq
                await asyncio.sleep(0)  # let the hot path run between batches

    def _observe_lag(self, listener: str, changes: Sequence[Change]) -> None:
        now = datetime.now(UTC)
        children: dict[str, Any] = {}
        for change in changes:
            if change.at is None:
                continue
            child = children.get(change.topic)
            if child is None:
                child = children[change.topic] = self.lag.labels(listener, change.topic.value)
            child.observe(max((now - change.at).total_seconds(), 0.0))

    async def _bounds(self) -> tuple[int, int]:
        """(pruned through, newest sequence number) of the log."""
        # One Core statement, not two through an ORM session: every replica runs it each poll interval,
        # on the serving event loop.
        newest = select(func.max(schema.ChangeLogEntry.seq)).scalar_subquery()
        statement = select(schema.ChangeRevision.pruned_through, newest).where(schema.ChangeRevision.id == 1)
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(statement)).first()
            if row is None:  # no revision row (a database older than it): the log alone
                head = (await conn.execute(select(func.max(schema.ChangeLogEntry.seq)))).scalar()
                return 0, int(head or 0)
        pruned, head = row
        return int(pruned or 0), int(head or pruned or 0)

    async def _changes(self, after: int, through: int, topics: list[str]) -> list[Change]:
        entry = schema.ChangeLogEntry
        statement = (
            select(entry)
            .where(col(entry.seq) > after, col(entry.seq) <= through, col(entry.topic).in_(topics))
            .order_by(col(entry.seq))
            .limit(BATCH)
        )
        async with self._db.session() as session:
            return [change_of(row) for row in (await session.exec(statement)).all()]

    # --- pruning ---------------------------------------------------------------------------------------

    async def prune(self) -> int:
        """Deletes entries older than the retention window (never the newest one) and records how far
        the log was pruned. Returns the number of entries deleted."""
        entry = schema.ChangeLogEntry
        cutoff = schema.utcnow() - self._retention
        async with self._db.session() as session:
            newest = (await session.exec(select(func.max(entry.seq)))).one_or_none()
            old = (
                await session.exec(select(func.max(entry.seq)).where(col(entry.at) < cutoff))
            ).one_or_none()
            if newest is None or old is None:
                return 0
            through = min(int(old), int(newest) - 1)
            if through <= 0:
                return 0
            result = await session.exec(delete(entry).where(col(entry.seq) <= through))
            await session.exec(
                update(schema.ChangeRevision)
                .where(col(schema.ChangeRevision.id) == 1)
                .where(col(schema.ChangeRevision.pruned_through) < through)
                .values(pruned_through=through)
            )
            await session.commit()
        return int(result.rowcount or 0)

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(_PRUNE_EVERY_SECONDS)
            try:
                deleted = await self.prune()
                if deleted:
                    log.debug("pruned %d change log entries", deleted)
            except Exception as exc:
                log.warning("change log prune failed: %s", type(exc).__name__)

    # --- PostgreSQL LISTEN -----------------------------------------------------------------------------

    async def _listen_postgres(self) -> None:
        import asyncpg

        connection: Any = None
        try:
            # Deadlines as for every database call (tollway/db.py): connecting, and LISTEN itself.
            connection = await asyncpg.connect(
                self._db.asyncpg_dsn(), timeout=self._db.connect_timeout, command_timeout=self._db.timeout
            )
            await connection.add_listener(self._db.notify_channel, lambda *_: self.committed())
        # InterfaceError too: a connection closed under add_listener must not end the reconnect loop.
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Polling still delivers changes; LISTEN only makes them faster.
            log.warning("LISTEN unavailable (%s); relying on polling until it reconnects", type(exc).__name__)
            if connection is not None:
                connection.terminate()
            self._pg_conn = None
            return
        self._pg_conn = connection

    async def _keep_listening(self) -> None:
        """Reconnects LISTEN when its connection drops or stops answering (a server that froze, or a
        network that silently lost it, closes nothing); the poll delivers changes meanwhile."""
        while True:
            await asyncio.sleep(_LISTEN_CHECK_SECONDS)
            if self._pg_conn is not None and not self._pg_conn.is_closed():
                if await self._listen_alive(self._pg_conn):
                    continue
                log.warning("LISTEN connection did not answer; reconnecting")
                self._pg_conn.terminate()
            self._pg_conn = None
            await self._listen_postgres()
            if self._pg_conn is not None:
                log.info("LISTEN reconnected")
                self.committed()  # whatever was notified meanwhile

    async def _listen_alive(self, connection: Any) -> bool:
        """One round trip on the LISTEN connection within the database's deadline."""
        try:
            await connection.execute("SELECT 1", timeout=self._db.timeout)
        except Exception:
            return False
        return True
