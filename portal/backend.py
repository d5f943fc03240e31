"""The admin services the portal acts through, over their gRPC contracts on the admin port (as
billing/ reaches usage/ and throttle/): StoreService for applications, subscriptions and keys,
BillingService for invoices and approvals, UsageService for usage, QuotaService for quotas.

So a consumer's request runs exactly the admin's validation, approval workflow and error messages:
the portal adds only the owner filter (portal/consumer.py). A refusal comes back as a TollwayError
carrying the admin service's own status code and message."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from tollway.billing.v1 import billing_pb2_grpc
from tollway.errors import TollwayError
from tollway.settings import Settings
from tollway.store.v1 import store_pb2_grpc
from tollway.throttle.v1 import throttle_pb2_grpc
from tollway.usage.v1 import usage_pb2_grpc

log = logging.getLogger(__name__)

RPC_TIMEOUT_SECONDS = 10.0
Response = TypeVar("Response", bound=Message)
# Not the caller's fault: the admin port is down, slow, lacks the service, or refused the portal's token.
_UNAVAILABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


class RemoteRefusal(TollwayError):
    """An admin service's answer, passed on with its own code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def admin_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS to the admin port when it serves TLS: its CA (TOLLWAY_ADMIN_TLS_CA, else the server's own
    certificate chain) and, for mTLS, the client certificate and key (TOLLWAY_ADMIN_TLS_CLIENT_*)."""
    if not settings.admin_tls_cert_file:
        return None
    ca = settings.admin_client_tls_ca_file or settings.admin_tls_cert_file
    cert, key = settings.admin_client_tls_cert_file, settings.admin_client_tls_key_file
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )


class AdminServices:
    """One lazily opened aio channel to the admin port and the stubs the portal uses."""

    def __init__(self, addr: str, token: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._addr = addr
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self._addr)
            else:
                self._channel = grpc.aio.secure_channel(self._addr, self._credentials)
        return self._channel

    @property
    def store(self) -> Any:
        return store_pb2_grpc.StoreServiceStub(self._open())

    @property
    def billing(self) -> Any:
        return billing_pb2_grpc.BillingServiceStub(self._open())

    @property
    def usage(self) -> Any:
        return usage_pb2_grpc.UsageServiceStub(self._open())

    @property
    def quota(self) -> Any:
        return throttle_pb2_grpc.QuotaServiceStub(self._open())

    async def call(
        self, rpc: Callable[..., Awaitable[Any]], request: Message, response: type[Response]
    ) -> Response:
        """One unary call; its refusal raised as RemoteRefusal with the service's code and message."""
        try:
            answer = await rpc(request, metadata=self._metadata, timeout=RPC_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in _UNAVAILABLE:
                log.warning("portal: admin service call failed: %s", code.name)
                raise RemoteRefusal(
                    grpc.StatusCode.UNAVAILABLE, "the service is unavailable; try again"
                ) from None
            raise RemoteRefusal(code, exc.details() or code.name) from None
        if not isinstance(answer, response):
            raise TypeError(f"expected {response.__name__}, got {type(answer).__name__}")
        return answer

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None
