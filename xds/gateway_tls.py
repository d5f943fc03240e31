"""HTTPS at the gateway: the listener's TLS context, the certificate as an SDS secret sent over ADS, a
plain-HTTP listener that redirects to HTTPS, and the watch that pushes a new secret when the files change.

Why the secret travels over ADS rather than as file-based SDS (Envoy watching a `watched_directory`):
Envoy's file watch reacts only to a file moved into place (inotify IN_MOVED_TO), so a certificate
renewed by writing over the file, as many tools and people do, would never be picked up; and Envoy would
load a certificate and key that were each replaced on their own at two moments, for a while a mismatched
pair, and fail the handshakes in between. Here xds/ reads the files where it runs, checks every new
version as startup does (tollway/gateway_tls.py: parses, key matches certificate, not expired), and
pushes only a checked pair, on the ADS stream Envoy already holds: a new secret version, applied by
Envoy to new connections without a restart or a listener drain, whatever way the files were replaced;
a bad version is logged and the pair served before stays. The key crosses the Envoy-facing link, which
is mTLS (or token-authenticated) unless plaintext was chosen explicitly; Envoy's config dump redacts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2

from tollway.envoy_resources import TLS_TRANSPORT_SOCKET, socket_address
from tollway.gateway_tls import GatewayTlsError, TlsPair, load_pair

log = logging.getLogger(__name__)

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
GATEWAY_SECRET_NAME = "tollway_gateway_tls"
REDIRECT_LISTENER_NAME = "tollway_http_redirect"
# HTTP/2 first, HTTP/1.1 for clients that do not offer h2 (the connection manager's codec is AUTO).
ALPN_PROTOCOLS = ("h2", "http/1.1")
# How often the files are looked at (a stat of each; read only when that changed).
WATCH_INTERVAL_SECONDS = 1.0


def gateway_secret(pair: TlsPair) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=GATEWAY_SECRET_NAME,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=pair.cert_pem),
            private_key=base_pb2.DataSource(inline_bytes=pair.key_pem),
        ),
    )


def downstream_tls_socket() -> base_pb2.TransportSocket:
    """The HTTPS listener's TLS: its certificate from the SDS secret on the ADS stream, ALPN h2 and
    http/1.1."""
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[
                secret_pb2.SdsSecretConfig(
                    name=GATEWAY_SECRET_NAME,
                    sds_config=config_source_pb2.ConfigSource(
                        ads=config_source_pb2.AggregatedConfigSource(),
                        resource_api_version=config_source_pb2.V3,
                    ),
                )
            ],
            alpn_protocols=list(ALPN_PROTOCOLS),
        )
    )
    socket = base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET)
    socket.typed_config.Pack(context)
    return socket


def redirect_listener(host: str, port: int, https_port: int) -> listener_pb2.Listener:
    """Plain HTTP on host:port answering every request with 301 to the same URL over HTTPS. No ext_authz
    and no access log: nothing reaches an API here, so nothing is metered or counted as lost."""
    redirect = route_components_pb2.RedirectAction(https_redirect=True)
    if https_port != 443:
        redirect.port_redirect = https_port
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=REDIRECT_LISTENER_NAME,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        route_config=route_pb2.RouteConfiguration(
            name=REDIRECT_LISTENER_NAME,
            virtual_hosts=[
                route_components_pb2.VirtualHost(
                    name="https",
                    domains=["*"],
                    routes=[
                        route_components_pb2.Route(
                            match=route_components_pb2.RouteMatch(prefix="/"), redirect=redirect
                        )
                    ],
                )
            ],
        ),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router")],
    )
    manager.http_filters[0].typed_config.Pack(router_pb2.Router())
    chain = listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager")]
    )
    chain.filters[0].typed_config.Pack(manager)
    return listener_pb2.Listener(
        name=REDIRECT_LISTENER_NAME, address=socket_address(host, port), filter_chains=[chain]
    )


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when a file is written over or replaced (rename, symlink swap)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns


class CertificateWatch:
    """Polls the certificate and key files; calls `on_pair` with each new checked pair (the first one is
    loaded at construction, so a bad pair refuses startup). A pair that fails the check is logged once
    per version of the files and not served."""

    def __init__(
        self,
        cert_file: str,
        key_file: str,
        on_pair: Callable[[TlsPair], None],
        interval: float = WATCH_INTERVAL_SECONDS,
    ) -> None:
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)
        self.on_pair = on_pair
        self.interval = interval
        self.pair = load_pair(self.cert_file, self.key_file)  # GatewayTlsError: refuse to start
        self._stamps = self._current_stamps()
        self.rotations = 0
        self.rejected = 0
        self._task: asyncio.Task[None] | None = None

    def _current_stamps(self) -> tuple[object, object]:
        return _stamp(self.cert_file), _stamp(self.key_file)

    def check(self) -> bool:
        """Looks at the files once; True when a new pair was taken (and handed to `on_pair`)."""
        stamps = self._current_stamps()
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            pair = load_pair(self.cert_file, self.key_file)
        except GatewayTlsError as exc:
            self.rejected += 1
            log.warning("gateway TLS files changed but cannot be served (keeping the current pair): %s", exc)
            return False
        if pair.cert_pem == self.pair.cert_pem and pair.key_pem == self.pair.key_pem:
            return False
        self.pair = pair
        self.rotations += 1
        log.info(
            "gateway TLS certificate rotated: %s serial %x until %s (pair %s)",
            pair.subject,
            pair.serial,
            pair.not_after.isoformat(),
            pair.fingerprint,
        )
        self.on_pair(pair)
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # a watch that dies silently would stop rotations: log, keep going
                log.exception("gateway TLS watch failed; trying again")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gateway-tls-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
