"""The usage component of a Tollway process: ingestion (Envoy-facing), queries (admin), background work."""

from __future__ import annotations

from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2

from tollway.db import Database
from tollway.settings import Settings
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc
from usage.completeness import CompletenessSampler
from usage.ingest import Ingestor
from usage.metrics import render as render_metrics
from usage.servicer import AccessLogServicer, UsageServicer, register
from usage.store import UsageStore


def _full_name(module: Any, service: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[service].full_name)


class UsageComponent:
    def __init__(self, settings: Settings, db: Database) -> None:
        assert settings.usage_wal_dir is not None, "Settings.resolved() sets the WAL directory"
        self.store = UsageStore(db)
        self.ingestor = Ingestor(
            settings.usage_wal_dir,
            self.store.apply,
            sync_interval=settings.usage_wal_sync_ms / 1000,
            flush_interval=settings.usage_flush_ms / 1000,
        )
        self.sampler = CompletenessSampler(
            self.store, settings.usage_envoy_admins, settings.usage_sample_seconds
        )
        self.access_log = AccessLogServicer(self.ingestor)
        self.queries = UsageServicer(self.store, self.ingestor)

    def wire(self, envoy_facing: Any, admin: Any) -> None:
        """`envoy_facing` and `admin` are runner.GrpcServer instances."""
        server: grpc.aio.Server = envoy_facing.add(_full_name(als_pb2, "AccessLogService"))
        register(self.access_log, server)
        usage_pb2_grpc.add_UsageServiceServicer_to_server(
            self.queries, admin.add(_full_name(usage_pb2, "UsageService"))
        )

    def render_metrics(self) -> str:
        return render_metrics(self.ingestor, self.sampler)

    async def start(self) -> None:
        # Replays the WAL into the database before Envoy's streams are accepted.
        await self.ingestor.start()
        self.sampler.start()

    async def stop(self) -> None:
        await self.sampler.stop()
        await self.ingestor.stop()
