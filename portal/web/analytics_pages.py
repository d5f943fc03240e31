"""The publisher's analytics page: one API's requests, errors and p95 latency over time, and its
current period's top consumers, throttled-out requests, resources, status codes, destinations and
revenue by plan (portal/analytics.py)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from portal.analytics import SPANS, Analytics
from portal.web.app import Page, PortalWeb
from portal.web.usage_pages import chart_json
from tollway.errors import InvalidArgument
from tollway.schema import utcnow


def routes(web: PortalWeb, analytics: Analytics) -> list[BaseRoute]:
    async def analytics_page(page: Page) -> Response:
        params = page.request.query_params
        apis = [api for api, _ in await web.publisher.apis()]
        chosen = params.get("api", "") or (apis[0].id if apis else "")
        granularity = params.get("granularity", "hour")
        if granularity not in SPANS:
            raise InvalidArgument("granularity must be hour or day")
        values: dict[str, Any] = {"apis": apis, "chosen": chosen, "granularity": granularity}
        if not chosen:
            return web.render(page, "analytics.html", title="Analytics", **values)
        if chosen not in {api.id for api in apis}:
            raise InvalidArgument("choose one of the catalog's APIs")
        report = await analytics.report(chosen, granularity, utcnow())
        plans = {plan.id: plan.name for plan in await web.publisher.plans()}
        return web.render(
            page,
            "analytics.html",
            title="Analytics",
            report=report,
            plans=plans,
            chart=chart_json(report.chart()),
            **values,
        )

    return [Route("/publisher/analytics", web.wrap(analytics_page, publisher=True))]
