"""xds/ inside a Tollway process: the Aggregated Discovery Service on the Envoy-facing server, and a
new snapshot of Envoy's configuration built from the catalog after every committed change (and, with
HTTPS at the gateway, after every change of its certificate files)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial

from envoy.service.discovery.v3 import ads_pb2, ads_pb2_grpc
from prometheus_client.registry import Collector

from tollway.catalog.store import CatalogStore
from tollway.catalog.view import PublishedApi
from tollway.change_log import Topic
from tollway.changes import ChangeListener, ReloadOnChange
from tollway.component import (
    GatewayContribution,
    GrpcService,
    RunningComponent,
    service_name,
)
from tollway.gateway_tls import TlsPair
from tollway.metrics import FunctionCollector
from tollway.settings import GatewaySettings
from xds.cache import SnapshotCache
from xds.gateway_tls import CertificateWatch
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
        tls=settings.tls,
        http_redirect=settings.http_redirect,
    )


class Xds(RunningComponent):
    def __init__(
        self,
        options: GatewayOptions,
        catalog: CatalogStore,
        nodes: Collection[str],
        certificate: CertificateWatch | None = None,
    ) -> None:
        self.options = options
        self.catalog = catalog
        self.cache = SnapshotCache()
        # Only the configured Envoy nodes get configuration (TOLLWAY_ENVOY_NODES).
        self.ads = AggregatedDiscoveryServicer(self.cache, nodes)
        # HTTPS: the watched certificate files; each new checked pair is pushed as a new SDS version.
        self.certificate = certificate
        if certificate is not None:
            certificate.on_pair = self._on_certificate
        self._apis: Sequence[PublishedApi] | None = None

    async def push(self) -> None:
        """Builds Envoy's resources from the published APIs; the cache sends what changed."""
        self._apis = await self.catalog.published_apis()
        self._publish()

    def _publish(self) -> None:
        if self._apis is None:
            return  # the first push (the change feed's first round) builds everything
        pair = self.certificate.pair if self.certificate is not None else None
        self.cache.set_snapshot(build_resources(self._apis, self.options, pair))

    def _on_certificate(self, _pair: TlsPair) -> None:
        # Only the secret changed: the cache versions SDS anew and leaves the other types as they are.
        self._publish()

    async def start(self) -> None:
        if self.certificate is not None:
            self.certificate.start()

    async def stop(self) -> None:
        if self.certificate is not None:
            await self.certificate.stop()

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
