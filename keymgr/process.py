"""keymgr/ inside a Tollway process: ext_authz Check on the Envoy-facing server, answered from an
in-memory key index that the change feed keeps current, change by change (and, in the fused mode,
through the limit gate the process hands it). Its StoreService (applications,
subscriptions, keys) is served with the catalog as the admin services (tollway/app/admin.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

from envoy.service.auth.v3 import external_auth_pb2
from prometheus_client.registry import Collector

from keymgr.admin import StoreServicer
from keymgr.index import KeyIndex
from keymgr.metrics import KeymgrMetrics
from keymgr.servicer import AuthorizationServicer, add_authorization_service
from keymgr.store import StoreRepository
from tollway.admission import LimitGate
from tollway.changes import ChangeListener
from tollway.component import GrpcService, RunningComponent, service_name
from tollway.db import Database
from tollway.errors import StartupRefused
from tollway.settings import KeymgrSettings
from tollway.store.v1 import store_pb2, store_pb2_grpc


def store_repository(
    settings: KeymgrSettings, db: Database, on_commit: Callable[[], None]
) -> StoreRepository:
    """The records keymgr's index is built from: applications, subscriptions, API keys."""
    return StoreRepository(
        db,
        on_commit,
        key_hash_secret=settings.key_hash_secret,
        default_grace=timedelta(seconds=settings.key_rotation_grace_seconds),
    )


def store_service(store: StoreRepository) -> GrpcService:
    """StoreService for the admin server."""
    servicer = StoreServicer(store)
    return GrpcService(
        service_name(store_pb2, "StoreService"),
        lambda server: store_pb2_grpc.add_StoreServiceServicer_to_server(servicer, server),
    )


class Keymgr(RunningComponent):
    def __init__(self, settings: KeymgrSettings, db: Database) -> None:
        self.key_hash_secret = settings.key_hash_secret
        self.applies_limits = settings.applies_limits
        self.index = KeyIndex(db)
        self.gate: LimitGate | None = None
        self.metrics = KeymgrMetrics()

    def metrics_collectors(self) -> Sequence[Collector]:
        return (self.metrics.registry,)

    def use_limit_gate(self, gate: LimitGate | None) -> None:
        if not self.applies_limits:
            return
        if gate is None:
            raise StartupRefused(
                "TOLLWAY_THROTTLE_MODE=authz: Check applies the plan limits itself, so every process "
                "running keymgr must run throttle too (add it to TOLLWAY_COMPONENTS)"
            )
        self.gate = gate

    def healthy(self) -> bool:
        # Fused mode: Check applies the limits, so it serves only while they can be applied.
        return self.gate is None or self.gate.healthy()

    def envoy_services(self) -> Sequence[GrpcService]:
        servicer = AuthorizationServicer(
            self.index, self.key_hash_secret, gate=self.gate, metrics=self.metrics
        )
        return (
            GrpcService(
                service_name(external_auth_pb2, "Authorization"),
                lambda server: add_authorization_service(servicer, server),
            ),
        )

    def change_listeners(self) -> Sequence[ChangeListener]:
        # The index follows its topics itself, applying only the entities that changed.
        return (self.index,)
