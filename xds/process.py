"""xds/ inside a Tollway process: the Aggregated Discovery Service on the Envoy-facing server, and a
new snapshot of Envoy's configuration built from the catalog after every committed change."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial

from envoy.service.discovery.v3 import ads_pb2, ads_pb2_grpc
from prometheus_client.registry import Collector

from tollway.catalog.store import CatalogStore
from tollway.change_log import Topic
from tollway.changes import ChangeListener, ReloadOnChange
from tollway.component import (
    GatewayContribution,
    GrpcService,
    RunningComponent,
    service_name,
)
from tollway.metrics import FunctionCollector
from tollway.settings import GatewaySettings
from xds.cache import SnapshotCache
from xds.metrics import collect as collect_metrics
from xds.resources import GatewayOptions, build_resources
from xds.server import AggregatedDiscoveryServicer


def gateway_options(settings: GatewaySettings, contribution: GatewayContribution) -> GatewayOptions:
    """The gateway's options: its own settings plus what the other components add (filters, clusters)."""
    host, port = settings.listener
    return GatewayOptions(
        listener_host=host,
        listener_port=port,
        keymgr_endpoints=settings.keymgr_endpoints,
        usage_endpoints=settings.usage_endpoints,
        usage_copies=settings.usage_copies,
        authz_timeout_ms=settings.authz_timeout_ms,
        authz_failure_mode_allow=settings.authz_failure_mode_allow,
        extra_http_filters=contribution.http_filters,
        extra_clusters=contribution.clusters,
        route_rate_limits=contribution.route_rate_limits,
        envoy_link=settings.envoy_link,
    )


class Xds(RunningComponent):
    def __init__(self, options: GatewayOptions, catalog: CatalogStore, nodes: Collection[str]) -> None:
        self.options = options
        self.catalog = catalog
        self.cache = SnapshotCache()
        # Only the configured Envoy nodes get configuration (TOLLWAY_ENVOY_NODES).
        self.ads = AggregatedDiscoveryServicer(self.cache, nodes)

    async def push(self) -> None:
        """Builds Envoy's resources from the published APIs; the cache sends what changed."""
        apis = await self.catalog.published_apis()
        self.cache.set_snapshot(build_resources(apis, self.options))

    def envoy_services(self) -> Sequence[GrpcService]:
        add = ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server
        return (
            GrpcService(
                service_name(ads_pb2, "AggregatedDiscoveryService"), lambda server: add(self.ads, server)
            ),
        )

    def metrics_collectors(self) -> Sequence[Collector]:
        return (FunctionCollector(partial(collect_metrics, self.ads)),)

    def change_listeners(self) -> Sequence[ChangeListener]:
        # The catalog only: a new key or subscription never rebuilds Envoy's configuration.
        return (ReloadOnChange("xds", frozenset({Topic.APIS, Topic.PLANS}), self.push),)
