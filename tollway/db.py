"""Database access: one async engine per process, sessions, schema creation, change revisions."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Float,
    Integer,
    Numeric,
    event,
    exists,
    insert,
    inspect,
    literal,
    text,
)
from sqlalchemy import select as select_core
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeEngine
from sqlmodel import Session as SQLModelSession
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tollway import change_log, schema
from tollway import schema_analytics as schema_analytics  # registers usage_detail with the schema
from tollway import schema_billing as schema_billing  # registers billing's tables with the schema
from tollway import schema_portal as schema_portal  # registers the portal's tables with the schema
from tollway import schema_usage as schema_usage  # registers usage's tables with the schema
from tollway.settings import DatabaseSettings
from tollway.subscription_states import Actor, SubscriptionState

log = logging.getLogger(__name__)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
NOTIFY_CHANNEL = "tollway_changes"


def async_url(url: str) -> str:
    """Accepts plain sqlite:/// and postgresql:// URLs and picks the async driver Tollway uses."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


class ChangeLoggingSession(SQLModelSession):
    """Every Tollway session: its flushes record changed entities in the change log."""


change_log.install(ChangeLoggingSession)


# A client-side backstop this long after PostgreSQL's own statement_timeout: a live server cancels a
# slow statement itself (the connection stays usable); only a server that does not answer at all (down
# behind a silent network, or frozen) is left to the client's deadline.
_CLIENT_MARGIN_SECONDS = 0.5


