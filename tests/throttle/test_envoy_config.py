"""What Envoy is told about the throttle: filter, cluster and route descriptors (GatewayOptions'
route_rate_limits option of xds/resources.py), as the runner assembles them from Settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.v3 import http_status_pb2

from throttle.envoy_config import THROTTLE_CLUSTER, route_rate_limits
from tollway.app.registry import gateway_options
from tollway.catalog.view import PublishedApi
from tollway.envoy_contract import DESCRIPTOR_KEYS, EXT_AUTHZ_FILTER, RATELIMIT_FILTER
from tollway.settings import Settings
from tollway.vocabulary import ThrottleMode
from xds.resources import (
    CLUSTER_TYPE,
    LISTENER_NAME,
    LISTENER_TYPE,
    ROUTE_CONFIG_NAME,
    ROUTE_TYPE,
    GatewayOptions,
    build_resources,
)

API = PublishedApi(
    id="api_1", name="w", version="v1", context_path="/w/v1", upstream_urls=("http://10.0.0.1:80",)
)


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path, grpc_addr="127.0.0.1:18500", **overrides).resolved()  # type: ignore[arg-type]


def _hcm(resources: dict) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager()
    resources[LISTENER_TYPE][LISTENER_NAME].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


def test_ratelimit_filter_sits_between_ext_authz_and_router(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ratelimit_timeout_ms=120, ratelimit_failure_mode="deny")
    resources = build_resources([API], gateway_options(settings))
    hcm = _hcm(resources)
    assert [f.name for f in hcm.http_filters] == [
        EXT_AUTHZ_FILTER,
        RATELIMIT_FILTER,
        "envoy.filters.http.router",
    ]
    config = rate_limit_pb2.RateLimit()
    assert hcm.http_filters[1].typed_config.Unpack(config)
    assert config.domain == "tollway"
    assert config.timeout.ToMilliseconds() == 120
    assert config.failure_mode_deny is True
    assert config.status_on_error.code == http_status_pb2.ServiceUnavailable
    # The throttle's answer carries X-RateLimit-* with every window; Envoy's derivation (one window per
    # descriptor) stays off.
    assert config.enable_x_ratelimit_headers == rate_limit_pb2.RateLimit.OFF
    assert config.rate_limit_service.grpc_service.envoy_grpc.cluster_name == THROTTLE_CLUSTER
    cluster = resources[CLUSTER_TYPE][THROTTLE_CLUSTER]
    (endpoint,) = cluster.load_assignment.endpoints[0].lb_endpoints
    assert endpoint.endpoint.address.socket_address.port_value == 18500


def test_failure_mode_allow_and_own_throttle_endpoints(tmp_path: Path) -> None:
    settings = _settings(tmp_path, throttle_endpoints=(("10.1.1.1", 7000), ("10.1.1.2", 7000)))
    resources = build_resources([API], gateway_options(settings))
    config = rate_limit_pb2.RateLimit()
    _hcm(resources).http_filters[1].typed_config.Unpack(config)
    assert config.failure_mode_deny is False
    endpoints = resources[CLUSTER_TYPE][THROTTLE_CLUSTER].load_assignment.endpoints[0].lb_endpoints
    assert [e.endpoint.address.socket_address.address for e in endpoints] == ["10.1.1.1", "10.1.1.2"]


def test_api_routes_carry_descriptors_from_ext_authz_metadata(tmp_path: Path) -> None:
    resources = build_resources([API], gateway_options(_settings(tmp_path)))
    api_route, not_found = resources[ROUTE_TYPE][ROUTE_CONFIG_NAME].virtual_hosts[0].routes
    (rate_limit,) = api_route.route.rate_limits
    actions = [action.metadata for action in rate_limit.actions]
    assert [a.descriptor_key for a in actions] == list(DESCRIPTOR_KEYS)
    for action in actions:
        assert action.source == route_components_pb2.RateLimit.Action.MetaData.DYNAMIC
        assert action.metadata_key.key == "envoy.filters.http.ext_authz"
        assert [segment.key for segment in action.metadata_key.path] == [action.descriptor_key]
    # 404s for unknown paths are Envoy's own answer: nothing to count.
    assert not not_found.HasField("route")


def test_without_the_option_routes_have_no_rate_limits() -> None:
    options = GatewayOptions(keymgr_endpoints=(("127.0.0.1", 1),), usage_endpoints=(("127.0.0.1", 1),))
    resources = build_resources([API], options)
    assert not resources[ROUTE_TYPE][ROUTE_CONFIG_NAME].virtual_hosts[0].routes[0].route.rate_limits
    with_limits = GatewayOptions(
        keymgr_endpoints=options.keymgr_endpoints,
        usage_endpoints=options.usage_endpoints,
        route_rate_limits=list(route_rate_limits()),  # lists are accepted and frozen
    )
    assert isinstance(with_limits.route_rate_limits, tuple)
    route = build_resources([API], with_limits)[ROUTE_TYPE][ROUTE_CONFIG_NAME].virtual_hosts[0].routes[0]
    assert len(route.route.rate_limits) == 1


def test_settings_read_the_throttle_environment() -> None:
    settings = Settings.from_env(
        {
            "TOLLWAY_DATA_DIR": "/tmp/tollway-settings-test",
            "TOLLWAY_ADMIN_TOKEN": "t",
            "TOLLWAY_KEY_HASH_SECRET": "s",
            "TOLLWAY_RATELIMIT_STORE": "Redis",
            "TOLLWAY_REDIS_URL": "redis://10.0.0.9:6380/2",
            "TOLLWAY_REDIS_TIMEOUT_MS": "30",
            "TOLLWAY_RATELIMIT_FAILURE_MODE": "deny",
            "TOLLWAY_THROTTLE_ENDPOINTS": "10.0.0.7:18000",
            "TOLLWAY_RATELIMIT_TIMEOUT_MS": "90",
        }
    )
    assert (settings.ratelimit_store, settings.redis_url, settings.redis_timeout_ms) == (
        "redis",
        "redis://10.0.0.9:6380/2",
        30,
    )
    assert settings.ratelimit_failure_mode == "deny"
    assert settings.throttle_endpoints == (("10.0.0.7", 18000),)
    assert settings.ratelimit_timeout_ms == 90
    with pytest.raises(ValueError):
        Settings.from_env({"TOLLWAY_RATELIMIT_STORE": "memcached", "TOLLWAY_DATA_DIR": "/tmp/x"})
    with pytest.raises(ValueError):
        Settings.from_env({"TOLLWAY_RATELIMIT_FAILURE_MODE": "maybe", "TOLLWAY_DATA_DIR": "/tmp/x"})


def test_fused_mode_tells_envoy_of_no_ratelimit_filter_cluster_or_descriptors(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"TOLLWAY_DATA_DIR": str(tmp_path), "TOLLWAY_THROTTLE_MODE": "AuthZ", "TOLLWAY_ADMIN_TOKEN": "t"}
    )
    assert settings.throttle_mode == ThrottleMode.AUTHZ
    assert settings.keymgr.applies_limits and settings.throttle.mode == ThrottleMode.AUTHZ
    resources = build_resources([API], gateway_options(settings))
    assert [f.name for f in _hcm(resources).http_filters] == [EXT_AUTHZ_FILTER, "envoy.filters.http.router"]
    assert THROTTLE_CLUSTER not in resources[CLUSTER_TYPE]
    api_route = resources[ROUTE_TYPE][ROUTE_CONFIG_NAME].virtual_hosts[0].routes[0]
    assert not api_route.route.rate_limits
    # The default mode is the two-call chain.
    default = Settings.from_env({"TOLLWAY_DATA_DIR": str(tmp_path), "TOLLWAY_ADMIN_TOKEN": "t"})
    assert default.throttle_mode == ThrottleMode.RATELIMIT and not default.keymgr.applies_limits
    with pytest.raises(ValueError, match="ratelimit, authz"):
        Settings.from_env({"TOLLWAY_THROTTLE_MODE": "fused", "TOLLWAY_DATA_DIR": str(tmp_path)})
