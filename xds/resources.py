"""Envoy's configuration for Tollway, built from the published APIs: one listener, one route table,
one cluster per API plus the clusters of Tollway's own gRPC services. Pure functions, no I/O.

The result maps an xDS type URL to {resource name: message}; xds.cache versions it and xds.server
sends it. Endpoints are inline in the clusters (load_assignment), so there is no EDS.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, substitution_format_string_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import any_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message

from tollway import envoy_contract as contract
from tollway.catalog.view import PublishedApi
from tollway.envoy_auth import PLAINTEXT_LINK, EnvoyLink
from tollway.envoy_contract import EXT_AUTHZ_FILTER
from tollway.envoy_resources import (
    TLS_TRANSPORT_SOCKET,
    HostPort,
    duration,
    grpc_service,
    grpc_service_cluster,
    load_assignment,
    socket_address,
)
from tollway.gateway_tls import TlsPair
from xds.gateway_tls import (
    GATEWAY_SECRET_NAME,
    SECRET_TYPE,
    downstream_tls_socket,
    gateway_secret,
    redirect_listener,
)
from xds.upstreams import Upstream, endpoint_hostname, parse_upstream, system_ca_file, upstream_tls

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# The order Envoy must receive updates in, so nothing refers to a resource it does not have yet (the
# gateway's certificate, SDS, before the HTTPS listener that names it).
TYPE_ORDER: tuple[str, ...] = (CLUSTER_TYPE, SECRET_TYPE, LISTENER_TYPE, ROUTE_TYPE)

LISTENER_NAME = "tollway_http"
ROUTE_CONFIG_NAME = "tollway_routes"
KEYMGR_CLUSTER = "tollway_keymgr"
USAGE_CLUSTER = "tollway_usage"
NOT_FOUND_ROUTE = contract.NOT_FOUND_ROUTE
ACCESS_LOG_NAME = "tollway"

ROUTER_FILTER = "envoy.filters.http.router"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
GRPC_ACCESS_LOG = "envoy.access_loggers.http_grpc"

# RFC 9457 body for paths no API is published at; served by Envoy itself, keymgr never sees them. The
# same members as keymgr's and the throttle's refusals, with the request id filled in by Envoy through
# a JSON format (values JSON-escaped; `status` stays an integer). `body` is the same without the id.
NOT_FOUND_PROBLEM: dict[str, str | int] = {
    "type": contract.problem_type(contract.NOT_FOUND),
    "title": "Not Found",
    "status": 404,
    "detail": "No API is published at this path.",
    "reason": contract.NOT_FOUND,
}
NOT_FOUND_BODY = json.dumps(NOT_FOUND_PROBLEM, separators=(",", ":"))

Resources = dict[str, dict[str, Message]]


def api_cluster_name(api_id: str) -> str:
    """The name of an API's cluster and of its route (what the access log's route_name carries)."""
    return contract.API_ROUTE_PREFIX + api_id


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayOptions:
    """Everything about the gateway that does not come from the catalog."""

    # Where Envoy's listener for API traffic binds.
    listener_host: str = "0.0.0.0"
    listener_port: int = 8080
    # Each Tollway process serving Check / StreamAccessLogs is its own endpoint (Envoy keeps one
    # HTTP/2 connection per worker per endpoint, so processes behind one port share no load).
    keymgr_endpoints: tuple[HostPort, ...]
    usage_endpoints: tuple[HostPort, ...]
    # Each access-log entry goes to this many usage endpoints at once (one access logger per disjoint
    # group of usage_endpoints): a usage process killed mid-stream loses what only it had received,
    # and with two copies that is nothing; usage counts each (node, request id) once.
    usage_copies: int = 1
    authz_timeout_ms: int = 250
    # False = fail closed: when keymgr cannot answer, Envoy denies with 503.
    authz_failure_mode_allow: bool = False
    upstream_timeout_s: float = 30.0
    upstream_connect_timeout_s: float = 2.0
    # CA bundle that verifies https upstreams (Envoy checks SANs only against a CA file, not against
    # its system_root_certs); the default is the operating system's bundle.
    upstream_ca_file: str | None = field(default_factory=system_ca_file)
    # Slot between ext_authz and the router (the throttle's ratelimit filter goes here).
    extra_http_filters: tuple[hcm_pb2.HttpFilter, ...] = field(default=())
    # Clusters the extra filters need (e.g. the rate limit service).
    extra_clusters: tuple[cluster_pb2.Cluster, ...] = field(default=())
    # Rate limit actions on every API route (descriptors for the ratelimit filter; see throttle/).
    route_rate_limits: tuple[route_components_pb2.RateLimit, ...] = field(default=())
    # How Envoy authenticates to Tollway's gRPC services (tollway/envoy_auth.py). A process passes the
    # link its settings describe; the plaintext default is for tests against plaintext doubles.
    envoy_link: EnvoyLink = PLAINTEXT_LINK
    # HTTPS on the listener (its certificate: the SDS secret build_resources is given), and a plain-HTTP
    # listener at this (host, port) redirecting to it.
    tls: bool = False
    http_redirect: HostPort | None = None

    def __post_init__(self) -> None:
        # Accept lists from callers, keep the dataclass hashable and immutable.
        for name in ("keymgr_endpoints", "usage_endpoints"):
            endpoints = tuple((str(host), int(port)) for host, port in getattr(self, name))
            if not endpoints:
                raise ValueError(f"{name} must list at least one host:port")
            for host, port in endpoints:
                _check_port(port, name)
                if not host:
                    raise ValueError(f"{name} has an empty host")
            object.__setattr__(self, name, endpoints)
        object.__setattr__(self, "extra_http_filters", tuple(self.extra_http_filters))
        object.__setattr__(self, "extra_clusters", tuple(self.extra_clusters))
        object.__setattr__(self, "route_rate_limits", tuple(self.route_rate_limits))
        _check_port(self.listener_port, "listener_port")
        if self.http_redirect is not None:
            if not self.tls:
                raise ValueError("a redirect to HTTPS needs the listener to serve HTTPS")
            _check_port(self.http_redirect[1], "http_redirect")
        if self.authz_timeout_ms <= 0:
            raise ValueError("authz_timeout_ms must be positive")
        if self.upstream_timeout_s <= 0 or self.upstream_connect_timeout_s <= 0:
            raise ValueError("upstream timeouts must be positive")


def _check_port(port: int, what: str) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"{what}: port {port} is out of range")


def _packed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


# RE2 metacharacters; context paths are otherwise literal.
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def _re2_escape(text: str) -> str:
    return "".join("\\" + char if char in _RE2_SPECIAL else char for char in text)


def path_rewrite(context_path: str, upstream_path: str) -> regex_pb2.RegexMatchAndSubstitute:
    """Replaces the context path with the upstream's path; Envoy keeps the query string apart.

    /weather/v1/today → /base/today, /weather/v1 → /base; without an upstream path the
    context path and the slash after it become "/" (so /weather/v1 → / and never an empty path).
    """
    if upstream_path:
        pattern, substitution = f"^{_re2_escape(context_path)}", upstream_path.replace("\\", "\\\\")
    else:
        pattern, substitution = f"^{_re2_escape(context_path)}/?", "/"
    return regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_pb2.RegexMatcher(regex=pattern), substitution=substitution
    )


def api_cluster(api_id: str, upstreams: Sequence[Upstream], options: GatewayOptions) -> cluster_pb2.Cluster:
    name = api_cluster_name(api_id)
    cluster = cluster_pb2.Cluster(
        name=name,
        # Names are re-resolved as DNS changes; IP literals simply resolve to themselves.
        type=cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=duration(options.upstream_connect_timeout_s),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        load_assignment=load_assignment(name, ((u.host, u.port, endpoint_hostname(u)) for u in upstreams)),
    )
    if upstreams and upstreams[0].tls:
        cluster.transport_socket.name = TLS_TRANSPORT_SOCKET
        cluster.transport_socket.typed_config.Pack(upstream_tls(upstreams, options.upstream_ca_file))
    return cluster


def api_route(
    api: PublishedApi, upstreams: Sequence[Upstream], options: GatewayOptions
) -> route_components_pb2.Route:
    action = route_components_pb2.RouteAction(
        cluster=api_cluster_name(api.id),
        regex_rewrite=path_rewrite(api.context_path, upstreams[0].path),
        timeout=duration(options.upstream_timeout_s),
        rate_limits=options.route_rate_limits,
    )
    authorities = {u.authority for u in upstreams}
    if len(authorities) == 1:
        action.host_rewrite_literal = authorities.pop()
    else:
        # Different hosts behind one API: each request carries its chosen endpoint's name.
        action.auto_host_rewrite.value = True
    route = route_components_pb2.Route(
        name=api_cluster_name(api.id),
        match=route_components_pb2.RouteMatch(path_separated_prefix=api.context_path),
        route=action,
    )
    # keymgr learns which API is called from these, not from parsing the path again.
    per_route = ext_authz_pb2.ExtAuthzPerRoute(
        check_settings=ext_authz_pb2.CheckSettings(
            context_extensions={
                contract.CONTEXT_API_ID: api.id,
                contract.CONTEXT_API_NAME: api.name,
                contract.CONTEXT_API_VERSION: api.version,
            }
        )
    )
    route.typed_per_filter_config[EXT_AUTHZ_FILTER].Pack(per_route)
    return route


def _struct(values: dict[str, str | int]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def not_found_route() -> route_components_pb2.Route:
    route = route_components_pb2.Route(
        name=NOT_FOUND_ROUTE,
        match=route_components_pb2.RouteMatch(prefix="/"),
        direct_response=route_components_pb2.DirectResponseAction(
            status=404,
            body=base_pb2.DataSource(inline_string=NOT_FOUND_BODY),
            body_format=substitution_format_string_pb2.SubstitutionFormatString(
                json_format=_struct({**NOT_FOUND_PROBLEM, "request_id": "%REQ(X-REQUEST-ID)%"}),
                content_type=contract.PROBLEM_CONTENT_TYPE,
            ),
        ),
        response_headers_to_add=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(
                    key=contract.CONTENT_TYPE_HEADER, value=contract.PROBLEM_CONTENT_TYPE
                ),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ],
    )
    route.typed_per_filter_config[EXT_AUTHZ_FILTER].Pack(ext_authz_pb2.ExtAuthzPerRoute(disabled=True))
    return route


def route_configuration(routes: Sequence[route_components_pb2.Route]) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=ROUTE_CONFIG_NAME,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="tollway", domains=["*"], routes=[*routes, not_found_route()]
            )
        ],
    )


def _http_filter(name: str, config: Message) -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=name, typed_config=_packed(config))


def ext_authz_filter(options: GatewayOptions) -> hcm_pb2.HttpFilter:
    return _http_filter(
        EXT_AUTHZ_FILTER,
        ext_authz_pb2.ExtAuthz(
            grpc_service=grpc_service(KEYMGR_CLUSTER, options.authz_timeout_ms, link=options.envoy_link),
            transport_api_version=config_source_pb2.V3,
            # Only what Check reads (the key's two headers, the request id) goes to keymgr: no cookie
            # or other credential of the client's leaves the gateway, and each Check is smaller to
            # build and to decode.
            allowed_headers=string_pb2.ListStringMatcher(
                patterns=[string_pb2.StringMatcher(exact=name) for name in contract.CHECK_HEADERS]
            ),
            failure_mode_allow=options.authz_failure_mode_allow,
            status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.ServiceUnavailable),
        ),
    )


def usage_groups(options: GatewayOptions) -> list[tuple[str, tuple[HostPort, ...]]]:
    """(cluster name, endpoints) per copy of the access log: endpoint i in group i mod copies, so no
    two copies of an entry go to the same usage process."""
    copies = max(1, min(options.usage_copies, len(options.usage_endpoints)))
    return [
        (USAGE_CLUSTER if group == 0 else f"{USAGE_CLUSTER}_{group}", options.usage_endpoints[group::copies])
        for group in range(copies)
    ]


def access_log(link: EnvoyLink, cluster: str = USAGE_CLUSTER) -> accesslog_pb2.AccessLog:
    config = als_pb2.HttpGrpcAccessLogConfig(
        common_config=als_pb2.CommonGrpcAccessLogConfig(
            log_name=ACCESS_LOG_NAME,
            grpc_service=grpc_service(cluster, link=link),
            transport_api_version=config_source_pb2.V3,
        )
    )
    return accesslog_pb2.AccessLog(name=GRPC_ACCESS_LOG, typed_config=_packed(config))


def http_connection_manager(options: GatewayOptions) -> hcm_pb2.HttpConnectionManager:
    return hcm_pb2.HttpConnectionManager(
        stat_prefix=LISTENER_NAME,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(
            route_config_name=ROUTE_CONFIG_NAME,
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
        ),
        http_filters=[
            ext_authz_filter(options),
            *options.extra_http_filters,
            _http_filter(ROUTER_FILTER, router_pb2.Router()),
        ],
        access_log=[access_log(options.envoy_link, cluster) for cluster, _ in usage_groups(options)],
        # Envoy is the edge: the client address is the peer's, and every request gets its own id.
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        generate_request_id=wrappers_pb2.BoolValue(value=True),
        always_set_request_id_in_response=True,
        # Route matching on canonical paths, so /weather/./v1 or //weather/v1 cannot dodge a prefix.
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=True,
    )


def listener(options: GatewayOptions) -> listener_pb2.Listener:
    built = listener_pb2.Listener(
        name=LISTENER_NAME,
        address=socket_address(options.listener_host, options.listener_port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name=HCM_FILTER, typed_config=_packed(http_connection_manager(options))
                    )
                ]
            )
        ],
    )
    if options.tls:
        built.filter_chains[0].transport_socket.CopyFrom(downstream_tls_socket())
    return built


def _unique_by_name(messages: Iterable[Message], kind: str) -> dict[str, Message]:
    by_name: dict[str, Message] = {}
    for message in messages:
        name = message.name  # type: ignore[attr-defined]
        if not name:
            raise ValueError(f"a {kind} has no name")
        if name in by_name:
            raise ValueError(f"two {kind}s are named {name!r}")
        by_name[name] = message
    return by_name


def validate_resources(resources: Resources) -> None:
    """Fails loudly on a message Envoy could not even decode: unknown type, unnamed, unpackable."""
    for type_url, by_name in resources.items():
        if type_url not in TYPE_ORDER:
            raise ValueError(f"unsupported resource type {type_url}")
        for name, message in by_name.items():
            if f"type.googleapis.com/{message.DESCRIPTOR.full_name}" != type_url:
                raise ValueError(f"{name!r} is a {message.DESCRIPTOR.full_name}, not a {type_url}")
            if getattr(message, "name", None) != name:
                raise ValueError(f"resource {name!r} carries the name {getattr(message, 'name', None)!r}")
            # A round trip through Any is exactly what the wire will do to it.
            unpacked = type(message)()
            if not _packed(message).Unpack(unpacked) or unpacked != message:
                raise ValueError(f"{name!r} does not survive packing")


def build_resources(
    apis: Sequence[PublishedApi], options: GatewayOptions, tls_pair: TlsPair | None = None
) -> Resources:
    """CDS, LDS and RDS resources for the given published APIs (and SDS: the gateway's certificate,
    `tls_pair`, when the listener serves HTTPS)."""
    if options.tls and tls_pair is None:
        raise ValueError("an HTTPS listener needs its certificate and key (tls_pair)")
    # Longest context path first: /weather/v1 must win over /weather for /weather/v1/today.
    ordered = sorted(apis, key=lambda api: (-len(api.context_path), api.context_path))
    seen_paths: set[str] = set()
    routes: list[route_components_pb2.Route] = []
    api_clusters: list[cluster_pb2.Cluster] = []
    for api in ordered:
        if api.context_path in seen_paths:
            raise ValueError(f"two APIs are published at {api.context_path}")
        seen_paths.add(api.context_path)
        upstreams = [parse_upstream(url) for url in api.upstream_urls]
        if not upstreams:
            raise ValueError(f"API {api.id} has no upstream URL")
        routes.append(api_route(api, upstreams, options))
        api_clusters.append(api_cluster(api.id, upstreams, options))
    clusters = [
        grpc_service_cluster(
            KEYMGR_CLUSTER,
            options.keymgr_endpoints,
            link=options.envoy_link,
            health_service=contract.AUTHORIZATION_SERVICE,
        ),
        *(
            grpc_service_cluster(
                name, endpoints, link=options.envoy_link, health_service=contract.ACCESS_LOG_SERVICE
            )
            for name, endpoints in usage_groups(options)
        ),
        *api_clusters,
        *options.extra_clusters,
    ]
    listeners = [listener(options)]
    if options.http_redirect is not None:
        listeners.append(redirect_listener(*options.http_redirect, https_port=options.listener_port))
    resources: Resources = {
        CLUSTER_TYPE: _unique_by_name(clusters, "cluster"),
        LISTENER_TYPE: _unique_by_name(listeners, "listener"),
        ROUTE_TYPE: _unique_by_name([route_configuration(routes)], "route configuration"),
    }
    if options.tls and tls_pair is not None:
        resources[SECRET_TYPE] = {GATEWAY_SECRET_NAME: gateway_secret(tls_pair)}
    validate_resources(resources)
    return resources
