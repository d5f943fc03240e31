"""The web portal assembled: every page module's routes on one Starlette app."""

from __future__ import annotations

from starlette.types import ASGIApp

from portal.analytics import Analytics
from portal.auth import AccountService
from portal.backend import AdminServices
from portal.config import PortalSettings
from portal.consumer import ConsumerPortal
from portal.publisher import PublisherPortal
from portal.web import account_pages, analytics_pages, consumer_pages, publisher_pages, usage_pages
from portal.web.app import PortalWeb, build_app


def web_app(
    accounts: AccountService,
    consumer: ConsumerPortal,
    publisher: PublisherPortal,
    admin: AdminServices,
    settings: PortalSettings,
) -> ASGIApp:
    web = PortalWeb(
        accounts,
        consumer,
        publisher=publisher,
        secure_cookies=bool(settings.tls_cert_file) or settings.public_url.startswith("https://"),
        gateway_url=settings.gateway_url,
    )
    routes = [
        *account_pages.routes(web),
        *consumer_pages.routes(web),
        *usage_pages.routes(web),
        *publisher_pages.routes(web),
        *analytics_pages.routes(web, Analytics(admin)),
    ]
    return build_app(web, routes)
