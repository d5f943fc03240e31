"""The one place that wires a Tollway process: database, change feed, the components the settings
select, and the two gRPC servers (Envoy-facing and admin).

Each component contributes servicers to one of the servers and, where it keeps state, background
work started and stopped here. Components never reach into each other; they share the core only."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2, ads_pb2_grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from billing.component import BillingComponent
from keymgr.admin import StoreServicer
from keymgr.index import KeyIndex
from keymgr.servicer import AuthorizationServicer
from keymgr.store import StoreRepository
from throttle import envoy_config as throttle_envoy
from throttle.runtime import Throttle
from throttle.servicer import QuotaServicer, RateLimitServicer
from tollway.auth import AdminTokenInterceptor
from tollway.catalog.servicer import CatalogServicer
from tollway.catalog.store import CatalogStore
from tollway.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tollway.changes import ChangeFeed
from tollway.db import Database
from tollway.metrics import MetricsRegistry, family, serve_metrics, split_host_port
from tollway.settings import Settings
from tollway.store.v1 import store_pb2, store_pb2_grpc
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from usage.component import UsageComponent
from xds.cache import SnapshotCache
from xds.resources import GatewayOptions, build_resources
from xds.server import AggregatedDiscoveryServicer

log = logging.getLogger(__name__)


def gateway_options(settings: Settings) -> GatewayOptions:
    host, port = settings.gateway_host_port
    return GatewayOptions(
        listener_host=host,
        listener_port=port,
        keymgr_endpoints=settings.keymgr_endpoints,
        usage_endpoints=settings.usage_endpoints,
        authz_timeout_ms=settings.authz_timeout_ms,
        authz_failure_mode_allow=settings.authz_failure_mode_allow,
        # throttle/: ratelimit filter after ext_authz, its cluster, and descriptors on every API route.
        extra_http_filters=(
            throttle_envoy.ratelimit_filter(settings.ratelimit_timeout_ms, settings.ratelimit_failure_mode),
        ),
        extra_clusters=(throttle_envoy.throttle_cluster(settings.throttle_endpoints),),
        route_rate_limits=throttle_envoy.route_rate_limits(),
    )


def admin_tls_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS for the admin port when a certificate is configured; mTLS when a client CA is too."""
    if not settings.admin_tls_cert_file:
        return None
    key = Path(settings.admin_tls_key_file).read_bytes()
    chain = Path(settings.admin_tls_cert_file).read_bytes()
    client_ca = settings.admin_tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=Path(client_ca).read_bytes() if client_ca else None,
        require_client_auth=bool(client_ca),
    )


def service_name(module: Any, service: str) -> str:
    """Full name of a service defined in a generated *_pb2 module (for health and reflection)."""
    return str(module.DESCRIPTOR.services_by_name[service].full_name)


class GrpcServer:
    """A grpc.aio server with reflection and health for every service registered on it."""

    def __init__(
        self,
        address: str,
        interceptors: tuple[grpc.aio.ServerInterceptor, ...] = (),
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.address = address
        self.credentials = credentials
        self.server = grpc.aio.server(interceptors=interceptors)
        self.services: list[str] = []

    def add(self, name: str) -> grpc.aio.Server:
        """Declares a service by full name; returns the server to register its servicer on."""
        self.services.append(name)
        return self.server

    async def start(self) -> None:
        health = health_aio.HealthServicer()
        for name in ["", *self.services]:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health, self.server)
        reflection.enable_server_reflection(
            [*self.services, service_name(health_pb2, "Health"), reflection.SERVICE_NAME], self.server
        )
        if self.credentials is None:
            self.server.add_insecure_port(self.address)
        else:
            self.server.add_secure_port(self.address, self.credentials)
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(grace=1.0)


