"""The scale benchmark's database: a private PostgreSQL database, bulk-seeded with N applications, N
subscriptions and N API keys (bench/scale.py).

Only public surfaces: Tollway creates its own schema (`Database.create_schema`, what `tollway serve`
runs at start), the catalog rows go in through the ORM classes of tollway/schema.py, and the bulk rows
go in by COPY with the columns and defaults those same classes declare, so a column added later with a
default needs no change here. Key hashes are the real keyed hashes (keymgr.keys), so Check verifies the
seeded keys exactly as it verifies issued ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from keymgr.keys import key_hash, new_key
from tollway import schema
from tollway.db import Database

API_ID = "api_scale"
CONTEXT_PATH = "/scale"
PLAN_A = "plan_scale_a"
PLAN_B = "plan_scale_b"
# Rows per COPY call: large enough to amortize the round trip, small enough to bound the bench's memory.
COPY_BATCH = 50_000


@dataclass
class Seeded:
    """What the benchmark needs to know about the seeded rows: full keys for the first `reserved`
    indices (index i is application app_i, subscription sub_i and one key of app_i)."""

    count: int
    full_keys: list[str] = field(default_factory=list)
    key_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @staticmethod
    def application_id(index: int) -> str:
        return f"app_{index:08d}"

    @staticmethod
    def subscription_id(index: int) -> str:
        return f"sub_{index:08d}"


def private_url(server_url: str, name: str) -> str:
    """`server_url` (any database on the server) with its database replaced by `name`."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _dsn(url: str) -> str:
    """A plain libpq-style DSN for asyncpg, whatever driver the SQLAlchemy URL names."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(_dsn(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(_dsn(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _seed_catalog(url: str) -> None:
    """One published API offering two plans (the second for plan changes), through the ORM."""
    db = Database(url)
    try:
        await db.create_schema()
        async with db.session() as session:
            await db.record_change(session)
            session.add(schema.Plan(id=PLAN_A, name="scale-a"))
            session.add(schema.Plan(id=PLAN_B, name="scale-b"))
            session.add(schema.Api(id=API_ID, name="scale", context_path=CONTEXT_PATH, published=True))
            await session.flush()
            session.add(schema.ApiPlan(api_id=API_ID, plan_id=PLAN_A, position=0))
            session.add(schema.ApiPlan(api_id=API_ID, plan_id=PLAN_B, position=1))
            await session.commit()
    finally:
        await db.dispose()


class _Rows:
    """COPY rows for one table: every column the schema declares, filled from `values` or else from
    the model's own default (one template instance, so defaults such as timestamps are computed once)."""

    def __init__(self, model: type[SQLModel], **required: Any) -> None:
        table = model.__table__
        self.table: str = table.name
        self.columns: list[str] = [column.name for column in table.columns]
        self.template: dict[str, Any] = model(**required).model_dump()

    def row(self, values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(values[name] if name in values else self.template.get(name) for name in self.columns)


def _batches(count: int) -> Iterator[range]:
    for start in range(0, count, COPY_BATCH):
        yield range(start, min(start + COPY_BATCH, count))


async def seed(url: str, count: int, secret: str, reserved: int) -> Seeded:
    """Creates the schema and catalog, then COPYs `count` applications, subscriptions and keys."""
    started = time.perf_counter()
    await _seed_catalog(url)
    seeded = Seeded(count=count)
    applications = _Rows(schema.Application, id="app", name="app")
    subscriptions = _Rows(schema.Subscription, id="sub", application_id="app", api_id=API_ID, plan_id=PLAN_A)
    keys = _Rows(schema.ApiKey, key_id="k", application_id="app", key_hash="h")
    connection = await asyncpg.connect(_dsn(url))
    try:
        for indices in _batches(count):
            app_ids = [Seeded.application_id(i) for i in indices]
            await connection.copy_records_to_table(
                applications.table,
                records=[applications.row({"id": a, "name": a}) for a in app_ids],
                columns=applications.columns,
            )
            await connection.copy_records_to_table(
                subscriptions.table,
                records=[
                    subscriptions.row(
                        {
                            "id": Seeded.subscription_id(i),
                            "application_id": a,
                            "api_id": API_ID,
                            "plan_id": PLAN_A,
                        }
                    )
                    for i, a in zip(indices, app_ids, strict=True)
                ],
                columns=subscriptions.columns,
            )
            key_rows = []
            for i, a in zip(indices, app_ids, strict=True):
                key = new_key()
                if i < reserved:
                    seeded.full_keys.append(key.full_key)
                    seeded.key_ids.append(key.key_id)
                key_rows.append(
                    keys.row(
                        {
                            "key_id": key.key_id,
                            "application_id": a,
                            "key_hash": key_hash(secret, key.full_key),
                        }
                    )
                )
            await connection.copy_records_to_table(keys.table, records=key_rows, columns=keys.columns)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    seeded.seconds = time.perf_counter() - started
    return seeded
