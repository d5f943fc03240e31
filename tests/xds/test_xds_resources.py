"""build_resources: what Envoy is told for 0, 1 and several APIs."""

from __future__ import annotations

import json
import re

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from tollway.catalog.view import PublishedApi
from tollway.envoy_contract import EXT_AUTHZ_FILTER
from tollway.envoy_resources import HTTP_PROTOCOL_OPTIONS
from xds.resources import (
    CLUSTER_TYPE,
    KEYMGR_CLUSTER,
    LISTENER_NAME,
    LISTENER_TYPE,
    ROUTE_CONFIG_NAME,
    ROUTE_TYPE,
    USAGE_CLUSTER,
    GatewayOptions,
    build_resources,
    parse_upstream,
    path_rewrite,
)

OPTIONS = GatewayOptions(
    listener_host="127.0.0.1",
    listener_port=8080,
    keymgr_endpoints=(("127.0.0.1", 18000), ("127.0.0.1", 18001)),
    usage_endpoints=(("usage.internal", 18000),),
    upstream_ca_file="/etc/test-ca.pem",
)


def api(api_id: str, context_path: str, *urls: str) -> PublishedApi:
    return PublishedApi(
        id=api_id, name=f"{api_id}-name", version="v9", context_path=context_path, upstream_urls=urls
    )


def hcm_of(resources: dict) -> hcm_pb2.HttpConnectionManager:
    listener = resources[LISTENER_TYPE][LISTENER_NAME]
    hcm = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


def routes_of(resources: dict) -> list[route_components_pb2.Route]:
    (virtual_host,) = resources[ROUTE_TYPE][ROUTE_CONFIG_NAME].virtual_hosts
    assert list(virtual_host.domains) == ["*"]
    return list(virtual_host.routes)


def per_route_authz(route: route_components_pb2.Route) -> ext_authz_pb2.ExtAuthzPerRoute:
    config = ext_authz_pb2.ExtAuthzPerRoute()
    assert route.typed_per_filter_config[EXT_AUTHZ_FILTER].Unpack(config)
    return config


def test_no_apis_still_gives_listener_404_and_service_clusters() -> None:
    resources = build_resources([], OPTIONS)
    assert set(resources) == {CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE}
    assert set(resources[CLUSTER_TYPE]) == {KEYMGR_CLUSTER, USAGE_CLUSTER}
    (not_found,) = routes_of(resources)
    assert not_found.match.prefix == "/"
    assert not_found.direct_response.status == 404
    body = json.loads(not_found.direct_response.body.inline_string)
    assert body["status"] == 404 and {"type", "title", "detail", "reason"} <= body.keys()
    formatted = not_found.direct_response.body_format
    assert formatted.content_type == "application/problem+json"
    assert dict(formatted.json_format)["request_id"] == "%REQ(X-REQUEST-ID)%"
    assert [(h.header.key, h.header.value) for h in not_found.response_headers_to_add] == [
        ("content-type", "application/problem+json")
    ]
    assert per_route_authz(not_found).disabled


def test_listener_filters_access_log_and_request_ids() -> None:
    hcm = hcm_of(build_resources([], OPTIONS))
    listener = build_resources([], OPTIONS)[LISTENER_TYPE][LISTENER_NAME]
    assert listener.address.socket_address.port_value == 8080
    assert hcm.rds.route_config_name == ROUTE_CONFIG_NAME
    assert hcm.rds.config_source.HasField("ads")
    assert hcm.rds.config_source.resource_api_version == config_source_pb2.V3
    assert [f.name for f in hcm.http_filters] == [EXT_AUTHZ_FILTER, "envoy.filters.http.router"]
    assert hcm.use_remote_address.value and hcm.generate_request_id.value

    authz = ext_authz_pb2.ExtAuthz()
    assert hcm.http_filters[0].typed_config.Unpack(authz)
    assert authz.grpc_service.envoy_grpc.cluster_name == KEYMGR_CLUSTER
    assert authz.grpc_service.timeout.ToMilliseconds() == 250
    assert authz.transport_api_version == config_source_pb2.V3
    assert not authz.failure_mode_allow
    assert authz.status_on_error.code == 503

    (access_log,) = hcm.access_log
    assert access_log.name == "envoy.access_loggers.http_grpc"
    als = als_pb2.HttpGrpcAccessLogConfig()
    assert access_log.typed_config.Unpack(als)
    assert als.common_config.log_name == "tollway"
    assert als.common_config.grpc_service.envoy_grpc.cluster_name == USAGE_CLUSTER
    assert als.common_config.transport_api_version == config_source_pb2.V3


