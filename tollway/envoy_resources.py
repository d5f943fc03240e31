"""Envoy resource builders that more than one component needs (xds/ for its own clusters and filters,
throttle/ for the rate limit service's). Pure functions from plain values to Envoy messages, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, grpc_service_pb2, health_check_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from tollway.envoy_auth import EnvoyLink
from tollway.keepalive import KEEPALIVE, KeepalivePolicy
from tollway.vocabulary import EnvoyAuthMode

HostPort = tuple[str, int]

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromMilliseconds(round(seconds * 1000))
    return value


def socket_address(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=port))


def load_assignment(
    cluster_name: str, endpoints: Iterable[tuple[str, int, str]]
) -> endpoint_pb2.ClusterLoadAssignment:
    """endpoints: (host, port, hostname for Host/SNI rewriting or "")."""
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=socket_address(host, port), hostname=hostname)
        )
        for host, port, hostname in endpoints
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)],
    )


def discovery_type(hosts: Iterable[str]) -> cluster_pb2.Cluster.DiscoveryType.ValueType:
    # IP literals need no DNS; any name means Envoy resolves (and re-resolves) it.
    return cluster_pb2.Cluster.STATIC if all(is_ip(h) for h in hosts) else cluster_pb2.Cluster.STRICT_DNS


def tollway_transport_socket(link: EnvoyLink) -> base_pb2.TransportSocket | None:
    """mtls: Envoy presents its client certificate to Tollway and accepts only a server certificate
    from the link's CA carrying the link's server name (sent as SNI too). Otherwise None (plaintext)."""
    if link.mode is not EnvoyAuthMode.MTLS:
        return None
    context = tls_pb2.UpstreamTlsContext(
        sni=link.server_name,
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificates=[
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(filename=link.client_cert_file),
                    private_key=base_pb2.DataSource(filename=link.client_key_file),
                )
            ],
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(filename=link.ca_file),
                match_typed_subject_alt_names=[
                    common_pb2.SubjectAltNameMatcher(
                        san_type=common_pb2.SubjectAltNameMatcher.DNS,
                        matcher=string_pb2.StringMatcher(exact=link.server_name),
                    )
                ],
            ),
            # gRPC servers expect HTTP/2 to be negotiated by ALPN.
            alpn_protocols=["h2"],
        ),
    )
    socket = base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET)
    socket.typed_config.Pack(context)
    return socket


# Envoy's active health checks of Tollway's services: every 2 s (also while the cluster carries no
# traffic; Envoy's default then is 60 s), each given 1 s; an endpoint is taken out after 2 failures in a
# row (NOT_SERVING, or no answer) and back in after 1 success. So a replica that goes NOT_SERVING stops
# getting traffic within about 4 s. Envoy's panic threshold is left at its default: when most of a
# cluster's endpoints fail their checks Envoy sends to all of them again, and each answers by its own
# failure mode, rather than a health-check outage refusing every request.
HEALTH_CHECK_INTERVAL_SECONDS = 2.0
HEALTH_CHECK_TIMEOUT_SECONDS = 1.0
HEALTH_CHECK_UNHEALTHY_THRESHOLD = 2
HEALTH_CHECK_HEALTHY_THRESHOLD = 1


def grpc_health_check(service: str) -> health_check_pb2.HealthCheck:
    """Envoy's active check of one service through the standard grpc.health.v1 service."""
    return health_check_pb2.HealthCheck(
        timeout=duration(HEALTH_CHECK_TIMEOUT_SECONDS),
        interval=duration(HEALTH_CHECK_INTERVAL_SECONDS),
        no_traffic_interval=duration(HEALTH_CHECK_INTERVAL_SECONDS),
        unhealthy_threshold=wrappers_pb2.UInt32Value(value=HEALTH_CHECK_UNHEALTHY_THRESHOLD),
        healthy_threshold=wrappers_pb2.UInt32Value(value=HEALTH_CHECK_HEALTHY_THRESHOLD),
        grpc_health_check=health_check_pb2.HealthCheck.GrpcHealthCheck(service_name=service),
    )


def grpc_service_cluster(
    name: str,
    endpoints: Sequence[HostPort],
    *,
    link: EnvoyLink,
    keepalive: KeepalivePolicy = KEEPALIVE,
    health_service: str = "",
) -> cluster_pb2.Cluster:
    """A cluster for one of Tollway's gRPC services: HTTP/2, with keepalive so a dead process is noticed
    (at a pace the servers accept: tollway/keepalive.py), over mTLS in mtls mode, and with
    `health_service` (its full gRPC name) checked on every endpoint, so one that reports NOT_SERVING
    gets no traffic."""
    protocol_options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions(
                connection_keepalive=protocol_pb2.KeepaliveSettings(
                    interval=duration(keepalive.envoy_interval), timeout=duration(keepalive.envoy_timeout)
                )
            )
        )
    )
    cluster = cluster_pb2.Cluster(
        name=name,
        type=discovery_type(host for host, _ in endpoints),
        connect_timeout=duration(1),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        load_assignment=load_assignment(name, ((host, port, "") for host, port in endpoints)),
    )
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Pack(protocol_options)
    socket = tollway_transport_socket(link)
    if socket is not None:
        cluster.transport_socket.CopyFrom(socket)
    if health_service:
        cluster.health_checks.append(grpc_health_check(health_service))
    return cluster


def grpc_service(
    cluster: str, timeout_ms: int | None = None, *, link: EnvoyLink
) -> grpc_service_pb2.GrpcService:
    """An Envoy gRPC client of `cluster` (a filter's or access logger's service); in token mode every
    call carries the token as initial metadata."""
    service = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster),
        initial_metadata=[base_pb2.HeaderValue(key=key, value=value) for key, value in link.call_metadata()],
    )
    if timeout_ms is not None:
        service.timeout.FromMilliseconds(timeout_ms)
    return service
