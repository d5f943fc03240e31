"""Admin RPCs by method and status code: a grpc.aio server interceptor feeding the process's registry.

tollway_admin_rpcs_total{method,code}    calls answered, by full method name and gRPC status code
tollway_admin_rpc_seconds{method}        their latency (histogram)

Placed first on the admin server, so refusals by the interceptors after it (a missing token, a bad
input, a deadline) are counted with their codes. Labels stay bounded whatever a caller sends: a method
is named only when it belongs to a service registered on the server (looked up in the protobuf
descriptor pool), anything else is "other"; codes are the 17 gRPC status codes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import CollectorRegistry, Counter, Histogram

from tollway.metrics import LATENCY_BUCKETS

OTHER = "other"
_CODES = {code.value[0]: code.name for code in grpc.StatusCode}


def _code_name(code: Any) -> str:
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    return _CODES.get(code, "UNKNOWN")


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, registry: CollectorRegistry, services: Collection[str], prefix: str = "admin") -> None:
        # The server's service list, read when a method is first seen (filled before the server starts).
        self._services = services
        self._methods: dict[str, str] = {}
        self.calls = Counter(
            f"tollway_{prefix}_rpcs",
            f"{prefix.capitalize()} RPCs by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            f"tollway_{prefix}_rpc_seconds",
            f"{prefix.capitalize()} RPC latency by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def method_label(self, method: str) -> str:
        label = self._methods.get(method)
        if label is None:
            label = OTHER
            service, _, name = method.lstrip("/").partition("/")
            if service in self._services:
                try:
                    found = descriptor_pool.Default().FindServiceByName(service)
                except KeyError:
                    found = None
                if found is not None and name in found.methods_by_name:
                    label = method
                    self._methods[method] = label  # bounded: registered methods only
        return label

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = self.method_label(handler_call_details.method or "")
        if handler is None:
            self.calls.labels(method, "UNIMPLEMENTED").inc()
            return handler  # type: ignore[return-value]  # the server answers UNIMPLEMENTED
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler

    def _done(self, method: str, code: Any, started: float) -> None:
        self.calls.labels(method, _code_name(code)).inc()
        self.seconds.labels(method).observe(time.perf_counter() - started)

    def _unary(self, call: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code: Any = grpc.StatusCode.UNKNOWN
            try:
                response = await call(request, context)
                code = context.code()
                return response
            except grpc.aio.AbortError:
                code = context.code()
                raise
            finally:
                self._done(method, code, started)

        return counted

    def _stream(self, call: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code: Any = grpc.StatusCode.UNKNOWN
            try:
                async for item in call(request, context):
                    yield item
                code = context.code()
            except grpc.aio.AbortError:
                code = context.code()
                raise
            finally:
                self._done(method, code, started)

        return counted