def test_extra_filter_goes_between_ext_authz_and_router_with_its_cluster() -> None:
    ratelimit = hcm_pb2.HttpFilter(name="envoy.filters.http.local_ratelimit")
    ratelimit.typed_config.Pack(local_rate_limit_pb2.LocalRateLimit(stat_prefix="test"))
    throttle = cluster_pb2.Cluster(name="tollway_throttle")
    options = GatewayOptions(
        keymgr_endpoints=OPTIONS.keymgr_endpoints,
        usage_endpoints=OPTIONS.usage_endpoints,
        extra_http_filters=(ratelimit,),
        extra_clusters=(throttle,),
        authz_failure_mode_allow=True,
        authz_timeout_ms=80,
    )
    resources = build_resources([], options)
    hcm = hcm_of(resources)
    assert [f.name for f in hcm.http_filters] == [
        EXT_AUTHZ_FILTER,
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.router",
    ]
    assert "tollway_throttle" in resources[CLUSTER_TYPE]
    authz = ext_authz_pb2.ExtAuthz()
    hcm.http_filters[0].typed_config.Unpack(authz)
    assert authz.failure_mode_allow and authz.grpc_service.timeout.ToMilliseconds() == 80


def test_one_api_route_cluster_and_context_extensions() -> None:
    resources = build_resources([api("w1", "/weather/v1", "http://10.0.0.5:9000/base/")], OPTIONS)
    route, not_found = routes_of(resources)
    assert not_found.name == "tollway_not_found"
    assert route.match.path_separated_prefix == "/weather/v1"
    assert route.route.cluster == "api_w1"
    assert route.route.regex_rewrite.pattern.regex == "^/weather/v1"
    assert route.route.regex_rewrite.substitution == "/base"
    assert route.route.host_rewrite_literal == "10.0.0.5:9000"
    assert route.route.timeout.seconds == 30
    assert dict(per_route_authz(route).check_settings.context_extensions) == {
        "api_id": "w1",
        "api_name": "w1-name",
        "api_version": "v9",
    }

    cluster = resources[CLUSTER_TYPE]["api_w1"]
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert cluster.connect_timeout.seconds == 2
    (endpoint,) = cluster.load_assignment.endpoints[0].lb_endpoints
    assert endpoint.endpoint.address.socket_address.address == "10.0.0.5"
    assert endpoint.endpoint.address.socket_address.port_value == 9000
    assert not cluster.HasField("transport_socket")


def test_several_apis_longest_context_path_first() -> None:
    apis = [
        api("a", "/weather", "http://a.example"),
        api("b", "/weather/v1/beta", "http://b.example"),
        api("c", "/weather/v1", "http://c.example"),
        api("d", "/maps", "http://d.example"),
    ]
    names = [r.name for r in routes_of(build_resources(apis, OPTIONS))]
    assert names == ["api_b", "api_c", "api_a", "api_d", "tollway_not_found"]
    assert set(build_resources(apis, OPTIONS)[CLUSTER_TYPE]) == {
        KEYMGR_CLUSTER,
        USAGE_CLUSTER,
        "api_a",
        "api_b",
        "api_c",
        "api_d",
    }


