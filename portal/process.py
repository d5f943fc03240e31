"""portal/ inside a Tollway process: consumer accounts, the consumer gRPC API (consumer port), account
administration (admin port) and the web portal (TOLLWAY_PORTAL_ADDR), all over one service layer
(portal/auth.py, portal/consumer.py). Applications, keys, usage and invoices are reached through the
admin port's own services (portal/backend.py), so a portal replica needs only that port and the
database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import grpc

from portal.auth import AccountService
from portal.backend import AdminServices
from portal.config import PortalSettings
from portal.consumer import ConsumerPortal
from portal.outbox import FileOutbox, Outbox
from portal.publisher import PublisherPortal
from portal.servicer import AccountServicer, ConsumerServicer, PortalAdminServicer
from portal.store import SqlAccountStore
from portal.web.server import WebServer
from portal.web.site import web_app
from tollway.catalog.documents import ApiDocuments
from tollway.component import GrpcService, ProcessContext, RunningComponent, service_name
from tollway.portal.v1 import portal_pb2, portal_pb2_grpc
from tollway.schema import utcnow

log = logging.getLogger(__name__)
_PRUNE_EVERY_SECONDS = 600.0


class Portal(RunningComponent):
    def __init__(
        self,
        settings: PortalSettings,
        context: ProcessContext,
        admin_credentials: grpc.ChannelCredentials | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.settings = settings
        self.admin = AdminServices(settings.admin_addr, settings.admin_token, admin_credentials)
        self.accounts = AccountService(
            SqlAccountStore(context.db, context.changes.committed),
            outbox or FileOutbox(settings.outbox_dir),
            secret=settings.secret,
            admin_token=settings.admin_token,
            public_url=settings.public_url,
        )
        self.documents = ApiDocuments(context.db, context.catalog)
        self.consumer = ConsumerPortal(self.admin, context.catalog, self.documents)
        self.publisher = PublisherPortal(self.admin, self.accounts, context.catalog, self.documents)
        self.web = WebServer(
            web_app(self.accounts, self.consumer, self.publisher, self.admin, settings),
            settings.web_addr,
            settings.tls_cert_file,
            settings.tls_key_file,
        )
        self._pruner: asyncio.Task[None] | None = None

    def consumer_services(self) -> Sequence[GrpcService]:
        accounts = AccountServicer(self.accounts)
        consumer = ConsumerServicer(self.accounts, self.consumer)
        return (
            GrpcService(
                service_name(portal_pb2, "AccountService"),
                lambda server: portal_pb2_grpc.add_AccountServiceServicer_to_server(accounts, server),
            ),
            GrpcService(
                service_name(portal_pb2, "ConsumerService"),
                lambda server: portal_pb2_grpc.add_ConsumerServiceServicer_to_server(consumer, server),
            ),
        )

    def admin_services(self) -> Sequence[GrpcService]:
        servicer = PortalAdminServicer(self.accounts)
        return (
            GrpcService(
                service_name(portal_pb2, "PortalAdminService"),
                lambda server: portal_pb2_grpc.add_PortalAdminServiceServicer_to_server(servicer, server),
            ),
        )

    async def start(self) -> None:
        await self.web.start()
        log.info("portal serving web pages on %s", self.settings.public_url)
        self._pruner = asyncio.create_task(self._prune(), name="portal-prune")

    async def _prune(self) -> None:
        """Expired sessions and reset tokens are deleted now and then (they are refused anyway)."""
        while True:
            try:
                await self.accounts.store.prune(utcnow())
            except Exception as exc:  # the next round tries again
                log.warning("portal: pruning expired sessions failed: %s", type(exc).__name__)
            await asyncio.sleep(_PRUNE_EVERY_SECONDS)

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        await self.web.stop()
        await self.admin.close()