class Database:
    """The engine and sessions of one process.

    Every call has a deadline, so a database that is down or frozen fails calls instead of hanging
    them (the admin RPCs answer UNAVAILABLE, usage keeps its WAL, the views keep what they loaded):
    `timeout_ms` bounds one statement (PostgreSQL: statement_timeout, and the driver's command timeout
    just after it, which also bounds the pool's liveness ping), a wait for a pooled connection, and
    SQLite's wait for the write lock (busy timeout); `connect_timeout_ms` bounds opening a connection."""

    def __init__(
        self, url: str, schema_name: str = "", timeout_ms: int = 5000, connect_timeout_ms: int = 2000
    ) -> None:
        if timeout_ms <= 0 or connect_timeout_ms <= 0:
            raise ValueError("database timeouts must be positive")
        self.url = async_url(url)
        self.schema_name = schema_name
        self.is_postgres = self.url.startswith("postgresql")
        self.is_sqlite = self.url.startswith("sqlite")
        self.timeout = timeout_ms / 1000
        self.connect_timeout = connect_timeout_ms / 1000
        if schema_name and not _SCHEMA_NAME.match(schema_name):
            raise ValueError(f"invalid database schema name {schema_name!r}")
        connect_args: dict[str, Any] = {}
        if self.is_postgres:
            connect_args["timeout"] = self.connect_timeout
            connect_args["command_timeout"] = self.timeout + _CLIENT_MARGIN_SECONDS
            server_settings = {"statement_timeout": str(timeout_ms)}
            if schema_name:
                server_settings["search_path"] = schema_name
            connect_args["server_settings"] = server_settings
        if self.is_sqlite:
            connect_args["timeout"] = self.timeout
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            connect_args=connect_args,
            pool_pre_ping=self.is_postgres,
            **({"pool_timeout": self.timeout} if self.is_postgres else {}),
        )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas(timeout_ms))
        self.sessions = async_sessionmaker(
            self.engine,
            class_=AsyncSession,
            sync_session_class=ChangeLoggingSession,
            expire_on_commit=False,
            info={change_log.NOTIFY_CHANNEL_INFO: self.notify_channel} if self.is_postgres else {},
        )

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> Database:
        return cls(settings.url, settings.schema, settings.timeout_ms, settings.connect_timeout_ms)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def create_schema(self) -> None:
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                from pathlib import Path

                Path(database).parent.mkdir(parents=True, exist_ok=True)
        async with self.engine.begin() as conn:
            if self.is_postgres and self.schema_name:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"'))
            await conn.run_sync(SQLModel.metadata.create_all)
            await conn.run_sync(add_missing_columns)
            await conn.run_sync(backfill_cancellation_events)
        async with self.session() as session:
            if await session.get(schema.ChangeRevision, 1) is None:
                session.add(schema.ChangeRevision(id=1, value=0))
                await session.commit()

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def record_change(self, session: AsyncSession) -> None:
        """Bumps the change revision first thing in a writer's transaction (once per transaction): its
        row lock (SQLite: the write lock) is held until commit, so the change-log rows this
        transaction's flushes add (tollway/change_log.py) get sequence numbers in commit order."""
        await session.run_sync(change_log.bump_revision)

    async def current_revision(self) -> int:
        async with self.session() as session:
            statement = select(schema.ChangeRevision.value).where(schema.ChangeRevision.id == 1)
            result = await session.exec(statement)
            return int(result.one_or_none() or 0)

    @property
    def notify_channel(self) -> str:
        return f"{NOTIFY_CHANNEL}_{self.schema_name}" if self.schema_name else NOTIFY_CHANNEL

    def asyncpg_dsn(self) -> str:
        """Plain DSN for the dedicated LISTEN connection."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)


def backfill_cancellation_events(conn: Connection) -> int:
    """Subscriptions cancelled before every cancellation wrote an event get one, at the row's last
    update (the best record there is), once; billing then reads every cancellation time from events.
    Returns how many were written."""
    events = schema.SubscriptionEvent.__table__  # type: ignore[attr-defined]
    subscriptions = schema.Subscription.__table__  # type: ignore[attr-defined]
    cancelled = SubscriptionState.CANCELLED.value
    missing = (
        select_core(
            subscriptions.c.id,
            subscriptions.c.updated_at,
            literal(cancelled),
            literal(Actor.SYSTEM.value),
            literal(""),
            literal(cancelled),
            subscriptions.c.plan_id,
            subscriptions.c.plan_id,
            literal("cancelled before cancellations were recorded as events"),
        )
        .where(subscriptions.c.state == cancelled)
        .where(
            ~exists().where((events.c.subscription_id == subscriptions.c.id) & (events.c.kind == cancelled))
        )
    )
    columns = [
        "subscription_id",
        "at",
        "kind",
        "actor",
        "from_state",
        "to_state",
        "from_plan_id",
        "to_plan_id",
        "reason",
    ]
    result = conn.execute(insert(events).from_select(columns, missing))
    count = int(result.rowcount or 0)
    if count:
        log.info("recorded %d earlier cancellations as subscription events", count)
    return count


def add_missing_columns(conn: Connection) -> list[str]:
    """Additive schema upgrades: columns a newer Tollway declares that an existing database lacks are
    added with a default, so a data directory from an earlier version keeps working. Renames, drops
    and type changes are not attempted. Returns "table.column" for each column added."""
    inspector = inspect(conn)
    added: list[str] = []
    for table in SQLModel.metadata.sorted_tables:
        existing = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            column_type = column.type.compile(dialect=conn.dialect)
            default = "" if column.nullable else " DEFAULT " + _empty_value(column.type, conn.dialect.name)
            statement = f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {column_type}{default}'
            conn.execute(text(statement))
            added.append(f"{table.name}.{column.name}")
    if added:
        log.warning("database upgraded: added columns %s", ", ".join(added))
    return added


def _empty_value(column_type: TypeEngine[Any], dialect: str) -> str:
    """SQL literal for existing rows of a new NOT NULL column (the model's defaults are Python-side)."""
    if isinstance(column_type, Boolean):
        return "FALSE"
    if isinstance(column_type, Integer | Numeric | Float):
        return "0"
    if isinstance(column_type, JSON):
        return "'[]'"
    if isinstance(column_type, DateTime):
        # The upgrade time, as a constant (SQLite refuses non-constant defaults on ADD COLUMN).
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return f"'{now}'" if dialect == "sqlite" else f"'{now}+00:00'"
    return "''"


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets gateway replicas read while the admin server writes; foreign keys are off by default.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return on_connect
