"""`tollway billing webhooks ...`: webhook endpoints, their delivery log, and the event stream."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from google.protobuf.message import Message

from billing.credit_cli import billing_service_stub
from tollway.billing.v1 import billing_pb2 as pb
from tollway.cli_support import DEFAULT_ADMIN_ADDR, AdminAddr, AdminToken, Output, admin_client, emit, fail


class DeliveryStateChoice(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


_DELIVERY_STATES = {
    DeliveryStateChoice.pending: pb.WEBHOOK_DELIVERY_STATE_PENDING,
    DeliveryStateChoice.delivered: pb.WEBHOOK_DELIVERY_STATE_DELIVERED,
    DeliveryStateChoice.failed: pb.WEBHOOK_DELIVERY_STATE_FAILED,
}

EndpointId = Annotated[str, typer.Argument(help="Webhook endpoint id (whep_...).")]
EventsOpt = Annotated[
    str,
    typer.Option(
        "--events",
        help="Comma-separated event types (alert.raised, invoice.finalized, credit_note.issued, "
        "subscription.state_changed, credit.exhausted); empty = every type.",
    ),
]


def split_types(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _endpoint_call(addr: str, token: str | None, method: str, request: Message) -> None:
    """One BillingService call about an endpoint, its answer printed."""
    with admin_client(addr, token, billing_service_stub) as billing:
        emit(billing.call(getattr(billing.service, method), request))


def commands() -> typer.Typer:
    app = typer.Typer(
        help="Webhook endpoints, their delivery log, and the event stream.", no_args_is_help=True
    )

    @app.command()
    def create(
        url: Annotated[str, typer.Option("--url", help="http:// or https:// URL that receives the POSTs.")],
        events: EventsOpt = "",
        description: Annotated[str, typer.Option("--description")] = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Register an endpoint; prints its signing secret, shown this once only."""
        request = pb.CreateWebhookEndpointRequest(
            url=url, event_types=split_types(events), description=description
        )
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.CreateWebhookEndpoint, request))

    @app.command("list")
    def list_(addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None) -> None:
        """Every endpoint (never its secret)."""
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.ListWebhookEndpoints, pb.ListWebhookEndpointsRequest()))

    @app.command()
    def disable(
        endpoint: EndpointId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Stop deliveries to an endpoint (pending ones wait until it is enabled)."""
        _endpoint_call(addr, token, "DisableWebhookEndpoint", pb.DisableWebhookEndpointRequest(id=endpoint))

    @app.command()
    def enable(
        endpoint: EndpointId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Resume deliveries to a disabled endpoint."""
        _endpoint_call(addr, token, "EnableWebhookEndpoint", pb.EnableWebhookEndpointRequest(id=endpoint))

    @app.command()
    def delete(
        endpoint: EndpointId,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Remove an endpoint with its deliveries and their log."""
        _endpoint_call(addr, token, "DeleteWebhookEndpoint", pb.DeleteWebhookEndpointRequest(id=endpoint))

    @app.command()
    def deliveries(
        endpoint: EndpointId,
        state: Annotated[DeliveryStateChoice | None, typer.Option("--state")] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, max=100)] = 100,
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """An endpoint's delivery log, newest first: state, attempts, status codes, errors."""
        request = pb.ListWebhookDeliveriesRequest(
            endpoint_id=endpoint,
            page_size=limit,
            state=_DELIVERY_STATES[state] if state else pb.WEBHOOK_DELIVERY_STATE_UNSPECIFIED,
        )
        with admin_client(addr, token, billing_service_stub) as billing:
            emit(billing.call(billing.service.ListWebhookDeliveries, request))

    @app.command()
    def stream(
        from_sequence: Annotated[int, typer.Option("--from-sequence", min=0, help="Replay after it.")] = 0,
        events: EventsOpt = "",
        addr: AdminAddr = DEFAULT_ADMIN_ADDR, token: AdminToken = None, output: Output = None,
    ) -> None:  # fmt: skip
        """Print events after --from-sequence, then each new one as it happens (Ctrl-C stops)."""
        import grpc  # here, not at the top: `tollway --help` must not pay for gRPC's import

        request = pb.StreamEventsRequest(from_sequence=from_sequence, event_types=split_types(events))
        with admin_client(addr, token, billing_service_stub) as billing:
            call = billing.service.StreamEvents(request, metadata=billing.metadata)
            try:
                for item in call:
                    emit(item.event)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    fail(billing.describe(exc))
            except KeyboardInterrupt:
                call.cancel()

    return app