def test_https_upstreams_get_tls_with_sni_and_san_checks() -> None:
    resources = build_resources(
        [
            api("one", "/one", "https://secure.example/v2"),
            api("two", "/two", "https://a.example:8443/p", "https://b.example/p"),
        ],
        OPTIONS,
    )
    one = resources[CLUSTER_TYPE]["api_one"]
    assert one.transport_socket.name == "envoy.transport_sockets.tls"
    tls = tls_pb2.UpstreamTlsContext()
    assert one.transport_socket.typed_config.Unpack(tls)
    assert tls.sni == "secure.example"
    validation = tls.common_tls_context.validation_context
    assert validation.trusted_ca.filename == "/etc/test-ca.pem"
    assert [m.matcher.exact for m in validation.match_typed_subject_alt_names] == ["secure.example"]
    assert one.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value == 443

    two = resources[CLUSTER_TYPE]["api_two"]
    tls_two = tls_pb2.UpstreamTlsContext()
    two.transport_socket.typed_config.Unpack(tls_two)
    assert tls_two.auto_host_sni and not tls_two.sni
    route_one, route_two = (r for r in routes_of(resources) if r.name in ("api_one", "api_two"))
    assert route_one.route.host_rewrite_literal == "secure.example"
    # Two hosts: each request names the endpoint it is sent to.
    assert route_two.route.auto_host_rewrite.value
    hostnames = [e.endpoint.hostname for e in two.load_assignment.endpoints[0].lb_endpoints]
    assert hostnames == ["a.example", "b.example"]


def test_service_clusters_speak_http2() -> None:
    resources = build_resources([], OPTIONS)
    keymgr = resources[CLUSTER_TYPE][KEYMGR_CLUSTER]
    usage = resources[CLUSTER_TYPE][USAGE_CLUSTER]
    assert keymgr.type == cluster_pb2.Cluster.STATIC
    assert usage.type == cluster_pb2.Cluster.STRICT_DNS  # a name needs DNS
    assert len(keymgr.load_assignment.endpoints[0].lb_endpoints) == 2
    for cluster in (keymgr, usage):
        options = http_protocol_options_pb2.HttpProtocolOptions()
        assert cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
        assert options.explicit_http_config.HasField("http2_protocol_options")


@pytest.mark.parametrize(
    ("context_path", "upstream_path", "request_path", "expected"),
    [
        ("/weather/v1", "/base", "/weather/v1/today", "/base/today"),
        ("/weather/v1", "/base", "/weather/v1", "/base"),
        ("/weather/v1", "", "/weather/v1", "/"),
        ("/weather/v1", "", "/weather/v1/", "/"),
        ("/weather/v1", "", "/weather/v1/a/b", "/a/b"),
        ("/w.x+y/v1", "/b", "/w.x+y/v1/z", "/b/z"),
    ],
)
def test_path_rewrite(context_path: str, upstream_path: str, request_path: str, expected: str) -> None:
    rewrite = path_rewrite(context_path, upstream_path)
    # RE2 and Python agree on these patterns; the real-Envoy tests check the same thing end to end.
    substitution = rewrite.substitution.replace("\\\\", "\\")
    assert re.sub(rewrite.pattern.regex, lambda _: substitution, request_path, count=1) == expected


def test_parse_upstream() -> None:
    assert parse_upstream("http://h:1/base/").path == "/base"
    assert parse_upstream("https://h").port == 443
    assert parse_upstream("http://[::1]:8080").authority == "[::1]:8080"
    assert parse_upstream("https://h:443/x").authority == "h"
    with pytest.raises(ValueError, match="scheme"):
        parse_upstream("ftp://h/")


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="two APIs"):
        build_resources([api("a", "/x", "http://h"), api("b", "/x", "http://h")], OPTIONS)
    with pytest.raises(ValueError, match="named"):
        build_resources([api("a", "/x", "http://h"), api("a", "/y", "http://h")], OPTIONS)
    with pytest.raises(ValueError, match="named 'tollway_keymgr'"):
        build_resources(
            [],
            GatewayOptions(
                keymgr_endpoints=OPTIONS.keymgr_endpoints,
                usage_endpoints=OPTIONS.usage_endpoints,
                extra_clusters=(cluster_pb2.Cluster(name=KEYMGR_CLUSTER),),
            ),
        )
    with pytest.raises(ValueError, match="at least one"):
        GatewayOptions(keymgr_endpoints=(), usage_endpoints=OPTIONS.usage_endpoints)
    with pytest.raises(ValueError, match="CA bundle"):
        build_resources(
            [api("s", "/s", "https://h")],
            GatewayOptions(
                keymgr_endpoints=OPTIONS.keymgr_endpoints,
                usage_endpoints=OPTIONS.usage_endpoints,
                upstream_ca_file=None,
            ),
        )
