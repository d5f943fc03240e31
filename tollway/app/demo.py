"""`make run`'s demo: an upstream API the command serves itself, and the catalog/store records that let
one application call it through Envoy with a key."""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from keymgr.process import store_repository
from portal.process import Portal
from tollway import schema
from tollway.app.demo_openapi import demo_document_bytes
from tollway.app.runner import TollwayProcess
from tollway.catalog.documents import ApiDocuments
from tollway.catalog.limits import PlanLimits
from tollway.catalog.store import CatalogStore
from tollway.catalog.validation import ApiDraft, PlanDraft, PricingDraft
from tollway.errors import NotFound

DEMO_PLAN = "demo"
# Small enough that repeating the printed curl shows the 429 within a minute.
DEMO_REQUESTS_PER_MINUTE = 10
DEMO_API = "echo"
DEMO_CONTEXT = "/echo/v1"
DEMO_APPLICATION = "demo-app"
DEMO_OWNER = "demo@tollway.local"
# A second plan, sold with the publisher's approval: shows the approval workflow in the portal.
DEMO_PRO_PLAN = "pro"


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with what it received, so a caller can see what Envoy forwarded."""

    server_version = "tollway-demo-echo"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        payload = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        data = json.dumps(payload, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # request lines would go to stderr for every call; the gateway logs requests already


def start_echo_server(host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), EchoHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-upstream", daemon=True).start()
    return server


@dataclass(frozen=True)
class DemoCredentials:
    api_path: str
    key: str = field(repr=False)
    # The demo consumer's portal sign-in (a fresh password each run, shown once).
    portal_email: str = ""
    portal_password: str = field(default="", repr=False)


async def seed(process: TollwayProcess, upstream_url: str) -> DemoCredentials:
    """Creates (or refreshes, on a second run) the demo plan, API, application and subscription, and
    issues a fresh demo key: keys are shown once, so a new run cannot print an old one."""
    catalog = process.catalog
    store = store_repository(process.settings.keymgr, process.db, process.changes.committed)
    limits = PlanLimits(requests_per_minute=DEMO_REQUESTS_PER_MINUTE)
    try:
        plan = await catalog.get_plan(DEMO_PLAN)
        if plan.requests_per_minute != DEMO_REQUESTS_PER_MINUTE:
            plan = await catalog.update_plan(plan.id, PlanDraft(name=DEMO_PLAN, limits=limits), ("limits",))
    except NotFound:
        draft = PlanDraft(name=DEMO_PLAN, description="Demo plan of `make run`", limits=limits)
        plan = await catalog.create_plan(draft)
    try:
        api = (await catalog.get_api(DEMO_API)).api
        if api.published:
            await catalog.unpublish_api(api.id)
        # The upstream's port may differ from the last run's.
        changes = ApiDraft(upstream_urls=(upstream_url,), plan_ids=(plan.id,))
        api = (await catalog.update_api(api.id, changes, ("upstream_urls", "plan_ids"))).api
    except NotFound:
        api_draft = ApiDraft(
            name=DEMO_API,
            version="v1",
            context_path=DEMO_CONTEXT,
            upstream_urls=(upstream_url,),
            plan_ids=(plan.id,),
            description="Echoes what the upstream received",
        )
        api = (await catalog.create_api(api_draft)).api
    pro = await _pro_plan(catalog)
    if pro.id not in (await catalog.get_api(api.id)).plan_ids:
        api = (await catalog.update_api(api.id, ApiDraft(plan_ids=(plan.id, pro.id)), ("plan_ids",))).api
    await catalog.publish_api(api.id)
    await ApiDocuments(process.db, catalog).set_document(api.id, demo_document_bytes())

    # The demo application belongs to the demo consumer's portal account when the portal runs here.
    portal = process.find(Portal)
    password = secrets.token_urlsafe(12)
    owner = DEMO_OWNER
    if portal is not None:
        owner = (await portal.accounts.ensure_account(DEMO_OWNER, password, "Demo consumer")).id
    named = [
        a
        for candidate in dict.fromkeys((owner, DEMO_OWNER))
        for a in await store.list_applications(owner=candidate)
        if a.name == DEMO_APPLICATION
    ]
    if named and named[0].owner != owner:
        named[0] = await store.update_application(named[0].id, {"owner": owner})
    application = (
        named[0]
        if named
        else await store.create_application(
            name=DEMO_APPLICATION, owner=owner, description="Demo application of `make run`"
        )
    )
    live = [
        s
        for s in await store.list_subscriptions(application_id=application.id, api_id=api.id)
        if s.state in schema.LIVE_SUBSCRIPTION_STATES
    ]
    if not live:
        await store.create_subscription(application.id, api.id, plan.id)
    issued = await store.create_api_key(application.id, name="demo")
    if portal is None:
        return DemoCredentials(api_path=DEMO_CONTEXT, key=issued.key)
    return DemoCredentials(DEMO_CONTEXT, issued.key, portal_email=DEMO_OWNER, portal_password=password)


async def _pro_plan(catalog: CatalogStore) -> schema.Plan:
    try:
        return await catalog.get_plan(DEMO_PRO_PLAN)
    except NotFound:
        draft = PlanDraft(
            name=DEMO_PRO_PLAN,
            description="More requests, billed monthly; the publisher approves each subscription",
            limits=PlanLimits(requests_per_minute=600, monthly_quota=100_000),
            pricing=PricingDraft(
                currency="EUR", recurring_fee="49.00", included_requests=50_000, unit_price="0.001"
            ),
            approval_required=True,
        )
        return await catalog.create_plan(draft)
