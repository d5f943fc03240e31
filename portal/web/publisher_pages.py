"""The publisher's pages (signed in with the admin token): the approval queue (approve, or reject with
a reason), consumer accounts (disable, enable), API reference documents (upload, validated), and
analytics (portal/web/analytics_pages.py)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from portal.web.app import Page, PortalWeb, field_text
from tollway.errors import InvalidArgument, TollwayError

_NOTICES = {
    "approved": "Approved: the subscription's keys are admitted within a second.",
    "rejected": "Rejected.",
    "disabled": "The account is disabled: its sessions ended and its keys are refused.",
    "enabled": "The account is enabled again.",
    "document": "The OpenAPI document is attached: consumers see it as the API's reference.",
}


def routes(web: PortalWeb) -> list[BaseRoute]:
    async def dashboard(page: Page, status: int = 200, **values: Any) -> Response:
        publisher = web.publisher
        notice = _NOTICES.get(page.request.query_params.get("done", ""), "")
        return web.render(
            page,
            "publisher.html",
            status,
            title="Publisher",
            pending=await publisher.pending(),
            accounts=await publisher.accounts.store.list_accounts(),
            apis=await publisher.apis(),
            notice=notice,
            **values,
        )

    async def home(page: Page) -> Response:
        return await dashboard(page)

    async def decide(page: Page) -> Response:
        form = await web.form(page)
        subscription_id = page.request.path_params["subscription_id"]
        decision = page.request.path_params["decision"]
        reason = field_text(form, "reason")
        try:
            if decision == "approve":
                await web.publisher.approve(subscription_id, reason)
            elif decision == "reject":
                await web.publisher.reject(subscription_id, reason)
            else:
                raise InvalidArgument("the decision is approve or reject")
        except TollwayError as refused:
            status, message = web.refused(refused)
            return await dashboard(page, status, error=message, reason_for={subscription_id: reason})
        return RedirectResponse(f"/publisher?done={decision}d", 303)

    async def account_state(page: Page) -> Response:
        form = await web.form(page)
        account_id = page.request.path_params["account_id"]
        action = page.request.path_params["action"]
        disable = action == "disable"
        try:
            if action not in ("disable", "enable"):
                raise InvalidArgument("the action is disable or enable")
            await web.accounts.set_disabled(account_id, disable, field_text(form, "reason"))
        except TollwayError as refused:
            status, message = web.refused(refused)
            return await dashboard(page, status, error=message)
        return RedirectResponse(f"/publisher?done={'disabled' if disable else 'enabled'}", 303)

    async def upload_document(page: Page) -> Response:
        form = await web.form(page)
        api_id = page.request.path_params["api_id"]
        upload = form.get("file")
        content = b""
        if isinstance(upload, UploadFile):
            content = await upload.read()
        if not content.strip():
            content = field_text(form, "document").encode()
        try:
            await web.publisher.set_document(api_id, content)
        except TollwayError as refused:
            status, message = web.refused(refused)
            return await dashboard(page, status, error=f"OpenAPI document not attached: {message}")
        return RedirectResponse("/publisher?done=document", 303)

    return [
        Route("/publisher", web.wrap(home, publisher=True)),
        Route(
            "/publisher/subscriptions/{subscription_id}/{decision}",
            web.wrap(decide, publisher=True),
            methods=["POST"],
        ),
        Route(
            "/publisher/accounts/{account_id}/{action}",
            web.wrap(account_state, publisher=True),
            methods=["POST"],
        ),
        Route(
            "/publisher/apis/{api_id}/document", web.wrap(upload_document, publisher=True), methods=["POST"]
        ),
    ]
