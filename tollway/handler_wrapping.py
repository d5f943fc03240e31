"""Wrapping a server's method handlers once, when its services register, instead of per call.

Why: a grpc.aio server interceptor runs on every call (its `intercept_service` coroutine, awaited
through the server's interceptor chain, even when the handler it returns is cached). On the
Envoy-facing port every Check, ShouldRateLimit and access-log stream paid that: a few µs of server CPU
per call (of about 180 for a bare unary call). What those interceptors do (refuse a caller that is not
Envoy, refuse an undecodable message) depends only on the method and its handler, so
`WrappingRegistrar` applies it to each handler as it is registered, and the server runs no chain.

`WrappingRegistrar` stands in for the server while services register (the generated
`add_*_to_server` functions, health, reflection): every handler they add, registered or generic, is
wrapped by each `HandlerWrapper` in order, the first outermost, as the same interceptors in that order
would have wrapped it. Handlers found through a generic handler are wrapped on first use and cached
(tollway.request_guard.WrappedHandlers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import grpc

from tollway.request_guard import Handler, WrappedHandlers

GenericHandler: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"


class HandlerWrapper(Protocol):
    def wrap(self, method: str, handler: Handler) -> Handler:
        """`handler` for the full method name `method`, with this wrapper's checks in front."""
        ...


# Generic only in the type stubs: subscripted here it would fail at import.
class _WrappedGeneric(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, inner: GenericHandler, wrapped: WrappedHandlers) -> None:
        self._inner = inner
        self._wrapped = wrapped

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None  # another generic handler, or UNIMPLEMENTED
        return self._wrapped.get(handler_call_details.method or "?", handler)


def _chain(wrappers: tuple[HandlerWrapper, ...]) -> Callable[[str, Handler], Handler]:
    def wrap(method: str, handler: Handler) -> Handler:
        for wrapper in reversed(wrappers):  # the innermost first: the first wrapper runs first
            handler = wrapper.wrap(method, handler)
        return handler

    return wrap


class WrappingRegistrar:
    """What services register on in place of `server`: their handlers reach it wrapped."""

    def __init__(self, server: grpc.aio.Server, wrappers: Sequence[HandlerWrapper]) -> None:
        self.server = server
        self.wrap = _chain(tuple(wrappers))
        # Holds `wrap`, never this registrar: no reference cycle keeps the server alive until the
        # collector runs (grpc logs from a server object freed late, at whatever runs then).
        self._generic = WrappedHandlers(self.wrap)

    def add_generic_rpc_handlers(self, handlers: Sequence[GenericHandler]) -> None:
        self.server.add_generic_rpc_handlers(tuple(_WrappedGeneric(h, self._generic) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        self.server.add_registered_method_handlers(  # type: ignore[attr-defined]  # newer than the stubs
            service, {name: self.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)  # ports, start, stop: the server's own


def add_service(server: Any, service: str, handlers: Mapping[str, Handler]) -> None:
    """Registers hand-built method handlers as generated code registers its own: as registered methods,
    which the server finds by name in a table per call (a generic handler is instead asked, in Python,
    one after another until one knows the method), and as a generic handler too."""
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, dict(handlers)),))
    server.add_registered_method_handlers(service, dict(handlers))
