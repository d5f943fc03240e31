"""Who may call Tollway's gRPC ports, for the admin port and the Envoy-facing port alike.

- `BearerTokenInterceptor`: `authorization: Bearer <token>` in the call's metadata, compared in
  constant time (the admin port; the Envoy-facing port in token mode).
- `PeerNameCheck`: over mTLS, the client certificate must name the expected peer (the
  Envoy-facing port in mtls mode). The TLS handshake has already refused a peer without a certificate
  from the client CA; this refuses one whose certificate the same CA issued to someone else.
- `server_tls_credentials`: TLS for either port from PEM files; with a client CA, mTLS.

The token check works as an interceptor (the admin port) or, through `wrap`, around each handler once
as it is registered (the Envoy-facing port, tollway/handler_wrapping.py: no interceptor chain per call);
the peer check only the second way.
A refused call answers UNAUTHENTICATED before the servicer runs, and is reported once per interval
with a count (never the presented credential). Reflection and health describe the server, not its
data, and stay open: grpcurl can list services, and orchestrators probe health, without a credential.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from tollway.request_guard import RateLimitedLog

log = logging.getLogger(__name__)

OPEN_SERVICES = ("/grpc.reflection.", "/grpc.health.v1.")
AUTHORIZATION = "authorization"

# A string: grpc's classes are generic in the type stubs only.
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]


def bearer(token: str) -> str:
    """The `authorization` metadata value that carries `token`."""
    return f"Bearer {token}"


def server_tls_credentials(cert_file: str, key_file: str, client_ca_file: str = "") -> grpc.ServerCredentials:
    """TLS from PEM files; with a client CA, callers must present a certificate it signed (mTLS)."""
    return grpc.ssl_server_credentials(
        [(Path(key_file).read_bytes(), Path(cert_file).read_bytes())],
        root_certificates=Path(client_ca_file).read_bytes() if client_ca_file else None,
        require_client_auth=bool(client_ca_file),
    )


# Generic only in the type stubs: subscripted here it would fail at import.
class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses every call but reflection and health without `authorization: Bearer <token>`."""

    def __init__(self, token: str, who: str) -> None:
        if not token:
            raise ValueError(f"an {who} token is required")
        self._expected = bearer(token).encode()
        self._refusal = f"missing or invalid {who} bearer token"
        self._reports = RateLimitedLog(log)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method or ""
        if method.startswith(OPEN_SERVICES) or self._authorized(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)  # type: ignore[return-value]  # None: UNIMPLEMENTED
        self._reports.event(logging.WARNING, method, "refused %s: %s", method, self._refusal)
        return _deny_handler(self._refusal)

    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """The same refusal applied to a handler once, at registration (tollway/handler_wrapping.py)."""
        if method.startswith(OPEN_SERVICES):
            return handler

        async def check(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            if not self._authorized(context.invocation_metadata()):
                self._reports.event(logging.WARNING, method, "refused %s: %s", method, self._refusal)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, self._refusal)

        return _gated(handler, check)

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == AUTHORIZATION:
                presented = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(presented, self._expected)
        return False


class PeerNameCheck:
    """Over mTLS: refuses every call but reflection and health whose client certificate does not
    carry `name` as its common name or a subject alternative name. Only ever wrapped around handlers
    at registration (the Envoy-facing port), so it is no interceptor."""

    def __init__(self, name: str, who: str) -> None:
        if not name:
            raise ValueError("a peer name is required")
        self._name = name.encode()
        self._refusal = f"the client certificate does not name {who} (expected {name!r})"
        self._reports = RateLimitedLog(log)

    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """The check applied to a handler once, at registration (tollway/handler_wrapping.py)."""
        if method.startswith(OPEN_SERVICES):
            return handler
        return _gated(handler, self._check(method))

    def _check(self, method: str) -> Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]:
        async def check(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            identity = context.auth_context()
            names = (
                *identity.get("x509_common_name", ()),
                *identity.get("x509_subject_alternative_name", ()),
            )
            if self._name not in names:
                self._reports.event(logging.WARNING, method, "refused %s: %s", method, self._refusal)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, self._refusal)

        return check


def _deny_handler(refusal: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def deny(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)

    # Aborting before any message is read or written answers unary and streaming calls alike.
    return grpc.unary_unary_rpc_method_handler(deny)


def _gated(
    handler: grpc.RpcMethodHandler[Any, Any],
    check: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]],
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with `check(context)` run first: it aborts the call, or lets the behavior run."""
    decode, encode = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        unary_unary: Callable[..., Any] = handler.unary_unary

        async def gated_unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await check(context)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(gated_unary_unary, decode, encode)
    if handler.stream_unary is not None:
        stream_unary: Callable[..., Any] = handler.stream_unary

        async def gated_stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await check(context)
            return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(gated_stream_unary, decode, encode)

    streaming: Callable[..., Any] | None = handler.unary_stream or handler.stream_stream

    async def gated_streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await check(context)
        assert streaming is not None
        result: Any = streaming(request, context)
        if hasattr(result, "__aiter__"):
            async for response in result:
                await context.write(response)
            return None
        return await result

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(gated_streaming, decode, encode)
    return grpc.stream_stream_rpc_method_handler(gated_streaming, decode, encode)
