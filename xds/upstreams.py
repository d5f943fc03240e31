"""Upstreams of published APIs: their URLs taken apart, and the TLS Envoy speaks to an https one (the
system CA bundle, the names the certificate must carry, SNI). Used by xds/resources.py's API clusters."""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from tollway.envoy_resources import is_ip

# Where distributions keep their CA bundle; Python's own idea comes first.
_CA_BUNDLE_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
)


def system_ca_file() -> str | None:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *_CA_BUNDLE_CANDIDATES):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream URL, taken apart."""

    tls: bool
    host: str  # name or IP literal, IPv6 without brackets
    port: int
    path: str  # "" or "/base", never a trailing slash

    @property
    def authority(self) -> str:
        """The Host header value for this upstream (port only when not the scheme's default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.tls else 80
        return host if self.port == default_port else f"{host}:{self.port}"


def parse_upstream(url: str) -> Upstream:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"upstream URL {url!r}: scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"upstream URL {url!r} has no host")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError as exc:
        raise ValueError(f"upstream URL {url!r}: {exc}") from None
    return Upstream(tls=tls, host=parts.hostname, port=port, path=parts.path.rstrip("/"))


def upstream_tls(upstreams: Sequence[Upstream], ca_file: str | None) -> tls_pb2.UpstreamTlsContext:
    names = sorted({u.host for u in upstreams})
    validation = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=[
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.IP_ADDRESS
                if is_ip(name)
                else common_pb2.SubjectAltNameMatcher.DNS,
                matcher=string_pb2.StringMatcher(exact=name),
            )
            for name in names
        ]
    )
    if not ca_file:
        raise ValueError("https upstreams need a CA bundle: none found, set GatewayOptions.upstream_ca_file")
    validation.trusted_ca.filename = ca_file
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(validation_context=validation)
    )
    dns_names = [name for name in names if not is_ip(name)]
    # SNI carries names only (RFC 6066); several names = each connection sends its endpoint's name.
    if len(dns_names) == 1:
        context.sni = dns_names[0]
    elif len(dns_names) > 1:
        context.auto_host_sni = True
    return context


def endpoint_hostname(upstream: Upstream) -> str:
    # What auto_host_rewrite puts in Host and auto_host_sni in SNI; SNI takes a bare name.
    return upstream.host if upstream.tls else upstream.authority
