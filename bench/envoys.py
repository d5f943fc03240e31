"""Envoy configurations of the gateway benchmark, static (no control plane at run time):

- the upstream: an Envoy of its own answering every request with a fixed 200 (direct_response), so
  the API behind the gateway costs next to nothing and never sets the pace;
- the gateways A, B, N and F: Tollway's own listener, route and clusters, built by the same code xds/
  pushes to Envoy (xds.resources.build_resources with the options a Tollway process would use), with
  only the filter chain changed. A: no filters; B: Envoy's api_key_auth and local_ratelimit; N: the
  ext_authz, ratelimit and gRPC access log exactly as Tollway configures them, pointed at the no-op
  services; F: as N without the ratelimit filter. So every row measures the same listener and route,
  and C - N is Tollway's Python and nothing else.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from envoy.extensions.filters.http.api_key_auth.v3 import api_key_auth_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from tollway import envoy_contract as contract
from tollway.app.registry import gateway_options
from tollway.catalog.view import PublishedApi
from tollway.envoy import EnvoyProcess, bootstrap_config
from tollway.settings import Settings
from xds.resources import (
    CLUSTER_TYPE,
    LISTENER_NAME,
    LISTENER_TYPE,
    ROUTE_CONFIG_NAME,
    ROUTE_TYPE,
    ROUTER_FILTER,
    build_resources,
)

# The API every scenario serves, at the same path.
API = PublishedApi(
    id="api_bench",
    name="bench",
    version="v1",
    context_path="/bench/v1",
    upstream_urls=("http://127.0.0.1:9",),
)
REQUEST_PATH = f"{API.context_path}/hello"
UPSTREAM_BODY = '{"hello": "bench"}\n'
API_KEY_AUTH_FILTER = "envoy.filters.http.api_key_auth"
LOCAL_RATELIMIT_FILTER = "envoy.filters.http.local_ratelimit"
# The gateway filters of each static scenario ("tollway": all Tollway's, "authz": without ratelimit).
CHAINS = ("none", "apikey", "tollway", "authz")


def _dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _static_bootstrap(
    node: str, listeners: list[dict[str, Any]], clusters: list[dict[str, Any]]
) -> dict[str, Any]:
    """Tollway's bootstrap (node, admin on a free port, the downstream connection ceiling) with static
    resources instead of ADS."""
    bootstrap = bootstrap_config(node_id=node, node_cluster="tollway-bench", ads_host="127.0.0.1", ads_port=1,
                                 admin_port=0)  # fmt: skip
    del bootstrap["dynamic_resources"]
    bootstrap["static_resources"] = {"listeners": listeners, "clusters": clusters}
    return bootstrap


def upstream_bootstrap(port: int) -> dict[str, Any]:
    """An Envoy answering every request on 127.0.0.1:`port` with 200 and a short JSON body."""
    route_config = {
        "virtual_hosts": [
            {
                "name": "upstream",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": UPSTREAM_BODY}},
                        "response_headers_to_add": [
                            {"header": {"key": "content-type", "value": "application/json"}}
                        ],
                    }
                ],
            }
        ]
    }
    hcm = {
        "@type": f"type.googleapis.com/{hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name}",
        "stat_prefix": "upstream",
        "route_config": route_config,
        "http_filters": [_dict(_filter(ROUTER_FILTER, router_pb2.Router()))],
    }
    listener = {
        "name": "upstream",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}],
    }  # fmt: skip
    return _static_bootstrap("bench-upstream", [listener], [])


def _filter(name: str, config: Message) -> hcm_pb2.HttpFilter:
    http_filter = hcm_pb2.HttpFilter(name=name)
    http_filter.typed_config.Pack(config)
    return http_filter


def _api_key_auth(key: str) -> hcm_pb2.HttpFilter:
    return _filter(
        API_KEY_AUTH_FILTER,
        api_key_auth_pb2.ApiKeyAuth(
            credentials=[api_key_auth_pb2.Credential(key=key, client="bench")],
            key_sources=[api_key_auth_pb2.KeySource(header=contract.API_KEY_HEADER)],
        ),
    )


def _local_ratelimit(per_second: int) -> hcm_pb2.HttpFilter:
    everything = percent_pb2.FractionalPercent(
        numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
    )
    config = local_rate_limit_pb2.LocalRateLimit(
        stat_prefix="bench",
        token_bucket=token_bucket_pb2.TokenBucket(max_tokens=per_second),
        enable_x_ratelimit_headers=rate_limit_pb2.RateLimit.DRAFT_VERSION_03,
    )
    config.token_bucket.tokens_per_fill.value = per_second
    config.token_bucket.fill_interval.FromSeconds(1)
    config.filter_enabled.default_value.CopyFrom(everything)
    config.filter_enabled.runtime_key = "bench_local_ratelimit_enabled"
    config.filter_enforced.default_value.CopyFrom(everything)
    config.filter_enforced.runtime_key = "bench_local_ratelimit_enforced"
    return _filter(LOCAL_RATELIMIT_FILTER, config)


def link_settings(
    data_dir: Path,
    envoy_auth: str,
    listener_port: int = 8080,
    services: tuple[str, int] = ("127.0.0.1", 1),
    timeouts_ms: tuple[int, int] = (0, 0),
) -> Settings:
    """Settings as a Tollway process with them would push them to Envoy: the listener on
    127.0.0.1:`listener_port`; ext_authz, ratelimit and the access log reaching `services` over the
    Envoy-facing link `envoy_auth` (its PKI or token kept in `data_dir`), with Tollway's default
    deadlines unless `timeouts_ms` (ext_authz, ratelimit) says otherwise."""
    authz_ms, ratelimit_ms = timeouts_ms
    defaults = Settings()
    return Settings(
        data_dir=data_dir,
        envoy_auth=envoy_auth,
        gateway_addr=f"127.0.0.1:{listener_port}",
        keymgr_endpoints=(services,),
        usage_endpoints=(services,),
        throttle_endpoints=(services,),
        authz_timeout_ms=authz_ms or defaults.authz_timeout_ms,
        ratelimit_timeout_ms=ratelimit_ms or defaults.ratelimit_timeout_ms,
    ).resolved()


def gateway_bootstrap(
    chain: str, settings: Settings, upstream_port: int, api_key: str = "", per_second: int = 1_000_000
) -> dict[str, Any]:
    """Tollway's listener as `settings` (link_settings) describe it, with the filter chain `chain` (one
    of CHAINS), before an upstream on 127.0.0.1:`upstream_port`; B's key is `api_key`, its bucket
    `per_second`."""
    if chain not in CHAINS:
        raise ValueError(f"unknown chain {chain!r}; one of {', '.join(CHAINS)}")
    options = gateway_options(settings)
    if chain != "tollway":
        options = dataclasses.replace(options, extra_http_filters=(), extra_clusters=(), route_rate_limits=())
    api = dataclasses.replace(API, upstream_urls=(f"http://127.0.0.1:{upstream_port}",))
    resources = build_resources([api], options)
    route_config = resources[ROUTE_TYPE][ROUTE_CONFIG_NAME]
    listener = resources[LISTENER_TYPE][LISTENER_NAME]
    hcm = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)  # type: ignore[attr-defined]
    # Static: the route table inline instead of from ADS.
    hcm.ClearField("rds")
    hcm.route_config.CopyFrom(route_config)
    clusters = list(resources[CLUSTER_TYPE].values())
    if chain in ("none", "apikey"):
        router = _filter(ROUTER_FILTER, router_pb2.Router())
        filters = (
            [router] if chain == "none" else [_api_key_auth(api_key), _local_ratelimit(per_second), router]
        )
        hcm.ClearField("http_filters")
        hcm.http_filters.extend(filters)
        hcm.ClearField("access_log")
        # Nothing left that calls Tollway's services: only the API's cluster.
        clusters = [c for c in clusters if c.name.startswith("api_")]  # type: ignore[attr-defined]
        for virtual_host in hcm.route_config.virtual_hosts:
            for route in virtual_host.routes:
                route.typed_per_filter_config.clear()
    listener.filter_chains[0].filters[0].typed_config.Pack(hcm)  # type: ignore[attr-defined]
    return _static_bootstrap(f"bench-{chain}", [_dict(listener)], [_dict(c) for c in clusters])


def start_envoy(bootstrap: dict[str, Any], work_dir: Path, concurrency: int) -> EnvoyProcess:
    """Starts an Envoy with `bootstrap` and returns once it is LIVE."""
    envoy = EnvoyProcess(bootstrap, work_dir=work_dir, concurrency=concurrency, log_level="warning")
    envoy.start()
    try:
        envoy.wait_ready(30.0)
    except BaseException:
        envoy.stop()
        raise
    return envoy
