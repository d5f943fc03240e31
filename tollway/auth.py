"""Admin authentication: a bearer token in the `authorization` metadata of every admin RPC."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

# Reflection and health describe the server, not its data: grpcurl can list services without a token.
_OPEN_SERVICES = ("/grpc.reflection.", "/grpc.health.v1.")


# Generic only in the type stubs: subscripted here it would fail at import.
class AdminTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an admin token is required")
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method or ""
        if method.startswith(_OPEN_SERVICES) or self._authorized(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        return _deny_handler()

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(presented, self._expected)
        return False


def _deny_handler() -> grpc.RpcMethodHandler[Any, Any]:
    async def deny(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid admin bearer token")

    # Aborting before any message is read or written answers unary and streaming calls alike.
    return grpc.unary_unary_rpc_method_handler(deny)
