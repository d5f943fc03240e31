"""BillingService's webhook and event-stream RPCs (a mixin of billing/servicer.py's BillingServicer):
protobuf ↔ WebhookStore translation, and StreamEvents, which replays the outbox by sequence and then
follows it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc

from billing.webhook_signing import validate_event_types
from billing.webhook_store import DeliveryView, WebhookStore
from tollway.billing.v1 import billing_pb2
from tollway.errors import FailedPrecondition, InvalidArgument, map_grpc_errors, status_for
from tollway.protoconv import timestamp
from tollway.schema_billing import EventOutbox, WebhookEndpoint

_ENDPOINT_STATES = {
    "ENABLED": billing_pb2.WEBHOOK_ENDPOINT_STATE_ENABLED,
    "DISABLED": billing_pb2.WEBHOOK_ENDPOINT_STATE_DISABLED,
}
_DELIVERY_STATES = {
    "PENDING": billing_pb2.WEBHOOK_DELIVERY_STATE_PENDING,
    "DELIVERED": billing_pb2.WEBHOOK_DELIVERY_STATE_DELIVERED,
    "FAILED": billing_pb2.WEBHOOK_DELIVERY_STATE_FAILED,
}
_DELIVERY_STATE_NAMES = {value: name for name, value in _DELIVERY_STATES.items()}
# StreamEvents: events read per query, and how often a caught-up stream looks for new ones.
STREAM_BATCH = 100
STREAM_POLL_SECONDS = 0.25


def endpoint_to_proto(endpoint: WebhookEndpoint) -> billing_pb2.WebhookEndpoint:
    return billing_pb2.WebhookEndpoint(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=endpoint.event_types,
        state=_ENDPOINT_STATES.get(endpoint.state, billing_pb2.WEBHOOK_ENDPOINT_STATE_UNSPECIFIED),
        create_time=timestamp(endpoint.created_at),
        disable_time=timestamp(endpoint.disabled_at),
    )


def delivery_to_proto(view: DeliveryView) -> billing_pb2.WebhookDelivery:
    row = view.delivery
    return billing_pb2.WebhookDelivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        event_sequence=row.event_sequence,
        state=_DELIVERY_STATES.get(row.state, billing_pb2.WEBHOOK_DELIVERY_STATE_UNSPECIFIED),
        attempts=row.attempts,
        next_attempt_time=timestamp(row.next_attempt_at) if row.state == "PENDING" else None,
        deliver_time=timestamp(row.delivered_at),
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        create_time=timestamp(row.created_at),
        attempt_log=[
            billing_pb2.WebhookAttempt(
                attempt=a.attempt,
                start_time=timestamp(a.started_at),
                duration_ms=max(a.duration_ms, 0),
                status_code=a.status_code,
                error=a.error,
                response_prefix=a.response_prefix,
            )
            for a in view.attempts
        ],
    )


def event_to_proto(event: EventOutbox) -> billing_pb2.Event:
    return billing_pb2.Event(
        sequence=event.sequence or 0,
        id=event.id,
        type=event.type,
        create_time=timestamp(event.created_at),
        data_json=json.dumps(event.data, separators=(",", ":"), ensure_ascii=False),
    )


@map_grpc_errors
class WebhookRpc:
    webhooks: WebhookStore | None

    def _store(self) -> WebhookStore:
        if self.webhooks is None:
            raise FailedPrecondition("webhooks are not configured in this process")
        return self.webhooks

    async def CreateWebhookEndpoint(
        self,
        request: billing_pb2.CreateWebhookEndpointRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.CreateWebhookEndpointRequest, billing_pb2.CreateWebhookEndpointResponse
        ],
    ) -> billing_pb2.CreateWebhookEndpointResponse:
        endpoint, secret = await self._store().create(request.url, request.event_types, request.description)
        return billing_pb2.CreateWebhookEndpointResponse(
            endpoint=endpoint_to_proto(endpoint), signing_secret=secret
        )

    async def ListWebhookEndpoints(
        self,
        request: billing_pb2.ListWebhookEndpointsRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ListWebhookEndpointsRequest, billing_pb2.ListWebhookEndpointsResponse
        ],
    ) -> billing_pb2.ListWebhookEndpointsResponse:
        endpoints = await self._store().list_endpoints()
        return billing_pb2.ListWebhookEndpointsResponse(endpoints=[endpoint_to_proto(e) for e in endpoints])

    async def DisableWebhookEndpoint(
        self,
        request: billing_pb2.DisableWebhookEndpointRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.DisableWebhookEndpointRequest, billing_pb2.DisableWebhookEndpointResponse
        ],
    ) -> billing_pb2.DisableWebhookEndpointResponse:
        endpoint = await self._store().set_enabled(request.id, enabled=False)
        return billing_pb2.DisableWebhookEndpointResponse(endpoint=endpoint_to_proto(endpoint))

    async def EnableWebhookEndpoint(
        self,
        request: billing_pb2.EnableWebhookEndpointRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.EnableWebhookEndpointRequest, billing_pb2.EnableWebhookEndpointResponse
        ],
    ) -> billing_pb2.EnableWebhookEndpointResponse:
        endpoint = await self._store().set_enabled(request.id, enabled=True)
        return billing_pb2.EnableWebhookEndpointResponse(endpoint=endpoint_to_proto(endpoint))

    async def DeleteWebhookEndpoint(
        self,
        request: billing_pb2.DeleteWebhookEndpointRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.DeleteWebhookEndpointRequest, billing_pb2.DeleteWebhookEndpointResponse
        ],
    ) -> billing_pb2.DeleteWebhookEndpointResponse:
        await self._store().delete(request.id)
        return billing_pb2.DeleteWebhookEndpointResponse()

    async def ListWebhookDeliveries(
        self,
        request: billing_pb2.ListWebhookDeliveriesRequest,
        context: grpc.aio.ServicerContext[
            billing_pb2.ListWebhookDeliveriesRequest, billing_pb2.ListWebhookDeliveriesResponse
        ],
    ) -> billing_pb2.ListWebhookDeliveriesResponse:
        state = _DELIVERY_STATE_NAMES.get(request.state, "") if request.state else ""
        if request.state and not state:
            raise InvalidArgument(f"unknown delivery state {request.state}")
        views = await self._store().deliveries(request.endpoint_id, request.page_size, state)
        return billing_pb2.ListWebhookDeliveriesResponse(deliveries=[delivery_to_proto(v) for v in views])

    # Server streaming: not wrapped by map_grpc_errors (unary only), so errors are mapped here.
    async def StreamEvents(
        self,
        request: billing_pb2.StreamEventsRequest,
        context: grpc.aio.ServicerContext[billing_pb2.StreamEventsRequest, billing_pb2.StreamEventsResponse],
    ) -> AsyncIterator[billing_pb2.StreamEventsResponse]:
        try:
            store = self._store()
            types = validate_event_types(request.event_types)
            if request.from_sequence < 0:
                raise InvalidArgument("from_sequence must not be negative")
            await store.check_replay(request.from_sequence)
        except Exception as exc:
            code, message = status_for(exc)
            await context.abort(code, message)
        last = request.from_sequence
        while True:
            try:
                events = await store.events_after(last, types, STREAM_BATCH)
            except Exception as exc:
                code, message = status_for(exc)
                await context.abort(code, message)
            for event in events:
                last = event.sequence or last
                yield billing_pb2.StreamEventsResponse(event=event_to_proto(event))
            if len(events) < STREAM_BATCH:
                await asyncio.sleep(STREAM_POLL_SECONDS)
