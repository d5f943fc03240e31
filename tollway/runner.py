"""The one place that wires a Tollway process: database, change feed, components, and the two gRPC
servers (Envoy-facing and admin)."""

from __future__ import annotations

import logging
from datetime import timedelta

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2, ads_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from keymgr.admin import StoreServicer
from keymgr.index import KeyIndex
from keymgr.servicer import AuthorizationServicer
from keymgr.store import StoreRepository
from tollway.auth import AdminTokenInterceptor
from tollway.catalog.servicer import CatalogServicer
from tollway.catalog.store import CatalogStore
from tollway.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tollway.changes import ChangeFeed
from tollway.db import Database
from tollway.settings import Settings
from tollway.store.v1 import store_pb2, store_pb2_grpc
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
    )


def _service_name(module: object, service: str) -> str:
    return module.DESCRIPTOR.services_by_name[service].full_name  # type: ignore[attr-defined]


async def _add_health_and_reflection(server: grpc.aio.Server, services: list[str]) -> None:
    health = health_aio.HealthServicer()
    for name in ["", *services]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )


class TollwayProcess:
    """All services of one Tollway replica. `start()` binds both ports; `stop()` releases everything."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, settings.database_schema)
        self.changes = ChangeFeed(self.db, settings.change_poll_seconds)
        self.catalog = CatalogStore(self.db, self.changes.committed)
        self.store = StoreRepository(
            self.db,
            self.changes.committed,
            key_hash_secret=settings.key_hash_secret,
            default_grace=timedelta(seconds=settings.key_rotation_grace_seconds),
        )
        self.key_index = KeyIndex(self.db)
        self.xds_cache = SnapshotCache()
        self.xds_options = gateway_options(settings)
        self.ads = AggregatedDiscoveryServicer(self.xds_cache)
        self.envoy_server: grpc.aio.Server | None = None
        self.admin_server: grpc.aio.Server | None = None

    async def _push_xds(self) -> None:
        apis = await self.catalog.published_apis()
        self.xds_cache.set_snapshot(build_resources(apis, self.xds_options))

    async def start(self) -> None:
        await self.db.create_schema()
        self.changes.subscribe(self.key_index.reload)
        self.changes.subscribe(self._push_xds)
        await self.changes.start()

        self.envoy_server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, self.envoy_server)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
            AuthorizationServicer(self.key_index, self.settings.key_hash_secret), self.envoy_server
        )
        await _add_health_and_reflection(
            self.envoy_server,
            [
                _service_name(ads_pb2, "AggregatedDiscoveryService"),
                _service_name(external_auth_pb2, "Authorization"),
            ],
        )
        self.envoy_server.add_insecure_port(self.settings.grpc_addr)

        self.admin_server = grpc.aio.server(interceptors=[AdminTokenInterceptor(self.settings.admin_token)])
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
            CatalogServicer(self.catalog), self.admin_server
        )
        store_pb2_grpc.add_StoreServiceServicer_to_server(StoreServicer(self.store), self.admin_server)
        await _add_health_and_reflection(
            self.admin_server,
            [_service_name(catalog_pb2, "CatalogService"), _service_name(store_pb2, "StoreService")],
        )
        self.admin_server.add_insecure_port(self.settings.admin_addr)

        await self.envoy_server.start()
        await self.admin_server.start()
        log.info(
            "tollway serving: envoy-facing gRPC on %s, admin gRPC on %s, database %s",
            self.settings.grpc_addr,
            self.settings.admin_addr,
            self.db.engine.url.render_as_string(hide_password=True),
        )

    async def stop(self) -> None:
        for server in (self.admin_server, self.envoy_server):
            if server is not None:
                await server.stop(grace=1.0)
        await self.changes.stop()
        await self.db.dispose()

    async def wait(self) -> None:
        assert self.envoy_server is not None
        await self.envoy_server.wait_for_termination()
