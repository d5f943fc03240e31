"""Finalizing an invoice asks usage/ (over its real gRPC contract) whether the period's usage is all
there: INCOMPLETE needs an explicit override (who and why), which is recorded on the invoice with the
completeness figure; without it FAILED_PRECONDITION and nothing changes. Both databases."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from typer.testing import CliRunner, Result

from billing.clients import AdminClient, UsageCompleteness
from billing.servicer import BillingServicer, PendingHub
from billing.store import BillingRepository
from tests.billing.billing_helpers import EPOCH, Commits, FakeClock, World, dump_tables, utc
from tollway.app.cli import app
from tollway.billing.v1 import billing_pb2 as pb
from tollway.billing.v1 import billing_pb2_grpc
from tollway.db import Database
from tollway.usage.v1 import usage_pb2_grpc
from usage.frames import SkipTally
from usage.servicer import UsageServicer
from usage.store import UsageStore

Code = grpc.StatusCode
NODE = "edge-1"
# Envoy's access-log counters, read on Nov 10: it wrote 5 entries this period.
SAMPLED_AT = utc(2026, 11, 10)


@pytest.fixture
async def usage_store(database: Database) -> UsageStore:
    return UsageStore(database)


@pytest.fixture
async def stub(
    database: Database, usage_store: UsageStore
) -> AsyncIterator[billing_pb2_grpc.BillingServiceStub]:
    """BillingService whose completeness comes from a real UsageService over gRPC."""
    usage_server = grpc.aio.server()
    usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageServicer(usage_store), usage_server)
    port = usage_server.add_insecure_port("127.0.0.1:0")
    await usage_server.start()
    client = AdminClient(f"127.0.0.1:{port}", "unused")
    repository = BillingRepository(
        database, Commits(), clock=FakeClock(utc(2026, 12, 3)), completeness=UsageCompleteness(client)
    )
    billing_server = grpc.aio.server()
    billing_pb2_grpc.add_BillingServiceServicer_to_server(
        BillingServicer(repository, PendingHub()), billing_server
    )
    billing_port = billing_server.add_insecure_port("127.0.0.1:0")
    await billing_server.start()
    addresses["billing"] = f"127.0.0.1:{billing_port}"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{billing_port}") as channel:
            yield billing_pb2_grpc.BillingServiceStub(channel)
    finally:
        await billing_server.stop(grace=None)
        await client.close()
        await usage_server.stop(grace=None)


# Where the billing server of the running test listens (for the CLI).
addresses: dict[str, str] = {}


async def cli(*args: str) -> Result:
    """The `tollway` CLI against the test's billing server (in a thread: it blocks on gRPC)."""
    command = [*args, "--addr", addresses["billing"], "--token", "unused"]
    return await asyncio.to_thread(CliRunner().invoke, app, command)


async def expect(code: grpc.StatusCode, call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def test_incomplete_usage_needs_an_override_that_is_recorded(
    stub: billing_pb2_grpc.BillingServiceStub, database: Database, usage_store: UsageStore
) -> None:
    world = World(database)
    plan = await world.plan("metered", unit_price="0.01")
    api = await world.api(plan)
    subs = [await world.subscription(await world.application(), api, plan, EPOCH) for _ in range(3)]
    for sub in subs:
        await world.usage(sub, utc(2026, 11, 3), success=100)
    # usage/ accounted 4 of Envoy's 5 entries (all four skipped as unrouted): 80 %.
    await usage_store.apply(
        [], [SkipTally(NODE, "skip:frame-1", int(utc(2026, 11, 3).timestamp()), {"unrouted": 4})]
    )
    await usage_store.record_sample(NODE, SAMPLED_AT, 5, 0)

    drafts = (await stub.GenerateInvoices(pb.GenerateInvoicesRequest(billing_month="2026-11"))).invoices
    first, by_cli, second = sorted(drafts, key=lambda d: d.application_id)
    assert first.usage_completeness == pb.USAGE_COMPLETENESS_INCOMPLETE

    before = await dump_tables(database)
    detail = await expect(
        Code.FAILED_PRECONDITION, stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(id=first.id))
    )
    assert "incomplete" in detail and "80.00%" in detail and "allow_incomplete" in detail
    half = pb.FinalizeInvoiceRequest(
        id=first.id, allow_incomplete=pb.AllowIncompleteUsage(reason="month end")
    )
    await expect(Code.INVALID_ARGUMENT, stub.FinalizeInvoice(half))
    refused = await cli("billing", "finalize", first.id)
    assert refused.exit_code == 1 and "FAILED_PRECONDITION" in refused.output
    assert await dump_tables(database) == before  # refused: nothing written, no number used

    allowed = pb.FinalizeInvoiceRequest(
        id=first.id,
        allow_incomplete=pb.AllowIncompleteUsage(by="ops@example.com", reason="edge-1 lost 1 entry"),
    )
    final = (await stub.FinalizeInvoice(allowed)).invoice
    assert final.state == pb.INVOICE_STATE_FINALIZED and final.number == "INV-000001"
    assert final.usage_completeness == pb.USAGE_COMPLETENESS_INCOMPLETE
    recorded = final.completeness_override
    assert (recorded.by, recorded.reason) == ("ops@example.com", "edge-1 lost 1 entry")
    assert recorded.completeness == pytest.approx(0.8) and "80.0000%" in recorded.completeness_note
    assert recorded.time.ToDatetime() == utc(2026, 12, 3).replace(tzinfo=None)
    read = (await stub.GetInvoice(pb.GetInvoiceRequest(id=final.number))).invoice
    assert read.completeness_override == recorded
    # The CLI's --allow-incomplete, decided by the OS user unless --by says otherwise.
    done = await cli("billing", "finalize", by_cli.id, "--allow-incomplete", "month end")
    assert done.exit_code == 0, done.output
    override = json.loads(done.output)["invoice"]["completeness_override"]
    assert (override["by"], override["reason"]) == (getpass.getuser(), "month end")
    export = await stub.ExportInvoices(
        pb.ExportInvoicesRequest(
            period_start=first.period_start, period_end=first.period_end, format=pb.EXPORT_FORMAT_JSONL
        )
    )
    exported = {row["id"]: row for row in map(json.loads, export.content.splitlines())}
    assert exported[first.id]["completeness_override"]["by"] == "ops@example.com"
    assert exported[second.id]["completeness_override"] is None

    # The missing entry arrives (accounted as skipped): the period is complete, no override needed.
    await usage_store.apply(
        [], [SkipTally(NODE, "skip:frame-2", int(utc(2026, 11, 4).timestamp()), {"unrouted": 1})]
    )
    other = (await stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(id=second.id))).invoice
    assert other.state == pb.INVOICE_STATE_FINALIZED
    assert other.usage_completeness == pb.USAGE_COMPLETENESS_COMPLETE
    assert (
        "1 Envoy node(s) delivered every access-log entry (5 not billable: unrouted 5)"
        in other.completeness_note
    )
    assert not other.HasField("completeness_override")
