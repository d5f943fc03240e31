"""Deadlines on database work, without a database server: driver errors that mean "the database cannot
serve now" map to UNAVAILABLE, an admin RPC never outlives its budget (nor its caller's deadline), and
the settings reach the engine (SQLite's busy timeout). The behaviour against a real PostgreSQL that is
stopped or frozen: tests/e2e/test_postgres_faults.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.support import grpc_server
from tollway.db import Database
from tollway.deadlines import AdminDeadlineInterceptor, rpc_budget
from tollway.errors import status_for
from tollway.settings import Settings


class DriverError(Exception):
    """What asyncpg's errors carry: the PostgreSQL SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def wrapped(sqlstate: str) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, DriverError(sqlstate))


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (
            wrapped("57014"),
            grpc.StatusCode.UNAVAILABLE,
            "did not answer within its deadline",
        ),  # statement_timeout
        (
            TimeoutError(),
            grpc.StatusCode.UNAVAILABLE,
            "did not answer within its deadline",
        ),  # driver deadline
        (wrapped("57P01"), grpc.StatusCode.UNAVAILABLE, "nothing was changed"),  # server shutting down
        (wrapped("57P03"), grpc.StatusCode.UNAVAILABLE, "nothing was changed"),  # server starting up
        (wrapped("08006"), grpc.StatusCode.UNAVAILABLE, "nothing was changed"),  # connection failure
        (wrapped("53300"), grpc.StatusCode.UNAVAILABLE, "nothing was changed"),  # too many connections
        (DriverError("08001"), grpc.StatusCode.UNAVAILABLE, "nothing was changed"),  # not wrapped
        (ConnectionRefusedError(), grpc.StatusCode.UNAVAILABLE, "nothing was changed"),
        (IntegrityError("INSERT", {}, DriverError("23505")), grpc.StatusCode.ABORTED, "retry"),
        (wrapped("42P01"), grpc.StatusCode.INTERNAL, "internal error"),  # a bug, not an outage
    ],
)
def test_database_errors_map_to_statuses(error: BaseException, code: grpc.StatusCode, says: str) -> None:
    status, message = status_for(error)
    assert status == code
    assert says in message
    assert "database unavailable" in message or code != grpc.StatusCode.UNAVAILABLE


@given(
    limit=st.floats(min_value=0.001, max_value=3600),
    remaining=st.none() | st.floats(min_value=0, max_value=3600),
)
def test_an_rpc_budget_ends_before_its_callers_deadline(limit: float, remaining: float | None) -> None:
    budget = rpc_budget(limit, remaining)
    assert 0 <= budget <= limit
    if remaining is None:
        assert budget == limit
    else:
        assert budget <= remaining
        if remaining >= 0.001:
            assert budget < remaining  # the answer has time to reach the caller


SERVICE = "tollway.test.Deadlines"


async def _slow(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    await asyncio.sleep(60)
    return b"late"


async def _fast(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return b"fast:" + request


async def _own_timeout(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    # A method whose own call timed out (the driver's deadline): its own handling answers.
    try:
        raise TimeoutError
    except TimeoutError as exc:
        code, message = status_for(exc)
        await context.abort(code, message)
    return b""


def _register(server: grpc.aio.Server) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(function)
        for name, function in (("Slow", _slow), ("Fast", _fast), ("OwnTimeout", _own_timeout))
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


async def test_admin_rpcs_end_unavailable_within_their_deadline() -> None:
    interceptor = AdminDeadlineInterceptor(0.3)
    async with grpc_server(_register, interceptors=(interceptor,)) as channel:
        slow = channel.unary_unary(f"/{SERVICE}/Slow")
        # No deadline from the caller: the server's own.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await slow(b"", timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "did not complete within 0.3 s" in (refused.value.details() or "")
        # A caller's deadline nearer than the server's: answered before it, still with the reason.
        interceptor.seconds = 30
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await slow(b"", timeout=1.0)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database unavailable" in (refused.value.details() or "")
        assert await channel.unary_unary(f"/{SERVICE}/Fast")(b"x", timeout=5) == b"fast:x"
        with pytest.raises(grpc.aio.AioRpcError) as own:
            await channel.unary_unary(f"/{SERVICE}/OwnTimeout")(b"", timeout=5)
        assert own.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "within its deadline" in (own.value.details() or "")


def test_admin_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AdminDeadlineInterceptor(0)


async def test_sqlite_waits_for_the_write_lock_as_long_as_the_database_deadline(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'deadline.db'}", timeout_ms=1234)
    try:
        async with db.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 1234
    finally:
        await db.dispose()


def test_database_deadlines_are_settings(tmp_path: Path) -> None:
    settings = Settings.read_env(
        {
            "TOLLWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'settings.db'}",
            "TOLLWAY_DATABASE_TIMEOUT_MS": "700",
            "TOLLWAY_DATABASE_CONNECT_TIMEOUT_MS": "300",
            "TOLLWAY_ADMIN_TIMEOUT_MS": "9000",
        }
    )
    assert (settings.database.timeout_ms, settings.database.connect_timeout_ms) == (700, 300)
    assert settings.admin_timeout_ms == 9000
    db = Database.from_settings(settings.database)
    assert (db.timeout, db.connect_timeout) == (0.7, 0.3)
    for name in (
        "TOLLWAY_DATABASE_TIMEOUT_MS",
        "TOLLWAY_DATABASE_CONNECT_TIMEOUT_MS",
        "TOLLWAY_ADMIN_TIMEOUT_MS",
    ):
        with pytest.raises(ValueError):
            Settings.read_env({name: "0"})
