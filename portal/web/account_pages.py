"""Pages for signing up, in and out, and resetting a password (consumer), and the publisher's sign-in."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from portal.web.app import Page, PortalWeb, field_text
from tollway.errors import TollwayError


def routes(web: PortalWeb) -> list[BaseRoute]:
    async def home(page: Page) -> Response:
        if page.publisher:
            return RedirectResponse("/publisher", 303)
        return RedirectResponse("/apps" if page.account_id else "/catalog", 303)

    async def sign_up_form(page: Page) -> Response:
        return web.render(page, "sign_up.html", title="Sign up")

    async def sign_up(page: Page) -> Response:
        form = await web.form(page)
        email, name = field_text(form, "email"), field_text(form, "display_name")
        try:
            session = await web.accounts.sign_up(email, field_text(form, "password"), name)
        except TollwayError as refused:
            status, message = web.refused(refused)
            return web.render(
                page, "sign_up.html", status, title="Sign up", error=message, email=email, display_name=name
            )
        web.sign_in_cookie(page, session.token)
        return RedirectResponse("/catalog", 303)

    async def sign_in_form(page: Page) -> Response:
        return web.render(page, "sign_in.html", title="Sign in", action="/sign-in")

    async def sign_in(page: Page) -> Response:
        form = await web.form(page)
        email = field_text(form, "email")
        try:
            session = await web.accounts.sign_in(email, field_text(form, "password"), page.client)
        except TollwayError as refused:
            status, message = web.refused(refused)
            return web.render(
                page, "sign_in.html", status, title="Sign in", action="/sign-in", error=message, email=email
            )
        web.sign_in_cookie(page, session.token)
        return RedirectResponse("/apps", 303)

    async def publisher_sign_in_form(page: Page) -> Response:
        return web.render(
            page, "sign_in.html", title="Publisher sign-in", action="/publisher/sign-in", publisher=True
        )

    async def publisher_sign_in(page: Page) -> Response:
        form = await web.form(page)
        try:
            session = await web.accounts.sign_in_publisher(field_text(form, "admin_token"), page.client)
        except TollwayError as refused:
            status, message = web.refused(refused)
            return web.render(
                page,
                "sign_in.html",
                status,
                title="Publisher sign-in",
                action="/publisher/sign-in",
                publisher=True,
                error=message,
            )
        web.sign_in_cookie(page, session.token)
        return RedirectResponse("/publisher", 303)

    async def sign_out(page: Page) -> Response:
        await web.form(page)
        if page.principal is not None:
            await web.accounts.sign_out(page.principal.session_token)
        web.sign_out_cookie(page)
        return RedirectResponse("/sign-in", 303)

    async def forgot_form(page: Page) -> Response:
        return web.render(page, "forgot_password.html", title="Reset your password")

    async def forgot(page: Page) -> Response:
        form = await web.form(page)
        email = field_text(form, "email")
        try:
            await web.accounts.request_password_reset(email)
        except TollwayError as refused:
            status, message = web.refused(refused)
            return web.render(
                page, "forgot_password.html", status, title="Reset your password", error=message, email=email
            )
        return web.render(page, "forgot_password.html", title="Reset your password", sent=True)

    async def reset_form(page: Page) -> Response:
        token = page.request.path_params["token"]
        return web.render(page, "reset_password.html", title="Choose a new password", token=token)

    async def reset(page: Page) -> Response:
        form = await web.form(page)
        token = page.request.path_params["token"]
        try:
            await web.accounts.reset_password(token, field_text(form, "password"))
        except TollwayError as refused:
            status, message = web.refused(refused)
            return web.render(
                page, "reset_password.html", status, title="Choose a new password", token=token, error=message
            )
        return web.render(
            page,
            "sign_in.html",
            title="Sign in",
            action="/sign-in",
            notice="Your password is changed. Sign in with it.",
        )

    return [
        Route("/", web.wrap(home)),
        Route("/sign-up", web.wrap(sign_up_form), methods=["GET"]),
        Route("/sign-up", web.wrap(sign_up), methods=["POST"]),
        Route("/sign-in", web.wrap(sign_in_form), methods=["GET"]),
        Route("/sign-in", web.wrap(sign_in), methods=["POST"]),
        Route("/publisher/sign-in", web.wrap(publisher_sign_in_form), methods=["GET"]),
        Route("/publisher/sign-in", web.wrap(publisher_sign_in), methods=["POST"]),
        Route("/sign-out", web.wrap(sign_out), methods=["POST"]),
        Route("/forgot-password", web.wrap(forgot_form), methods=["GET"]),
        Route("/forgot-password", web.wrap(forgot), methods=["POST"]),
        Route("/reset-password/{token}", web.wrap(reset_form), methods=["GET"]),
        Route("/reset-password/{token}", web.wrap(reset), methods=["POST"]),
    ]
