"""One gate for every request message, in front of every servicer: hostile input gets a clean
INVALID_ARGUMENT naming the field, and never a traceback in the log.

Measured before it existed: a NUL character in any string that reached PostgreSQL made 34 admin
methods answer INTERNAL, out-of-range timestamps did the same in billing, and each undecodable message
to the Envoy-facing port wrote a full traceback (523 tracebacks, 603 KB of log from about 300 calls).

`RequestGuardInterceptor` wraps the handler the server found for a call:
- its request deserializer, so a message that does not decode is answered INVALID_ARGUMENT and
  reported by a `RateLimitedLog` (once per interval per method, with a count) instead of grpc's
  traceback per call;
- on the admin server, its behavior: each decoded request is walked (`request_problem`) before the
  servicer sees it, so nothing is written for a request carrying control characters, oversized strings
  or out-of-range timestamps.
The Envoy-facing server checks decoding only: what Envoy relays there is data, judged by each servicer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tollway.protoconv import timestamp_problem

log = logging.getLogger(__name__)

# Fields holding prose an operator types (a description, why a key was revoked): line breaks and tabs
# are theirs to use. Every other string is an identifier, a name, a URL or an amount: one line.
# A postal address (billing accounts) has lines too.
FREE_TEXT_FIELDS = frozenset({"description", "note", "reason", "void_reason", "state_reason", "address"})
_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r")
# Backstops above every domain limit (a name 100, a description 4,000, a URL 2,048 characters): the
# domain's own message names the exact limit; these only keep a giant string away from the stores.
MAX_STRING_CHARS = 4_096
MAX_TEXT_CHARS = 16_384
# A walk's bound: grpc already caps a message at 4 MB, this caps the work spent looking at one.
MAX_FIELD_VALUES = 20_000
MAX_DEPTH = 16


class _TooLarge(Exception):
    pass


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def string_problem(value: str, field: str, free_text: bool) -> str | None:
    """Why `value` may not be stored in `field`, None when it may."""
    limit = MAX_TEXT_CHARS if free_text else MAX_STRING_CHARS
    if len(value) > limit:
        return f"{field} must be at most {limit} characters, got {len(value)}"
    if value.isprintable():  # the common case, in C
        return None
    allowed = _TEXT_CONTROLS_ALLOWED if free_text else frozenset()
    for position, char in enumerate(value):
        if _is_control(char) and char not in allowed:
            return f"{field} must not contain control characters (U+{ord(char):04X} at position {position})"
    return None


def request_problem(message: Message) -> str | None:
    """The first reason `message` may not be served (a string with control characters or too long, a
    timestamp out of range, a message too large to inspect), None when it may."""
    budget = [MAX_FIELD_VALUES]
    try:
        return _message_problem(message, "", 0, budget)
    except _TooLarge:
        return f"request has more than {MAX_FIELD_VALUES} field values or is nested deeper than {MAX_DEPTH}"


def _message_problem(message: Message, prefix: str, depth: int, budget: list[int]) -> str | None:
    if depth > MAX_DEPTH:
        raise _TooLarge
    if isinstance(message, Timestamp):
        return timestamp_problem(message, prefix.rstrip(".") or "timestamp")
    for descriptor, value in message.ListFields():
        name = f"{prefix}{descriptor.name}"
        # Repeated fields iterate; a map is a repeated field of entries (a key and a value each).
        repeated = descriptor.is_repeated
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            values: list[Any] = [_MapItem(key, value[key]) for key in value]
        else:
            values = list(value) if repeated else [value]
        budget[0] -= len(values)
        if budget[0] < 0:
            raise _TooLarge
        for index, item in enumerate(values):
            field = f"{name}[{index}]" if repeated else name
            problem = _value_problem(descriptor, item, field, depth, budget)
            if problem is not None:
                return problem
    return None


class _MapItem:
    __slots__ = ("key", "value")

    def __init__(self, key: Any, value: Any) -> None:
        self.key, self.value = key, value


def _value_problem(
    descriptor: FieldDescriptor, item: Any, field: str, depth: int, budget: list[int]
) -> str | None:
    if isinstance(item, _MapItem):
        if isinstance(item.key, str):
            problem = string_problem(item.key, f"{field} key", free_text=False)
            if problem is not None:
                return problem
        if isinstance(item.value, Message):
            return _message_problem(item.value, f"{field}[{item.key!r}].", depth + 1, budget)
        if isinstance(item.value, str):
            return string_problem(item.value, f"{field}[{item.key!r}]", free_text=False)
        return None
    if descriptor.type == FieldDescriptor.TYPE_STRING:
        return string_problem(item, field, free_text=descriptor.name in FREE_TEXT_FIELDS)
    if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        if isinstance(item, Timestamp):
            return timestamp_problem(item, field)
        return _message_problem(item, f"{field}.", depth + 1, budget)
    return None


class RateLimitedLog:
    """Reports a recurring event at most once per `interval` seconds per kind, with how many times it
    happened since the last report: hostile peers cannot fill the log, an operator still sees them."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, max_kinds: int = 256) -> None:
        self._log = logger
        self._interval = interval
        self._max_kinds = max_kinds
        # kind -> (monotonic time of the last report, occurrences since it)
        self._state: dict[str, tuple[float, int]] = {}

    def event(self, level: int, kind: str, message: str, *args: object, exc_info: bool = False) -> None:
        """Logs `message` now unless `kind` was reported within the interval (then it is counted);
        `exc_info` adds the current exception's traceback to a report."""
        now = time.monotonic()
        last, suppressed = self._state.get(kind, (-float("inf"), 0))
        if now - last < self._interval:
            self._state[kind] = (last, suppressed + 1)
            return
        if kind not in self._state and len(self._state) >= self._max_kinds:
            self._state.clear()  # bounded by kinds too: a peer inventing kinds only resets the counts
        self._state[kind] = (now, 0)
        if suppressed:
            message += " (%d more since the last report)"
            args = (*args, suppressed)
        self._log.log(level, message, *args, exc_info=exc_info or None)


