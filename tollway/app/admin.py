"""The admin services (TOLLWAY_COMPONENTS value "admin"): the catalog (core) and keymgr's store of
applications, subscriptions and keys. Its CLI commands are the catalog's (plan, api); keymgr registers
its own (app, sub, key, block)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from tollway.catalog.cli import register
from tollway.component import Component, GrpcService, ProcessContext, RunningComponent, service_name
from tollway.settings import Settings

if TYPE_CHECKING:
    from keymgr.store import StoreRepository
    from tollway.catalog.store import CatalogStore


class Admin(RunningComponent):
    def __init__(self, catalog: CatalogStore, store: StoreRepository) -> None:
        self.catalog = catalog
        self.store = store

    def admin_services(self) -> Sequence[GrpcService]:
        from keymgr.process import store_service
        from tollway.catalog.servicer import CatalogServicer
        from tollway.catalog.v1 import catalog_pb2, catalog_pb2_grpc

        servicer = CatalogServicer(self.catalog)
        return (
            GrpcService(
                service_name(catalog_pb2, "CatalogService"),
                lambda server: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server),
            ),
            store_service(self.store),
        )


class AdminComponent(Component):
    name = "admin"

    def register_cli(self, app: typer.Typer) -> None:
        register(app)

    def build(self, settings: Settings, context: ProcessContext) -> Admin:
        from keymgr.process import store_repository

        store = store_repository(settings.keymgr, context.db, context.changes.committed)
        return Admin(context.catalog, store)


COMPONENT = AdminComponent()