class TollwayProcess:
    """The services of one Tollway replica. `start()` binds the ports; `stop()` releases everything."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.components = set(settings.components)
        self.db = Database(settings.database_url, settings.database_schema)
        self.changes = ChangeFeed(self.db, settings.change_poll_seconds)
        self._servers: list[GrpcServer] = []
        # One Prometheus endpoint per process (TOLLWAY_METRICS_ADDR): each component registers its own.
        self.metrics = MetricsRegistry()
        self.metrics.register("process", self._render_info)
        self._metrics_server: asyncio.Server | None = None

        # Catalog and store: the admin side, and what keymgr/xds read.
        self.catalog = CatalogStore(self.db, self.changes.committed)
        self.store = StoreRepository(
            self.db,
            self.changes.committed,
            key_hash_secret=settings.key_hash_secret,
            default_grace=timedelta(seconds=settings.key_rotation_grace_seconds),
        )
        # xds: Envoy's config from the catalog.
        self.xds_cache = SnapshotCache()
        self.xds_options = gateway_options(settings)
        self.ads = AggregatedDiscoveryServicer(self.xds_cache)
        # keymgr: ext_authz Check from an in-memory index.
        self.key_index = KeyIndex(self.db)
        # throttle: ShouldRateLimit from an in-memory plan view and a counter store (memory or Redis).
        self.throttle = (
            Throttle(settings, self.db, self.changes.committed) if "throttle" in self.components else None
        )
        # usage: access-log ingestion (WAL, then summaries in the database) and the usage queries.
        self.usage = UsageComponent(settings, self.db) if "usage" in self.components else None
        # billing: invoices, usage summaries and the approval workflow for accounting (admin port).
        self.billing = (
            BillingComponent(settings, self.db, self.changes) if "billing" in self.components else None
        )
        if self.throttle is not None:
            self.metrics.register("throttle", self.throttle.metrics.render)
        if self.usage is not None:
            self.metrics.register("usage", self.usage.render_metrics)

    def _render_info(self) -> str:
        labels = {"components": ",".join(sorted(self.components))}
        return "\n".join(family("tollway_info", "gauge", "This Tollway process.", [(labels, 1)])) + "\n"

    async def _push_xds(self) -> None:
        apis = await self.catalog.published_apis()
        self.xds_cache.set_snapshot(build_resources(apis, self.xds_options))

    def _wire(self) -> None:
        if "admin" in self.components:
            catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
                CatalogServicer(self.catalog), self.admin.add(service_name(catalog_pb2, "CatalogService"))
            )
            store_pb2_grpc.add_StoreServiceServicer_to_server(
                StoreServicer(self.store), self.admin.add(service_name(store_pb2, "StoreService"))
            )
        if "xds" in self.components:
            self.changes.subscribe(self._push_xds)
            ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
                self.ads, self.envoy_facing.add(service_name(ads_pb2, "AggregatedDiscoveryService"))
            )
        if "keymgr" in self.components:
            self.changes.subscribe(self.key_index.reload)
            external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
                AuthorizationServicer(self.key_index, self.settings.key_hash_secret),
                self.envoy_facing.add(service_name(external_auth_pb2, "Authorization")),
            )
        if self.usage is not None:
            self.usage.wire(self.envoy_facing, self.admin)
        if self.billing is not None:
            self.billing.wire(self.admin)
        if self.throttle is not None:
            self.changes.subscribe(self.throttle.index.reload)
            rls_pb2_grpc.add_RateLimitServiceServicer_to_server(
                RateLimitServicer(self.throttle.service),
                self.envoy_facing.add(service_name(rls_pb2, "RateLimitService")),
            )
            # The quota query is an admin RPC, but it reads this replica's counters.
            throttle_pb2_grpc.add_QuotaServiceServicer_to_server(
                QuotaServicer(self.throttle.service, self.throttle.limits),
                self.admin.add(service_name(throttle_pb2, "QuotaService")),
            )

    async def start(self) -> None:
        await self.db.create_schema()
        # grpc.aio servers bind to the running event loop, so they are made here rather than in __init__.
        self.envoy_facing = GrpcServer(self.settings.grpc_addr)
        self.admin = GrpcServer(
            self.settings.admin_addr,
            (AdminTokenInterceptor(self.settings.admin_token),),
            admin_tls_credentials(self.settings),
        )
        self._wire()
        await self.changes.start()
        if self.throttle is not None:
            await self.throttle.start()
        if self.usage is not None:
            await self.usage.start()
        self._servers = [server for server in (self.envoy_facing, self.admin) if server.services]
        for server in self._servers:
            await server.start()
        if self.settings.metrics_addr:
            self._metrics_server = await serve_metrics(
                *split_host_port(self.settings.metrics_addr), self.metrics.render
            )
        log.info(
            "tollway serving %s: envoy-facing gRPC on %s, admin gRPC on %s, database %s",
            ",".join(sorted(self.components)),
            self.settings.grpc_addr if self.envoy_facing.services else "-",
            self.settings.admin_addr if self.admin.services else "-",
            self.db.engine.url.render_as_string(hide_password=True),
        )

    async def stop(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
        for server in self._servers:
            await server.stop()
        await self.changes.stop()
        if self.usage is not None:
            await self.usage.stop()
        if self.throttle is not None:
            await self.throttle.close()
        if self.billing is not None:
            await self.billing.close()
        await self.db.dispose()
