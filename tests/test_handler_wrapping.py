"""Handlers wrapped once at registration (tollway/handler_wrapping.py): on a real grpc.aio server, a
wrapper applies to handlers registered by generated code and through generic handlers alike, in the
order interceptors would apply, and the server has no interceptor chain."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from tollway.auth import BearerTokenInterceptor, bearer
from tollway.handler_wrapping import WrappingRegistrar
from tollway.request_guard import Handler, RequestGuardInterceptor


class Tagging:
    """Refuses calls to `method` with its tag; records the order wrappers ran in."""

    def __init__(self, tag: str, refused: str, seen: list[str]) -> None:
        self.tag, self.refused, self.seen = tag, refused, seen

    def wrap(self, method: str, handler: Handler) -> Handler:
        behavior = handler.unary_unary
        if behavior is None:
            return handler  # Watch (streaming): not called here

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self.seen.append(self.tag)
            if method == self.refused:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, self.tag)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, handler.request_deserializer, handler.response_serializer
        )


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def test_registered_and_generic_handlers_are_wrapped_in_interceptor_order() -> None:
    seen: list[str] = []
    server = grpc.aio.server()
    registrar: Any = WrappingRegistrar(
        server, (Tagging("outer", "/test.Echo/Refused", seen), Tagging("inner", "", seen))
    )
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, registrar)  # registered method handlers
    echo = grpc.unary_unary_rpc_method_handler(_echo)
    registrar.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Echo", {"Echo": echo, "Refused": echo}),)
    )
    port = registrar.add_insecure_port("127.0.0.1:0")
    await registrar.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            checked = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
            assert seen == ["outer", "inner"]
            for _ in range(2):  # the generic path's wrapped handler is cached, and still wrapped
                assert await channel.unary_unary("/test.Echo/Echo")(b"hi") == b"hi"
            assert seen == ["outer", "inner"] * 3
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary("/test.Echo/Refused")(b"hi")
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await channel.unary_unary("/test.Echo/Missing")(b"hi")
            assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(None)


async def test_token_and_guard_wrappers_refuse_before_the_servicer_runs() -> None:
    calls: list[bytes] = []

    async def servicer(request: Any, context: Any) -> health_pb2.HealthCheckResponse:
        calls.append(request.SerializeToString())
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    server = grpc.aio.server()
    registrar: Any = WrappingRegistrar(
        server,
        (BearerTokenInterceptor("s3cret-token-0123456789", "Envoy"), RequestGuardInterceptor(validate=False)),
    )
    handler = grpc.unary_unary_rpc_method_handler(
        servicer, health_pb2.HealthCheckRequest.FromString, health_pb2.HealthCheckResponse.SerializeToString
    )
    registrar.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Data", {"Get": handler}),))
    port = registrar.add_insecure_port("127.0.0.1:0")
    await registrar.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Data/Get")
            with pytest.raises(grpc.aio.AioRpcError) as no_token:
                await call(b"")
            assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as wrong:
                await call(b"", metadata=(("authorization", bearer("wrong-token-0123456789")),))
            assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
            token = (("authorization", bearer("s3cret-token-0123456789")),)
            with pytest.raises(grpc.aio.AioRpcError) as garbled:
                await call(b"\xff\xff\xff", metadata=token)
            assert garbled.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert calls == []
            assert await call(b"", metadata=token)
            assert len(calls) == 1
    finally:
        await server.stop(None)
