"""Shared fixtures. Store tests run twice: on an SQLite file and on the real PostgreSQL server
(TOLLWAY_TEST_POSTGRES_URL, default 127.0.0.1:5432, database `test`; `make test` starts a private one
when none answers: scripts/test-services), each test in a schema of its own that is dropped afterwards.

Tiers: a test that reaches a server (PostgreSQL, Redis, Envoy, a whole stack, buf from npm) is marked
`integration` here, from the fixtures and parameters it uses and the module it lives in, so test files
need no marker of their own. `make check` runs the rest (`-m "not integration"`): it must pass with
no server running. A test that reaches a server in its own body is listed below or marked
`@pytest.mark.integration`."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.redis_cluster import RedisClusterNodes
from tollway.db import Database

# Fixtures that start or reach a server: a whole stack, real Envoy, a redis-server, subprocess replicas
# on the shared Redis, a Redis Cluster, a PostgreSQL schema.
SERVER_FIXTURES = frozenset(
    {
        "stack",
        "pg_stack",
        "gateway",
        "traffic",
        "redis_server",
        "redis_replicas",
        "postgres_schema",
        "portal_stack",
        "browser",
        "redis_cluster",
    }
)
# Parameter values that select a real server (e.g. the `database` fixture's PostgreSQL case).
SERVER_PARAMS = frozenset({"postgres", "redis", "cluster"})
# Markers whose tests need a server.
SERVER_MARKERS = ("integration", "e2e", "postgres")
# Modules that reach a server in their tests' bodies: buf (npm), the Envoy binary, the shared Redis.
SERVER_MODULES = frozenset(
    {
        "tests/test_protos_lint.py",
        "tests/test_envoy_binary.py",
        "tests/xds/test_xds_launcher.py",
        "tests/throttle/test_metrics.py",
        "tests/throttle/test_store_equivalence.py",
    }
)
# Single tests doing so in a module that is otherwise server-free.
SERVER_TESTS = frozenset(
    {
        "tests/throttle/test_counters.py::test_redis_counters_expire_after_their_window",
        "tests/usage/test_usage_store.py::test_two_writers_on_one_postgres_give_the_same_totals_as_one",
    }
)


def needs_server(item: pytest.Item) -> bool:
    module = item.nodeid.split("::", 1)[0]
    if module.startswith("tests/e2e/") or module in SERVER_MODULES:
        return True
    if item.nodeid.split("[", 1)[0] in SERVER_TESTS:
        return True
    if any(item.get_closest_marker(name) for name in SERVER_MARKERS):
        return True
    if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(
        isinstance(value, str) and value in SERVER_PARAMS for value in callspec.params.values()
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_server(item):
            item.add_marker(pytest.mark.integration)


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
        # Another engine's backend on the same schema may still be winding down when a test ends; the
        # DROP can then lose a deadlock to it (seen once in CI): try again, it is gone by then.
        for attempt in range(3):
            try:
                async with db.engine.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{db.schema_name}" CASCADE'))
                break
            except DBAPIError as exc:
                if "deadlock" not in str(exc) or attempt == 2:
                    raise
                await asyncio.sleep(0.5)
    await db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, empty Tollway database on each backend."""
    db = await open_database(request.param, tmp_path)
    try:
        yield db
    finally:
        await close_database(db)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A Redis Cluster of three masters and three replicas on free loopback ports, started once per
    test session (about 3 s) and torn down after it. Tests keep apart by their own ids; a test that
    kills a node starts a cluster of its own."""
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
