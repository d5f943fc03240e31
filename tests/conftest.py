"""Shared fixtures. Store tests run twice: on an SQLite file and on the real PostgreSQL server
(127.0.0.1:5432, database `test`), each test in a schema of its own that is dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tollway.db import Database

POSTGRES_URL = os.environ.get("TOLLWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def open_database(backend: str, tmp_path: Path) -> Database:
    if backend == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'tollway.db'}")
    else:
        db = Database(POSTGRES_URL, schema_name=f"tw_test_{secrets.token_hex(6)}")
    await db.create_schema()
    return db


async def close_database(db: Database) -> None:
    if db.is_postgres and db.schema_name:
        async with db.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{db.schema_name}" CASCADE'))
    await db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, empty Tollway database on each backend."""
    db = await open_database(request.param, tmp_path)
    try:
        yield db
    finally:
        await close_database(db)
