"""The gateway's part of the settings (`Settings.gateway`): what xds/ tells Envoy beyond the catalog.
Kept apart from tollway/settings/model.py, which declares the variables these come from."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.envoy_auth import EnvoyLink
from tollway.settings.declare import HostPort


@dataclass(frozen=True)
class GatewaySettings:
    """What xds/ tells Envoy beyond the catalog: its listener and where the Envoy-facing services are."""

    listener: HostPort
    keymgr_endpoints: tuple[HostPort, ...]
    usage_endpoints: tuple[HostPort, ...]
    authz_timeout_ms: int
    authz_failure_mode_allow: bool
    # How Envoy authenticates to the Envoy-facing services, and the node ids ADS serves.
    envoy_link: EnvoyLink
    envoy_nodes: tuple[str, ...]
    # Envoy sends every access-log entry to this many usage endpoints (at most one per endpoint).
    usage_copies: int = 1
    # HTTPS on the listener: the certificate chain and key (PEM, paths where xds/ runs; both or
    # neither), and a plain-HTTP listener that redirects to it (None = none).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    http_redirect: HostPort | None = None

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file or self.tls_key_file)