class _Undecodable:
    """What the guarded deserializer hands on in place of a message that did not decode."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


_UNDECODABLE = "request message could not be decoded"
# Methods a WrappedHandlers remembers: a server has a few dozen; the bound only caps the unexpected.
_MAX_WRAPPED_METHODS = 1_024

# A string: grpc.RpcMethodHandler is generic only in the type stubs.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class WrappedHandlers:
    """An interceptor's wrapped handler per method, built once: the handler a server finds for a
    method is the same object call after call, so wrapping it again per call (closures and a new
    handler each time, on the Envoy-facing hot path) is work for nothing."""

    __slots__ = ("_wrap", "_wrapped")

    def __init__(self, wrap: Callable[[str, Handler], Handler]) -> None:
        self._wrap = wrap
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def get(self, method: str, handler: Handler) -> Handler:
        """`wrap(method, handler)`, the cached one while the server hands out the same handler."""
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if len(self._wrapped) >= _MAX_WRAPPED_METHODS:
            self._wrapped.clear()
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


# Generic only in the type stubs: subscripted here it would fail at import.
class RequestGuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Answers undecodable messages INVALID_ARGUMENT (logged once per interval per method, no traceback)
    and, with `validate`, every request `request_problem` finds fault with, before the servicer runs."""

    def __init__(self, *, validate: bool, log_interval: float = 60.0) -> None:
        self.validate = validate
        self.reports = RateLimitedLog(log, log_interval)
        self._handlers = WrappedHandlers(self.wrap)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # type: ignore[return-value]  # None: the server answers UNIMPLEMENTED
        return self._handlers.get(handler_call_details.method or "?", handler)

    def wrap(self, method: str, handler: Handler) -> Handler:
        """The guard applied to a handler once (at registration, or cached by the interceptor)."""
        if handler.request_deserializer is None:
            return handler
        return _guarded(handler, self._deserializer(handler.request_deserializer, method), self._check)

    def _deserializer(self, decode: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
        def deserialize(raw: bytes) -> Any:
            try:
                return decode(raw)
            except Exception as exc:
                self.reports.event(
                    logging.WARNING,
                    method,
                    "refused undecodable %s message on %s (%d bytes)",
                    type(exc).__name__,
                    method,
                    len(raw),
                )
                return _Undecodable(_UNDECODABLE)

        return deserialize

    def _check(self, request: Any) -> str | None:
        if isinstance(request, _Undecodable):
            return request.error
        if self.validate and isinstance(request, Message):
            return request_problem(request)
        return None


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any],
    deserializer: Callable[[bytes], Any],
    check: Callable[[Any], str | None],
) -> grpc.RpcMethodHandler[Any, Any]:
    serializer = handler.response_serializer

    async def refuse(context: grpc.aio.ServicerContext[Any, Any], problem: str) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    async def checked_stream(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async for request in requests:
            problem = check(request)
            if problem is not None:
                await refuse(context, problem)
            yield request

    if handler.unary_unary is not None:
        unary_unary: Callable[..., Any] = handler.unary_unary

        async def guarded_unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            problem = check(request)
            if problem is not None:
                await refuse(context, problem)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(guarded_unary_unary, deserializer, serializer)
    if handler.unary_stream is not None:
        unary_stream: Callable[..., Any] = handler.unary_stream

        async def guarded_unary_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            problem = check(request)
            if problem is not None:
                await refuse(context, problem)
            result: Any = unary_stream(request, context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    await context.write(response)
                return None
            return await result

        return grpc.unary_stream_rpc_method_handler(guarded_unary_stream, deserializer, serializer)
    if handler.stream_unary is not None:
        stream_unary: Callable[..., Any] = handler.stream_unary

        async def guarded_stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await stream_unary(checked_stream(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(guarded_stream_unary, deserializer, serializer)
    stream_stream: Callable[..., Any] | None = handler.stream_stream
    assert stream_stream is not None

    async def guarded_stream_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        result: Any = stream_stream(checked_stream(requests, context), context)
        if hasattr(result, "__aiter__"):
            async for response in result:
                await context.write(response)
            return None
        return await result

    return grpc.stream_stream_rpc_method_handler(guarded_stream_stream, deserializer, serializer)
