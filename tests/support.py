"""Small helpers shared by tests: in-process gRPC servers on ephemeral ports, and Envoy's credential
for a Tollway process's Envoy-facing port."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

# One registry of handed-out ports per process, shared with the benchmark's stacks.
from bench.scale_replicas import bindable as bindable
from bench.scale_replicas import free_port as free_port
from bench.scale_replicas import free_port_run as free_port_run
from tollway.envoy_pki import ensure_pki
from tollway.settings import Settings
from tollway.vocabulary import EnvoyAuthMode

Registration = Callable[[grpc.aio.Server], None]


@asynccontextmanager
async def grpc_server(
    *registrations: Registration, interceptors: tuple[Any, ...] = ()
) -> AsyncIterator[grpc.aio.Channel]:
    """Starts a grpc.aio server with the given `add_XServicer_to_server`-style registrations on
    127.0.0.1:<free port> and yields a client channel to it."""
    server = grpc.aio.server(interceptors=interceptors)
    for register in registrations:
        register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(grace=None)


@dataclass(frozen=True)
class EnvoyCredential:
    """What a test presents to an Envoy-facing port to be taken for Envoy (tollway/envoy_auth.py):
    channel credentials (mtls) or call metadata (token), as the settings of that port say."""

    settings: Settings

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self.settings.envoy_link.call_metadata()

    def _tls(self) -> tuple[grpc.ChannelCredentials, list[tuple[str, str]]] | None:
        link = self.settings.envoy_link
        if link.mode is not EnvoyAuthMode.MTLS:
            return None
        credentials = grpc.ssl_channel_credentials(
            Path(link.ca_file).read_bytes(),
            Path(link.client_key_file).read_bytes(),
            Path(link.client_cert_file).read_bytes(),
        )
        return credentials, [("grpc.ssl_target_name_override", link.server_name)]

    def aio_channel(self, address: str | None = None) -> grpc.aio.Channel:
        target = address or self.settings.grpc_addr
        tls = self._tls()
        if tls is None:
            return grpc.aio.insecure_channel(target)
        return grpc.aio.secure_channel(target, tls[0], options=tls[1])

    def channel(self, address: str | None = None) -> grpc.Channel:
        target = address or self.settings.grpc_addr
        tls = self._tls()
        if tls is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, tls[0], options=tls[1])


def shared_envoy_tls(directory: Path) -> dict[str, str]:
    """Settings fields (envoy_tls_*) for a PKI generated under `directory`, for a stack whose processes
    (and Envoy) must share one CA: each process's own data dir would generate its own."""
    pki = ensure_pki(directory, "tollway", "tollway-envoy")
    return {
        "envoy_tls_cert_file": str(pki.server_cert),
        "envoy_tls_key_file": str(pki.server_key),
        "envoy_tls_client_ca_file": str(pki.ca_cert),
        "envoy_tls_ca_file": str(pki.ca_cert),
        "envoy_tls_client_cert_file": str(pki.client_cert),
        "envoy_tls_client_key_file": str(pki.client_key),
    }


def settings_env(values: dict[str, str]) -> dict[str, str]:
    """The TOLLWAY_* environment that sets these Settings fields."""
    return {Settings.env_name(name): value for name, value in values.items()}


def logged_text(records: Iterable[logging.LogRecord]) -> str:
    """The captured lines as logged, one per line. A record whose arguments cannot be formatted (grpc
    logs a freed server object whose repr raises, whenever the collector frees it) counts by its
    message template: what the test looks for is Tollway's own lines."""
    lines = []
    for record in records:
        try:
            lines.append(record.getMessage())
        except Exception:
            lines.append(str(record.msg))
    return "\n".join(lines)
