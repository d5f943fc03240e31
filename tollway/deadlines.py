"""A deadline on every admin RPC, so a database that stops answering yields UNAVAILABLE with a reason,
never a call that hangs until the caller gives up without one.

Each database call already has its own deadline (tollway/db.py: statement, pool wait, connect; SQLite's
busy timeout), and the admin servicers map a call that passed it to UNAVAILABLE (tollway/errors.py).
An RPC makes several calls, though, so this is the whole RPC's bound: `AdminDeadlineInterceptor` runs
each unary admin method under an asyncio deadline of `seconds`, or just before the caller's own
deadline when that is nearer, so the caller reads why. (The CLI waits 10 s. With PostgreSQL frozen, an
admin write at the default settings answers UNAVAILABLE after about 7.5 s: the pool's liveness ping
runs into the statement deadline, 5 s plus the driver's 0.5 s margin, then SQLAlchemy gives the dead
connection 2 s to close.) Server-streaming methods (a watch) are long by design and are not bounded
here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from tollway.logs import REQUEST_ID
from tollway.request_guard import RateLimitedLog

log = logging.getLogger(__name__)

# The share of the caller's remaining time the server may use, so its answer arrives before the
# caller's deadline: a tenth of it, at most a second.
_CALLER_MARGIN_SHARE = 0.1
_CALLER_MARGIN_MAX_SECONDS = 1.0


def rpc_budget(limit: float, caller_remaining: float | None) -> float:
    """Seconds an RPC may run: `limit`, or less so the answer beats the caller's own deadline."""
    if caller_remaining is None:
        return limit
    margin = min(_CALLER_MARGIN_MAX_SECONDS, caller_remaining * _CALLER_MARGIN_SHARE)
    return max(0.0, min(limit, caller_remaining - margin))


# Generic only in the type stubs: subscripted here it would fail at import.
_REQUEST_ID_CHARS = 128


def caller_request_id(metadata: Any) -> str:
    """`x-request-id` from a call's metadata when it is short printable ASCII, else empty."""
    for key, value in metadata or ():
        printable = isinstance(value, str) and all("!" <= char <= "~" for char in value)
        if key == "x-request-id" and printable and len(value) <= _REQUEST_ID_CHARS:
            return str(value)
    return ""


class AdminDeadlineInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Answers a unary RPC that has not finished within its budget (`rpc_budget`) UNAVAILABLE."""

    def __init__(self, seconds: float, log_interval: float = 60.0) -> None:
        if seconds <= 0:
            raise ValueError("the admin deadline must be positive")
        self.seconds = seconds
        self.reports = RateLimitedLog(log, log_interval)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # type: ignore[return-value]  # None: the server answers UNIMPLEMENTED
        method = handler_call_details.method or "?"
        return grpc.unary_unary_rpc_method_handler(
            self._bounded(handler.unary_unary, method),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _bounded(self, call: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def bounded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            # The caller's request id, if it sent one, on every log line of this call (tollway/logs.py).
            REQUEST_ID.set(caller_request_id(context.invocation_metadata()))
            budget = rpc_budget(self.seconds, context.time_remaining())
            deadline = asyncio.timeout(budget)
            try:
                async with deadline:
                    return await call(request, context)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the method's own timeout, not this deadline: its handling stands
            self.reports.event(
                logging.WARNING, method, "admin RPC %s did not complete within %.1f s", method, budget
            )
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"database unavailable: the call did not complete within {budget:.1f} s; retry",
            )

        return bounded
