"""usage/ inside a Tollway process: access-log ingestion (Envoy-facing), the usage queries (admin),
and the background work (the WAL applied to the database, completeness sampled from Envoy)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from envoy.service.accesslog.v3 import als_pb2
from prometheus_client.registry import Collector

from tollway.component import GrpcService, RunningComponent, service_name
from tollway.db import Database
from tollway.metrics import FunctionCollector
from tollway.settings import UsageSettings
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc
from usage.completeness import CompletenessSampler
from usage.ingest import Ingestor
from usage.metrics import collect as collect_metrics
from usage.servicer import AccessLogServicer, UsageServicer, register
from usage.store import UsageStore


class Usage(RunningComponent):
    def __init__(self, settings: UsageSettings, db: Database) -> None:
        self.store = UsageStore(db)
        self.ingestor = Ingestor(
            settings.wal_dir,
            self.store.apply,
            sync_interval=settings.wal_sync_ms / 1000,
            flush_interval=settings.flush_ms / 1000,
            with_details=True,
        )
        self.sampler = CompletenessSampler(
            self.store, settings.envoy_admins, settings.sample_seconds, settings.copies
        )
        self.access_log = AccessLogServicer(self.ingestor)
        self.queries = UsageServicer(self.store, self.ingestor)

    def envoy_services(self) -> Sequence[GrpcService]:
        return (
            GrpcService(
                service_name(als_pb2, "AccessLogService"), lambda server: register(self.access_log, server)
            ),
        )

    def admin_services(self) -> Sequence[GrpcService]:
        return (
            GrpcService(
                service_name(usage_pb2, "UsageService"),
                lambda server: usage_pb2_grpc.add_UsageServiceServicer_to_server(self.queries, server),
            ),
        )

    def metrics_collectors(self) -> Sequence[Collector]:
        return (
            self.ingestor.metrics.registry,
            FunctionCollector(partial(collect_metrics, self.ingestor, self.sampler)),
        )

    async def start(self) -> None:
        # Replays the WAL into the database before Envoy's streams are accepted.
        await self.ingestor.start()
        self.sampler.start()

    async def stop(self) -> None:
        await self.sampler.stop()
        await self.ingestor.stop()
