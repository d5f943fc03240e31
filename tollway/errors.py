"""Domain errors and their mapping to gRPC status codes, shared by every admin servicer."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from tollway.refusal import StartupRefused as StartupRefused  # re-exported: one class, two homes

log = logging.getLogger(__name__)


class TollwayError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(TollwayError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(TollwayError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TollwayError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(TollwayError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(TollwayError):
    code = grpc.StatusCode.UNAVAILABLE


# SQLSTATE classes that say the database cannot serve now, not that the request is wrong: connection
# exceptions (08), insufficient resources (53, e.g. too many connections), operator intervention (57:
# a statement cancelled by statement_timeout, the server shutting down or still starting).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_STATEMENT_TIMEOUT_SQLSTATE = "57014"


def _sqlstate(exc: BaseException) -> str:
    """The PostgreSQL SQLSTATE of a driver error (wrapped by SQLAlchemy or not), "" for others."""
    for candidate in (exc, getattr(exc, "orig", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return ""


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | PoolTimeoutError) or _sqlstate(exc) == _STATEMENT_TIMEOUT_SQLSTATE


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | PoolTimeoutError | ConnectionError | TimeoutError | OSError):
        return True
    if _sqlstate(exc)[:2] in _UNAVAILABLE_SQLSTATE_CLASSES:
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status for an exception raised while serving an admin RPC."""
    if isinstance(exc, TollwayError):
        return exc.code, exc.message
    if isinstance(exc, IntegrityError):
        # Constraint races that slipped past validation (two writers at once).
        return grpc.StatusCode.ABORTED, "conflicting concurrent change; retry"
    if _is_timeout(exc):
        # A deadline passed: whether a commit in flight took effect cannot be known, so no claim.
        return (
            grpc.StatusCode.UNAVAILABLE,
            "database unavailable: it did not answer within its deadline; retry",
        )
    if _is_connection_error(exc):
        return grpc.StatusCode.UNAVAILABLE, "database unavailable; nothing was changed"
    return grpc.StatusCode.INTERNAL, "internal error"


T = TypeVar("T")


def grpc_errors(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turns domain and database errors of an async unary servicer method into gRPC statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await method(self, request, context)
        except Exception as exc:
            code, message = status_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method.__qualname__)
            await context.abort(code, message)
            raise  # unreachable: abort raises

    return wrapper


def map_grpc_errors(cls: type[T]) -> type[T]:
    """Class decorator: applies grpc_errors to every public async method (unary RPCs) of a servicer."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, grpc_errors(member))
    return cls
