"""What Envoy needs to call the throttle: the ratelimit HTTP filter (into GatewayOptions'
extra_http_filters slot, after ext_authz), the tollway_throttle cluster, and the route rate_limits
actions that turn ext_authz's dynamic metadata into one descriptor per request (keys and domain from
tollway.envoy_contract):

    (subscription_id, S) (plan_id, P) (application_id, A) (api_id, X)

Requests ext_authz did not annotate (metadata absent) produce no descriptor and are not limited."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.ratelimit.v3 import rls_pb2 as rls_config_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.metadata.v3 import metadata_pb2
from envoy.type.v3 import http_status_pb2

from tollway.envoy_auth import EnvoyLink
from tollway.envoy_contract import (
    DESCRIPTOR_KEYS,
    EXT_AUTHZ_NAMESPACE,
    RATE_LIMIT_SERVICE,
    RATELIMIT_FILTER,
    RLS_DOMAIN,
)
from tollway.envoy_resources import grpc_service, grpc_service_cluster
from tollway.vocabulary import FailureMode

THROTTLE_CLUSTER = "tollway_throttle"


def ratelimit_filter(timeout_ms: int, failure_mode: str, link: EnvoyLink) -> hcm_pb2.HttpFilter:
    config = rate_limit_pb2.RateLimit(
        domain=RLS_DOMAIN,
        request_type="external",
        failure_mode_deny=failure_mode == FailureMode.DENY,
        # When the throttle cannot answer in fail-closed mode: 503, not Envoy's default 500.
        status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.ServiceUnavailable),
        # X-RateLimit-* come from the throttle's answer (throttle/headers.py: every window), not from
        # Envoy's derivation (one window per descriptor).
        rate_limit_service=rls_config_pb2.RateLimitServiceConfig(
            grpc_service=grpc_service(THROTTLE_CLUSTER, link=link),
            transport_api_version=config_source_pb2.V3,
        ),
    )
    config.timeout.FromMilliseconds(timeout_ms)
    filter_ = hcm_pb2.HttpFilter(name=RATELIMIT_FILTER)
    filter_.typed_config.Pack(config)
    return filter_


def _metadata_action(key: str) -> route_components_pb2.RateLimit.Action:
    return route_components_pb2.RateLimit.Action(
        metadata=route_components_pb2.RateLimit.Action.MetaData(
            descriptor_key=key,
            metadata_key=metadata_pb2.MetadataKey(
                key=EXT_AUTHZ_NAMESPACE, path=[metadata_pb2.MetadataKey.PathSegment(key=key)]
            ),
            source=route_components_pb2.RateLimit.Action.MetaData.DYNAMIC,
        )
    )


def route_rate_limits() -> tuple[route_components_pb2.RateLimit, ...]:
    return (route_components_pb2.RateLimit(actions=[_metadata_action(key) for key in DESCRIPTOR_KEYS]),)


def throttle_cluster(endpoints: Sequence[tuple[str, int]], link: EnvoyLink) -> cluster_pb2.Cluster:
    return grpc_service_cluster(THROTTLE_CLUSTER, endpoints, link=link, health_service=RATE_LIMIT_SERVICE)
