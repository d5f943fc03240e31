"""The web portal: server-rendered pages (Starlette + Jinja2) over the portal's one service layer
(portal/auth.py, portal/consumer.py, portal/publisher.py), called in-process.

What every page shares lives here: who the request acts for (the session cookie), the CSRF check on
every state-changing request, rendering with the security headers, and turning a refusal into a page
that says what was wrong. Pages work without JavaScript; scripts only add a copy button and charts.

- Session cookie: HttpOnly, SameSite=Lax, Path=/, `Secure` (and the `__Host-` prefix) when the portal
  is served over HTTPS. Its value is the session token; the database keeps only its SHA-256.
- CSRF: every POST carries `csrf_token`, an HMAC of the session token (or, before sign-in, of a random
  HttpOnly SameSite=Strict cookie) under the portal's secret; anything else answers 403, nothing done.
- Bodies are capped at 2 MiB (an OpenAPI upload is at most 1 MiB) before they are parsed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal.accounts import SessionKind, is_token, new_token
from portal.auth import AccountService, Principal
from portal.consumer import ConsumerPortal
from portal.web import formatting
from tollway.errors import TollwayError, status_for

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
MAX_BODY_BYTES = 2 * 1024 * 1024
ANON_COOKIE = "tollway_csrf"
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class BodyLimit:
    """ASGI wrapper: a request body over `limit` bytes answers 413 before anything parses it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await Response("request body too large", 413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await Response("request body too large", 413)(scope, receive, send)


class _TooLarge(Exception):
    pass


@dataclass
class Page:
    """One request as the pages see it: who it acts for and the CSRF token its forms carry."""

    request: Request
    principal: Principal | None
    csrf: str
    # Cookies to set on the response (name -> value, "" deletes).
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def account_id(self) -> str:
        if self.principal is None or self.principal.kind is not SessionKind.CONSUMER:
            return ""
        return self.principal.account_id

    @property
    def publisher(self) -> bool:
        return self.principal is not None and self.principal.kind is SessionKind.PUBLISHER

    @property
    def client(self) -> str:
        return self.request.client.host if self.request.client else ""


class SignInRequired(Exception):
    def __init__(self, publisher: bool = False) -> None:
        self.publisher = publisher


class CsrfRefused(Exception):
    pass


Handler = Callable[[Page], Awaitable[Response]]


class PortalWeb:
    """Shared by every page module: the services, rendering, sessions and CSRF."""

    def __init__(
        self,
        accounts: AccountService,
        consumer: ConsumerPortal,
        *,
        secure_cookies: bool,
        gateway_url: str,
        publisher: Any = None,
    ) -> None:
        self.accounts = accounts
        self.consumer = consumer
        self.publisher = publisher
        self.secure_cookies = secure_cookies
        self.gateway_url = gateway_url.rstrip("/")
        self.session_cookie = "__Host-tollway_session" if secure_cookies else "tollway_session"
        self.templates = Environment(
            loader=FileSystemLoader(WEB_DIR / "templates"),
            autoescape=select_autoescape(("html",), default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        formatting.install(self.templates)

    # Requests

    async def page(self, request: Request) -> Page:
        token = request.cookies.get(self.session_cookie, "")
        principal = await self.accounts.authenticate(token) if token else None
        cookies: dict[str, str] = {}
        if principal is None:
            if token:
                cookies[self.session_cookie] = ""  # a stale cookie is dropped
            seed = request.cookies.get(ANON_COOKIE, "")
            if not is_token(seed):
                seed = new_token()
                cookies[ANON_COOKIE] = seed
        else:
            seed = principal.session_token
        return Page(request, principal, self.accounts.csrf_token(seed), cookies)

    async def form(self, page: Page) -> FormData:
        """The posted form, after its CSRF token is checked (CsrfRefused otherwise)."""
        form = await page.request.form(max_files=1, max_fields=50, max_part_size=MAX_BODY_BYTES)
        seed = (
            page.principal.session_token
            if page.principal is not None
            else page.request.cookies.get(ANON_COOKIE, "")
        )
        presented = form.get("csrf_token")
        if not isinstance(presented, str) or not self.accounts.csrf_valid(seed, presented):
            raise CsrfRefused
        return form

    def wrap(
        self, handler: Handler, *, consumer: bool = False, publisher: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint: loads the page, enforces sign-in, turns refusals into pages."""

        async def endpoint(request: Request) -> Response:
            page = await self.page(request)
            try:
                if consumer and not page.account_id:
                    raise SignInRequired()
                if publisher and not page.publisher:
                    raise SignInRequired(publisher=True)
                response = await handler(page)
            except SignInRequired as needed:
                target = "/publisher/sign-in" if needed.publisher else "/sign-in"
                response = RedirectResponse(target, 303)
            except CsrfRefused:
                response = self.render(
                    page,
                    "error.html",
                    403,
                    title="Form expired",
                    message="This form has expired or did not come from this site. Go back, reload the "
                    "page and try again.",
                )
            except TollwayError as refused:
                code, message = status_for(refused)
                response = self.render(
                    page, "error.html", _HTTP_STATUS.get(code, 500), title="Not done", message=message
                )
            return self.finish(page, response)

        return endpoint

    # Responses

    def render(self, page: Page, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            page=page, csrf_token=page.csrf, gateway_url=self.gateway_url, **values
        )
        return HTMLResponse(html, status_code=status)

    def refused(self, error: TollwayError) -> tuple[int, str]:
        """HTTP status and message for a refusal shown on a form."""
        code, message = status_for(error)
        return _HTTP_STATUS.get(code, 500), message

    def finish(self, page: Page, response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        for name, value in page.cookies.items():
            if not value:
                response.delete_cookie(name, path="/", secure=self.secure_cookies, httponly=True)
            elif name == ANON_COOKIE:
                response.set_cookie(
                    name, value, path="/", secure=self.secure_cookies, httponly=True, samesite="strict"
                )
            else:
                response.set_cookie(
                    name,
                    value,
                    max_age=int(self.accounts.session_ttl.total_seconds()),
                    path="/",
                    secure=self.secure_cookies,
                    httponly=True,
                    samesite="lax",
                )
        return response

    def sign_in_cookie(self, page: Page, session_token: str) -> None:
        page.cookies[self.session_cookie] = session_token

    def sign_out_cookie(self, page: Page) -> None:
        page.cookies[self.session_cookie] = ""


def field_text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def build_app(web: PortalWeb, routes: list[BaseRoute]) -> ASGIApp:
    static = StaticFiles(directory=WEB_DIR / "static")
    app = Starlette(routes=[*routes, Mount("/static", app=static, name="static")])
    return BodyLimit(app)
