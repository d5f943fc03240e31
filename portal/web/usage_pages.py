"""The consumer's usage (requests per hour or day by outcome against the plan's limit, remaining quota
and reset times) and invoices (list, detail, CSV)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from portal.invoice_csv import invoice_csv
from portal.web.app import Page, PortalWeb
from portal.web.charts import STEP, floor, usage_series
from tollway.errors import InvalidArgument, TollwayError
from tollway.schema import utcnow
from tollway.throttle.v1 import throttle_pb2
from tollway.usage.v1 import usage_pb2

GRANULARITIES = {"hour": usage_pb2.GRANULARITY_HOUR, "day": usage_pb2.GRANULARITY_DAY}
SPAN = {usage_pb2.GRANULARITY_HOUR: 24, usage_pb2.GRANULARITY_DAY: 30}
# The quota line of each chart: the plan's limit on the chart's own bucket.
_QUOTA_WINDOW = {
    usage_pb2.GRANULARITY_HOUR: throttle_pb2.WINDOW_HOUR,
    usage_pb2.GRANULARITY_DAY: throttle_pb2.WINDOW_DAY,
}


def chart_json(data: object) -> str:
    """JSON for a <script type="application/json"> block: "</" cannot end the element early."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def routes(web: PortalWeb) -> list[BaseRoute]:
    async def usage(page: Page) -> Response:
        params = page.request.query_params
        subscriptions = await web.consumer.subscriptions(page.account_id)
        chosen = params.get("subscription", "") or (subscriptions[0].id if subscriptions else "")
        granularity_name = params.get("granularity", "hour")
        entries = {entry.api.id: entry for entry in await web.consumer.catalog()}
        values: dict[str, Any] = {
            "entries": entries,
            "subscriptions": subscriptions,
            "chosen": chosen,
            "granularity": granularity_name,
        }
        if not chosen:
            return web.render(page, "usage.html", title="Usage", **values)
        try:
            if granularity_name not in GRANULARITIES:
                raise InvalidArgument("granularity must be hour or day")
            granularity = GRANULARITIES[granularity_name]
            end = floor(utcnow(), granularity) + STEP[granularity]
            start = end - STEP[granularity] * SPAN[granularity]
            windows = await web.consumer.usage_windows(
                page.account_id, subscription_id=chosen, granularity=granularity, start=start, end=end
            )
        except TollwayError as refused:
            status, message = web.refused(refused)
            return web.render(page, "usage.html", status, title="Usage", error=message, **values)
        series = usage_series(windows, start, end, granularity)
        quota_windows: list[throttle_pb2.QuotaWindow] = []
        quota_note = ""
        try:
            quota = await web.consumer.quota(page.account_id, chosen)
            quota_windows = list(quota.windows)
        except TollwayError as refused:
            quota_note = f"Quota unavailable: {web.refused(refused)[1]}"
        line = next((w.limit for w in quota_windows if w.window == _QUOTA_WINDOW[granularity]), 0)
        return web.render(
            page,
            "usage.html",
            title="Usage",
            series=series,
            quota_windows=quota_windows,
            quota_note=quota_note,
            quota_line=line,
            chart=chart_json(series.as_json(line)),
            **values,
        )

    async def invoices(page: Page) -> Response:
        found = await web.consumer.invoices(page.account_id)
        names = {a.id: a.name for a in await web.consumer.applications(page.account_id, include_deleted=True)}
        return web.render(page, "invoices.html", title="Invoices", invoices=found, names=names)

    async def invoice(page: Page) -> Response:
        found = await web.consumer.invoice(page.account_id, page.request.path_params["invoice_id"])
        application = await web.consumer.application(page.account_id, found.application_id)
        return web.render(
            page,
            "invoice.html",
            title=f"Invoice {found.number or found.id}",
            invoice=found,
            application=application,
        )

    async def invoice_download(page: Page) -> Response:
        found = await web.consumer.invoice(page.account_id, page.request.path_params["invoice_id"])
        name = (found.number or found.id).replace('"', "")
        return Response(
            invoice_csv(found),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}.csv"'},
        )

    return [
        Route("/usage", web.wrap(usage, consumer=True)),
        Route("/invoices", web.wrap(invoices, consumer=True)),
        Route("/invoices/{invoice_id}", web.wrap(invoice, consumer=True)),
        Route("/invoices/{invoice_id}/csv", web.wrap(invoice_download, consumer=True)),
    ]
