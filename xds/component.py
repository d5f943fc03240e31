"""xds/ as the composition root sees it: its state in a process (xds/process.py), which pushes
Envoy's configuration built from the catalog and every component's contribution. Imported by every
`tollway` command, so the rest loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollway.component import Component, ProcessContext
from tollway.refusal import StartupRefused
from tollway.settings import Settings

if TYPE_CHECKING:
    from xds.process import Xds


class XdsComponent(Component):
    name = "xds"

    def build(self, settings: Settings, context: ProcessContext) -> Xds:
        from tollway.gateway_tls import GatewayTlsError
        from xds.gateway_tls import CertificateWatch
        from xds.process import Xds, gateway_options

        gateway = settings.gateway
        certificate = None
        if gateway.tls:
            try:
                certificate = CertificateWatch(gateway.tls_cert_file, gateway.tls_key_file, lambda _: None)
            except GatewayTlsError as exc:
                raise StartupRefused(str(exc)) from None
        return Xds(
            gateway_options(gateway, context.gateway), context.catalog, gateway.envoy_nodes, certificate
        )

    def refuse_unsafe(self, settings: Settings) -> None:
        """HTTPS at the gateway needs both files, each readable, the key the certificate's, unexpired;
        the redirect needs HTTPS."""
        cert, key = settings.gateway_tls_cert_file, settings.gateway_tls_key_file
        if bool(cert) != bool(key):
            missing = "gateway_tls_key_file" if cert else "gateway_tls_cert_file"
            raise StartupRefused(
                f"HTTPS at the gateway needs a certificate and its key: {Settings.env_name(missing)} is not "
                "set (set both, or neither for plain HTTP)"
            )
        if settings.gateway_http_redirect_addr and not cert:
            raise StartupRefused(
                f"{Settings.env_name('gateway_http_redirect_addr')} redirects to HTTPS, which needs "
                f"{Settings.env_name('gateway_tls_cert_file')} and "
                f"{Settings.env_name('gateway_tls_key_file')}"
            )
        if cert:
            from tollway.gateway_tls import GatewayTlsError, load_pair

            try:
                load_pair(cert, key)
            except GatewayTlsError as exc:
                raise StartupRefused(str(exc)) from None


COMPONENT = XdsComponent()
