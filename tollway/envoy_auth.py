"""Envoy proves to Tollway's Envoy-facing port that it is the gateway; nobody else is served there.

Measured before this existed: anyone who reached the port could forge billable usage (500 of 500
fabricated access-log entries from an invented node were counted for a real subscription), spend a
customer's quota (one ShouldRateLimit with hits_addend 100 made their next real request 429), and read
the gateway's whole configuration (ADS answered a node calling itself "attacker").

TOLLWAY_ENVOY_AUTH picks one of three modes; both sides of the link come from the same settings:
- `mtls` (default): the port speaks TLS and demands a client certificate from the client CA, so a
  caller without one never completes the handshake (no RPC is read; grpc clients see UNAVAILABLE);
  a certificate from that CA naming anyone but Envoy (`client_name`) gets UNAUTHENTICATED. Envoy
  presents its certificate on every Tollway cluster (an UpstreamTlsContext that also verifies
  Tollway's certificate by name). The embedded default generates the CA and both certificates
  (tollway/envoy_pki.py).
- `token`: where TLS is terminated elsewhere (a mesh sidecar, a private link): Envoy sends
  `authorization: Bearer <token>` as initial metadata on ADS, ext_authz, the rate limit service and
  the access log; any call without it gets UNAUTHENTICATED. The token is compared in constant time and
  never logged; it does appear in Envoy's bootstrap (0600) and in its admin /config_dump, which must
  stay private anyway.
- `none`: plaintext, every caller taken for Envoy. Explicit only, and warned about at startup.
Health and reflection stay open in every mode, as on the admin port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tollway.vocabulary import EnvoyAuthMode

# grpc and the interceptors are imported where they are used: the settings (and so the CLI, whose
# start-up time counts) read the dataclasses below without paying for a gRPC import.
if TYPE_CHECKING:
    import grpc

    from tollway.handler_wrapping import HandlerWrapper

MIN_TOKEN_CHARS = 16
ENVOY = "Envoy"


def token_problem(token: str) -> str | None:
    """Why `token` cannot be Envoy's token, None when it can."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"the token must be at least {MIN_TOKEN_CHARS} characters, got {len(token)}"
    if not all("!" <= char <= "~" for char in token):
        return "the token must be printable ASCII without spaces (it is sent as gRPC metadata)"
    return None


@dataclass(frozen=True)
class EnvoyLink:
    """Envoy's side of the link: what Tollway writes into Envoy's bootstrap (the ADS cluster) and pushes
    for every other Tollway cluster and gRPC service. Paths are as Envoy reads them."""

    mode: EnvoyAuthMode
    token: str = field(default="", repr=False)
    ca_file: str = ""
    client_cert_file: str = ""
    client_key_file: str = ""
    server_name: str = ""

    def __post_init__(self) -> None:
        if self.mode is EnvoyAuthMode.TOKEN and token_problem(self.token) is not None:
            raise ValueError(f"token mode: {token_problem(self.token)}")
        tls_files = (self.ca_file, self.client_cert_file, self.client_key_file, self.server_name)
        if self.mode is EnvoyAuthMode.MTLS and not all(tls_files):
            raise ValueError("mtls mode needs a CA file, a client certificate and key, and a server name")

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """Initial metadata Envoy sends on every call to Tollway (GrpcService.initial_metadata)."""
        from tollway.auth import AUTHORIZATION, bearer

        return ((AUTHORIZATION, bearer(self.token)),) if self.mode is EnvoyAuthMode.TOKEN else ()

    def aio_channel(self, target: str) -> grpc.aio.Channel:
        """A channel to an Envoy-facing port as Envoy opens it (e.g. to probe a worker's health; call
        metadata is the caller's to add)."""
        import grpc

        if self.mode is not EnvoyAuthMode.MTLS:
            return grpc.aio.insecure_channel(target)
        credentials = grpc.ssl_channel_credentials(
            Path(self.ca_file).read_bytes(),
            Path(self.client_key_file).read_bytes(),
            Path(self.client_cert_file).read_bytes(),
        )
        return grpc.aio.secure_channel(
            target, credentials, options=[("grpc.ssl_target_name_override", self.server_name)]
        )


# For Envoys that talk to plaintext test doubles; a process uses the link its settings describe.
PLAINTEXT_LINK = EnvoyLink(EnvoyAuthMode.NONE)


@dataclass(frozen=True)
class EnvoyFacingSecurity:
    """Tollway's side of the link: the Envoy-facing server's credentials and interceptors."""

    mode: EnvoyAuthMode
    token: str = field(default="", repr=False)
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    client_name: str = ""

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """mTLS credentials in mtls mode; None (plaintext) otherwise."""
        from tollway.auth import server_tls_credentials

        if self.mode is not EnvoyAuthMode.MTLS:
            return None
        return server_tls_credentials(self.cert_file, self.key_file, self.client_ca_file)

    def wrappers(self) -> tuple[HandlerWrapper, ...]:
        """What refuses a caller that is not Envoy, wrapped around each handler as it registers
        (tollway/handler_wrapping.py), outermost: before any other check or servicer runs."""
        from tollway.auth import BearerTokenInterceptor, PeerNameCheck

        if self.mode is EnvoyAuthMode.TOKEN:
            return (BearerTokenInterceptor(self.token, ENVOY),)
        if self.mode is EnvoyAuthMode.MTLS and self.client_name:
            return (PeerNameCheck(self.client_name, ENVOY),)
        return ()

    def startup_warning(self) -> str | None:
        if self.mode is not EnvoyAuthMode.NONE:
            return None
        return (
            "TOLLWAY_ENVOY_AUTH=none: the Envoy-facing port takes every caller for Envoy; anyone who can "
            "reach it can forge usage, spend quotas and read the gateway's configuration. Use mtls "
            "(the default) or token unless the port is reachable by Envoy alone."
        )
