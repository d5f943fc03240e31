"""What `tollway up` prints once everything answers: every address the process and its Envoy listen on
(gateway, Envoy admin, Envoy-facing gRPC per worker, admin gRPC, portal web and gRPC, metrics per
worker), so an operator never has to guess a port. Pure: built from the settings, tested as text."""

from __future__ import annotations

from collections.abc import Sequence

from tollway.settings import Settings, split_addr

_WIDTH = 21


def _line(label: str, value: str) -> str:
    return f"  {label:<{_WIDTH}}{value}"


def metrics_addresses(settings: Settings) -> list[str]:
    """The metrics endpoint of each worker (worker k serves on the metrics port + k, as
    Settings.for_worker says); none when off."""
    if not settings.metrics_addr:
        return []
    host, port = split_addr(settings.metrics_addr)
    return [f"{host}:{port + index}" for index in range(settings.workers)]


def address_lines(settings: Settings, grpc_addresses: Sequence[str], envoy_log: str) -> list[str]:
    """One line per listener, in the order a request meets them."""
    scheme = "https" if settings.gateway_tls_cert_file else "http"
    lines = [_line("gateway (Envoy)", f"{scheme}://{settings.gateway_addr}")]
    if settings.gateway_http_redirect_addr:
        lines.append(_line("HTTP -> HTTPS", f"http://{settings.gateway_http_redirect_addr}"))
    lines += [
        _line("Envoy admin", f"http://{settings.envoy_admin_addr}"),
        _line(
            "envoy-facing gRPC",
            f"{', '.join(grpc_addresses)}  (ADS, ext_authz Check, ShouldRateLimit, access logs; Envoy "
            f"only, authenticated by {settings.envoy_auth})",
        ),
        _line("admin gRPC", f"{settings.admin_addr}  (grpcurl -plaintext, or the tollway CLI)"),
    ]
    if "portal" in settings.components:
        lines.append(_line("portal (web)", settings.portal_url))
        lines.append(_line("portal gRPC", f"{settings.portal_grpc_addr}  (consumers, with their session)"))
    metrics = metrics_addresses(settings)
    if metrics:
        lines.append(_line("metrics (Prometheus)", ", ".join(f"http://{addr}/metrics" for addr in metrics)))
    else:
        lines.append(_line("metrics (Prometheus)", "off (set TOLLWAY_METRICS_ADDR=host:port)"))
    lines.append(_line("Envoy log", envoy_log))
    return lines
