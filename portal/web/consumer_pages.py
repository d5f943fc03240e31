"""The consumer's pages: the catalog and an API's plans and reference docs; applications with their
subscriptions and keys (create, shown once; rotate with a grace period; revoke), their spend caps (set
and cleared here), the alerts raised on them and their prepaid credit. Every write is a
POST with the CSRF token; a refusal re-renders the page with its message and writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from portal.web.app import Page, PortalWeb, field_text
from portal.web.openapi_view import reference
from tollway.billing.v1 import billing_pb2
from tollway.catalog.documents import parse_document
from tollway.errors import InvalidArgument, NotFound, TollwayError

# Grace periods a rotation offers (the form's choices, in seconds; 0 = the old key stops at once).
GRACE_CHOICES = {"0": "at once", "3600": "1 hour", "86400": "24 hours", "604800": "7 days"}
TTL_CHOICES = {"": "never", "2592000": "30 days", "7776000": "90 days", "31536000": "1 year"}
CAP_KINDS = {"CHARGE": "charge (amount)", "REQUESTS": "billable requests"}
# The application page shows the newest alerts and ledger entries.
ALERTS_SHOWN = 20
LEDGER_SHOWN = 20


def _choice(value: str, choices: dict[str, str], field: str) -> timedelta | None:
    if value not in choices:
        raise InvalidArgument(f"{field} must be one of: {', '.join(choices.values())}")
    return timedelta(seconds=int(value)) if value else None


def routes(web: PortalWeb) -> list[BaseRoute]:
    async def catalog(page: Page) -> Response:
        return web.render(page, "catalog.html", title="API catalog", entries=await web.consumer.catalog())

    async def api_page(page: Page, status: int = 200, **values: Any) -> Response:
        api_id = page.request.path_params["api_id"]
        entry = await web.consumer.catalog_entry(api_id)
        docs = None
        if entry.has_document:
            document = await web.consumer.api_document(entry.api.id)
            docs = reference(parse_document(document.content).spec)
        applications = await web.consumer.applications(page.account_id) if page.account_id else []
        return web.render(
            page,
            "api.html",
            status,
            title=entry.api.name,
            entry=entry,
            docs=docs,
            applications=applications,
            **values,
        )

    async def api_view(page: Page) -> Response:
        return await api_page(page)

    async def subscribe(page: Page) -> Response:
        form = await web.form(page)
        api_id = page.request.path_params["api_id"]
        application_id = field_text(form, "application_id")
        plan_id = field_text(form, "plan_id")
        try:
            if not plan_id:
                raise InvalidArgument("choose a plan")
            if not application_id:
                raise InvalidArgument("choose an application (create one first on the Applications page)")
            await web.consumer.subscribe(page.account_id, application_id, api_id, plan_id)
        except TollwayError as refused:
            status, message = web.refused(refused)
            return await api_page(page, status, error=message)
        return RedirectResponse(f"/apps/{application_id}?done=subscribed", 303)

    async def api_document_raw(page: Page) -> Response:
        document = await web.consumer.api_document(page.request.path_params["api_id"])
        return Response(document.content, media_type=document.media_type)

    async def apps_page(page: Page, status: int = 200, **values: Any) -> Response:
        applications = await web.consumer.applications(page.account_id)
        return web.render(
            page, "apps.html", status, title="Applications", applications=applications, **values
        )

    async def apps(page: Page) -> Response:
        return await apps_page(page)

    async def create_app(page: Page) -> Response:
        form = await web.form(page)
        name, description = field_text(form, "name"), field_text(form, "description")
        try:
            created = await web.consumer.create_application(page.account_id, name, description)
        except TollwayError as refused:
            status, message = web.refused(refused)
            return await apps_page(page, status, error=message, name=name, description=description)
        return RedirectResponse(f"/apps/{created.id}", 303)

    async def app_page(page: Page, application_id: str, status: int = 200, **values: Any) -> Response:
        application = await web.consumer.application(page.account_id, application_id)
        subscriptions = await web.consumer.subscriptions(page.account_id, application.id)
        keys = await web.consumer.keys(page.account_id, application.id)
        entries = {entry.api.id: entry for entry in await web.consumer.catalog()}
        notices = {
            "subscribed": "Subscribed.", "revoked": "The key is revoked.", "cancelled": "Cancelled.",
            "cap_set": "The spend cap is set.", "cap_cleared": "The spend cap is cleared.",
        }  # fmt: skip
        notice = notices.get(page.request.query_params.get("done", ""), "")
        caps = await web.consumer.spend_caps(page.account_id, application.id)
        raised = await web.consumer.alerts(page.account_id, application.id, limit=ALERTS_SHOWN)
        balances, ledger = await web.consumer.credit(page.account_id, application.id, LEDGER_SHOWN)
        targets = {application.id: f"{application.name} (application)"}
        for sub in subscriptions:
            entry = entries.get(sub.api_id)
            targets[sub.id] = f"{entry.api.name if entry else sub.api_id} subscription ({sub.id})"
        return web.render(
            page,
            "app.html",
            status,
            title=application.name,
            application=application,
            subscriptions=subscriptions,
            keys=keys,
            entries=entries,
            notice=notice,
            grace_choices=GRACE_CHOICES,
            ttl_choices=TTL_CHOICES,
            caps=caps,
            alerts=raised,
            balances=balances,
            ledger=ledger,
            targets=targets,
            cap_kinds=CAP_KINDS,
            **values,
        )

    async def set_cap(page: Page) -> Response:
        form = await web.form(page)
        application_id = page.request.path_params["application_id"]
        scope, _, target_id = field_text(form, "target").partition(":")
        cap = billing_pb2.SpendCap(
            scope=scope, target_id=target_id, kind=field_text(form, "kind"),
            limit=field_text(form, "limit").strip(), currency=field_text(form, "currency").strip(),
        )  # fmt: skip
        try:
            await web.consumer.set_spend_cap(page.account_id, cap)
        except TollwayError as refused:
            if isinstance(refused, NotFound):
                raise
            status, message = web.refused(refused)
            return await app_page(page, application_id, status, error=message, cap_form=cap)
        return RedirectResponse(f"/apps/{application_id}?done=cap_set#caps-heading", 303)

    async def clear_cap(page: Page) -> Response:
        form = await web.form(page)
        application_id = page.request.path_params["application_id"]
        await web.consumer.clear_spend_cap(
            page.account_id,
            field_text(form, "scope"),
            field_text(form, "target_id"),
            field_text(form, "kind"),
        )
        return RedirectResponse(f"/apps/{application_id}?done=cap_cleared#caps-heading", 303)

    async def app_view(page: Page) -> Response:
        return await app_page(page, page.request.path_params["application_id"])

    async def delete_app(page: Page) -> Response:
        await web.form(page)
        await web.consumer.delete_application(page.account_id, page.request.path_params["application_id"])
        return RedirectResponse("/apps", 303)

    async def create_key(page: Page) -> Response:
        form = await web.form(page)
        application_id = page.request.path_params["application_id"]
        name = field_text(form, "name")
        try:
            ttl = _choice(field_text(form, "ttl"), TTL_CHOICES, "expiry")
            issued = await web.consumer.create_key(page.account_id, application_id, name, ttl)
        except TollwayError as refused:
            if isinstance(refused, NotFound):
                raise
            status, message = web.refused(refused)
            return await app_page(page, application_id, status, error=message, key_name=name)
        return web.render(
            page,
            "key_created.html",
            title="Your new API key",
            key=issued.key,
            api_key=issued.api_key,
            application_id=application_id,
        )

    async def rotate_key(page: Page) -> Response:
        form = await web.form(page)
        key = await web.consumer.key(page.account_id, page.request.path_params["key_id"])
        try:
            grace = _choice(field_text(form, "grace"), GRACE_CHOICES, "grace period")
            rotated = await web.consumer.rotate_key(page.account_id, key.key_id, grace)
        except TollwayError as refused:
            status, message = web.refused(refused)
            return await app_page(page, key.application_id, status, error=message)
        return web.render(
            page,
            "key_created.html",
            title="Your new API key",
            key=rotated.key,
            api_key=rotated.api_key,
            previous=rotated.previous_api_key,
            application_id=key.application_id,
        )

    async def revoke_key(page: Page) -> Response:
        await web.form(page)
        revoked = await web.consumer.revoke_key(page.account_id, page.request.path_params["key_id"])
        return RedirectResponse(f"/apps/{revoked.application_id}?done=revoked", 303)

    async def cancel_subscription(page: Page) -> Response:
        await web.form(page)
        cancelled = await web.consumer.cancel_subscription(
            page.account_id, page.request.path_params["subscription_id"]
        )
        return RedirectResponse(f"/apps/{cancelled.application_id}?done=cancelled", 303)

    return [
        Route("/catalog", web.wrap(catalog)),
        Route("/apis/{api_id}", web.wrap(api_view), methods=["GET"]),
        Route("/apis/{api_id}/openapi", web.wrap(api_document_raw), methods=["GET"]),
        Route("/apis/{api_id}/subscribe", web.wrap(subscribe, consumer=True), methods=["POST"]),
        Route("/apps", web.wrap(apps, consumer=True), methods=["GET"]),
        Route("/apps", web.wrap(create_app, consumer=True), methods=["POST"]),
        Route("/apps/{application_id}", web.wrap(app_view, consumer=True), methods=["GET"]),
        Route("/apps/{application_id}/delete", web.wrap(delete_app, consumer=True), methods=["POST"]),
        Route("/apps/{application_id}/keys", web.wrap(create_key, consumer=True), methods=["POST"]),
        Route("/apps/{application_id}/caps", web.wrap(set_cap, consumer=True), methods=["POST"]),
        Route("/apps/{application_id}/caps/clear", web.wrap(clear_cap, consumer=True), methods=["POST"]),
        Route("/keys/{key_id}/rotate", web.wrap(rotate_key, consumer=True), methods=["POST"]),
        Route("/keys/{key_id}/revoke", web.wrap(revoke_key, consumer=True), methods=["POST"]),
        Route(
            "/subscriptions/{subscription_id}/cancel",
            web.wrap(cancel_subscription, consumer=True),
            methods=["POST"],
        ),
    ]
