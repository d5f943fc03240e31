"""The request gate's rules without a server: which strings, timestamps and sizes it refuses, the
rate-limited log, the timestamp helper the servicers share, and the keepalive policy both sides use."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from tests.support import grpc_server
from tollway.billing.v1 import billing_pb2
from tollway.catalog.v1 import catalog_pb2
from tollway.envoy import bootstrap_config
from tollway.envoy_auth import PLAINTEXT_LINK
from tollway.envoy_resources import HTTP_PROTOCOL_OPTIONS, grpc_service_cluster
from tollway.errors import InvalidArgument
from tollway.keepalive import KEEPALIVE, KeepalivePolicy
from tollway.protoconv import to_datetime
from tollway.request_guard import (
    MAX_FIELD_VALUES,
    MAX_STRING_CHARS,
    RateLimitedLog,
    RequestGuardInterceptor,
    WrappedHandlers,
    request_problem,
)


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (catalog_pb2.CreatePlanRequest(plan=catalog_pb2.Plan(name="a\x00b")), "plan.name"),
        (catalog_pb2.CreatePlanRequest(plan=catalog_pb2.Plan(name="a\nb")), "plan.name"),
        (catalog_pb2.CreatePlanRequest(plan=catalog_pb2.Plan(description="a\x1bb")), "plan.description"),
        (
            catalog_pb2.CreateApiRequest(api=catalog_pb2.Api(upstream_urls=["http://a", "x\x7f"])),
            "api.upstream_urls[1]",
        ),
        (
            catalog_pb2.CreatePlanRequest(
                plan=catalog_pb2.Plan(
                    pricing=catalog_pb2.PlanPricing(tiers=[catalog_pb2.PriceTier(unit_price="\x85")])
                )
            ),
            "plan.pricing.tiers[0].unit_price",
        ),
        (
            catalog_pb2.CreatePlanRequest(plan=catalog_pb2.Plan(name="x" * (MAX_STRING_CHARS + 1))),
            "plan.name",
        ),
        (billing_pb2.GetUsageSummaryRequest(at=Timestamp(seconds=253_402_300_000)), "at"),
        (billing_pb2.GetUsageSummaryRequest(at=Timestamp(seconds=-1)), "at"),
        (billing_pb2.GetUsageSummaryRequest(at=Timestamp(seconds=0, nanos=-5)), "at"),
    ],
)
def test_refused_requests_name_their_field(request_message: object, field: str) -> None:
    problem = request_problem(request_message)  # type: ignore[arg-type]
    assert problem is not None and problem.startswith(field), problem


def test_free_text_keeps_line_breaks_and_everything_printable_passes() -> None:
    plan = catalog_pb2.Plan(name="Gold ✓ 金", description="line one\nline two\r\n\tindented")
    assert request_problem(catalog_pb2.CreatePlanRequest(plan=plan)) is None
    assert request_problem(billing_pb2.GetUsageSummaryRequest(at=Timestamp(seconds=1_700_000_000))) is None


def test_a_request_too_large_to_walk_is_refused() -> None:
    api = catalog_pb2.Api(upstream_urls=["u"] * (MAX_FIELD_VALUES + 1))
    problem = request_problem(catalog_pb2.CreateApiRequest(api=api))
    assert problem is not None and "more than" in problem


def test_to_datetime_checks_the_range_and_names_the_field() -> None:
    assert to_datetime(Timestamp(seconds=1_700_000_000), "at") == datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=UTC
    )
    with pytest.raises(InvalidArgument, match=r"^period_end"):
        to_datetime(Timestamp(seconds=253_402_300_000), "period_end")


def test_rate_limited_log_reports_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    reports = RateLimitedLog(logging.getLogger("tests.guard"), interval=0.0)
    quiet = RateLimitedLog(logging.getLogger("tests.guard"), interval=3600.0)
    for _ in range(100):
        quiet.event(logging.WARNING, "kind", "event %s", "x")
    quiet.event(logging.WARNING, "other", "other event")
    assert [record.getMessage() for record in caplog.records] == ["event x", "other event"]
    caplog.clear()
    reports.event(logging.WARNING, "kind", "now")
    assert [record.getMessage() for record in caplog.records] == ["now"]


def test_envoy_keepalive_and_the_servers_agree() -> None:
    options = dict(KEEPALIVE.server_options())
    accepted_ms = options["grpc.http2.min_ping_interval_without_data_ms"]
    assert options["grpc.keepalive_permit_without_calls"] == 1
    # The bootstrap's xds cluster and every gRPC service cluster ping no more often than accepted.
    bootstrap = bootstrap_config("n", "c", "127.0.0.1", 1)
    protocol = bootstrap["static_resources"]["clusters"][0]["typed_extension_protocol_options"]
    keepalive = next(iter(protocol.values()))["explicit_http_config"]["http2_protocol_options"][
        "connection_keepalive"
    ]
    assert float(keepalive["interval"].rstrip("s")) * 1000 >= accepted_ms
    cluster = grpc_service_cluster("keymgr", [("127.0.0.1", 1)], link=PLAINTEXT_LINK)
    options_message = http_protocol_options_pb2.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options_message)
    interval = options_message.explicit_http_config.http2_protocol_options.connection_keepalive.interval
    assert interval.ToMilliseconds() >= accepted_ms
    assert KEEPALIVE.envoy_interval * 1000 >= accepted_ms
    # A dead peer is noticed within seconds: Envoy's timeout, the servers' own ping timeout.
    assert KEEPALIVE.envoy_timeout <= 10 and options["grpc.keepalive_timeout_ms"] <= 10_000
    with pytest.raises(ValueError, match="too_many_pings"):
        KeepalivePolicy(envoy_interval=5, server_min_ping_interval=10)


async def test_streaming_handlers_pass_through_the_guard() -> None:
    """Server streams (billing's WatchPendingSubscriptions) and client streams (ADS, access logs) are
    served as before, and a bad message in a client stream ends the call INVALID_ARGUMENT."""
    request_type, response_type = catalog_pb2.CreatePlanRequest, catalog_pb2.CreatePlanResponse

    async def server_stream(
        request: catalog_pb2.CreatePlanRequest, context: object
    ) -> AsyncIterator[catalog_pb2.CreatePlanResponse]:
        for _ in range(3):
            yield response_type(plan=request.plan)

    async def bidi_stream(
        requests: AsyncIterator[catalog_pb2.CreatePlanRequest], context: object
    ) -> AsyncIterator[catalog_pb2.CreatePlanResponse]:
        async for request in requests:
            yield response_type(plan=request.plan)

    async def client_stream(requests: AsyncIterator[catalog_pb2.CreatePlanRequest], context: object) -> Any:
        names = [request.plan.name async for request in requests]
        return response_type(plan=catalog_pb2.Plan(name=",".join(names)))

    decode, encode = request_type.FromString, response_type.SerializeToString
    handlers = {
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, decode, encode),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi_stream, decode, encode),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, decode, encode),
    }

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Guarded", handlers),))

    good = request_type(plan=catalog_pb2.Plan(name="gold"))
    bad = request_type(plan=catalog_pb2.Plan(name="g\x00ld"))
    async with grpc_server(register, interceptors=(RequestGuardInterceptor(validate=True),)) as channel:
        serialize, parse = request_type.SerializeToString, response_type.FromString
        server_call = channel.unary_stream("/test.Guarded/ServerStream", serialize, parse)
        assert [r.plan.name async for r in server_call(good)] == ["gold"] * 3
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            _ = [r async for r in server_call(bad)]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        bidi = channel.stream_stream("/test.Guarded/Bidi", serialize, parse)
        assert [r.plan.name async for r in bidi(iter([good, good]))] == ["gold", "gold"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            _ = [r async for r in bidi(iter([good, bad]))]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        client = channel.stream_unary("/test.Guarded/ClientStream", serialize, parse)
        assert (await client(iter([good, good]))).plan.name == "gold,gold"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client(iter([good, bad]))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_wrapped_handlers_wrap_each_method_once_while_the_handler_is_the_same() -> None:
    calls: list[str] = []

    def wrap(method: str, handler: Any) -> Any:
        calls.append(method)
        return ("wrapped", method, handler)

    handlers = WrappedHandlers(wrap)
    first, other = grpc.unary_unary_rpc_method_handler(len), grpc.unary_unary_rpc_method_handler(len)
    assert handlers.get("/a/A", first) is handlers.get("/a/A", first)
    assert handlers.get("/b/B", first) == ("wrapped", "/b/B", first)
    # A different handler for the same method (a server re-registered it) is wrapped anew.
    assert handlers.get("/a/A", other) == ("wrapped", "/a/A", other)
    assert calls == ["/a/A", "/b/B", "/a/A"]
