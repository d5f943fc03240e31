"""Helpers for the store tests: a controllable clock, a commit counter, catalog rows, table dumps.

A plain module rather than a conftest.py, so nothing leaks into the other keymgr tests in this folder."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import SQLModel, select

from keymgr.store import StoreRepository
from tollway import schema
from tollway.db import Database

KEY_HASH_SECRET = "test-key-hash-secret"
DEFAULT_GRACE = timedelta(hours=24)


class FakeClock:
    """A clock tests move by hand, so expiry and grace periods need no sleeping."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **amount: float) -> None:
        self.current += timedelta(**amount)


class CommitCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


class CatalogRows:
    """Inserts catalog rows directly: the catalog store is another component."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def plan(self, name: str, approval_required: bool = False) -> schema.Plan:
        plan = schema.Plan(id=schema.new_id("plan"), name=name, approval_required=approval_required)
        await self._add(plan)
        return plan

    async def api(
        self,
        name: str,
        plans: Sequence[schema.Plan] = (),
        published: bool = True,
        version: str = "v1",
    ) -> schema.Api:
        api = schema.Api(
            id=schema.new_id("api"),
            name=name,
            version=version,
            context_path=f"/{name}/{version}/{secrets.token_hex(4)}",
            upstream_urls=["http://127.0.0.1:9"],
            published=published,
        )
        links = [schema.ApiPlan(api_id=api.id, plan_id=plan.id, position=i) for i, plan in enumerate(plans)]
        await self._add(api, *links)
        return api

    async def _add(self, *rows: SQLModel) -> None:
        async with self._db.session() as session:
            for row in rows:
                session.add(row)
                # Parents before children: the foreign keys are enforced on both backends.
                await session.flush()
            await session.commit()


Dump = Callable[[], Awaitable[dict[str, list[tuple[Any, ...]]]]]
START = datetime(2031, 3, 14, 12, 0, tzinfo=UTC)


def new_store(db: Database, commits: CommitCounter, clock: FakeClock) -> StoreRepository:
    return StoreRepository(db, commits, KEY_HASH_SECRET, DEFAULT_GRACE, clock=clock)


async def dump_tables(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (the change revision included), to prove a write changed nothing."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with db.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await session.exec(select(*table.columns))).all()
            tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return tables
