"""Billing's view of two other services, over their gRPC contracts (never their internals):
usage/'s completeness per period and throttle/'s admitted count per subscription and period."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from billing.completeness import COMPLETE, INCOMPLETE, UNKNOWN, Verdict
from billing.periods import Period
from tollway.protoconv import timestamp
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc

log = logging.getLogger(__name__)
RPC_TIMEOUT_SECONDS = 5.0


class AdminClient:
    """A lazily opened aio channel to an admin server, with its bearer token."""

    def __init__(self, addr: str, token: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._addr = addr
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None

    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self._addr)
            else:
                self._channel = grpc.aio.secure_channel(self._addr, self._credentials)
        return self._channel

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None


def _accounted(node: usage_pb2.NodeCompleteness) -> int:
    # A usage service older than the skip accounting reports only what it counted.
    return node.accounted or node.received


def completeness_verdict(nodes: list[usage_pb2.NodeCompleteness]) -> Verdict:
    """One verdict for an invoice from the usage service's per-node completeness (pure)."""
    if not nodes:
        return Verdict(UNKNOWN, "no Envoy node reported access logs for the period")
    unsampled = [n.node_id for n in nodes if not n.sampled]
    short = [n for n in nodes if n.sampled and n.completeness < 1]
    lowest = min((n.completeness for n in nodes if n.sampled), default=1.0)
    if short:
        detail = ", ".join(
            f"{n.node_id} {n.completeness:.4%} ({_accounted(n)}/{n.logs_written + n.logs_dropped})"
            for n in short
        )
        return Verdict(INCOMPLETE, f"usage incomplete: {detail}", lowest)
    if unsampled:
        return Verdict(UNKNOWN, f"no Envoy counter readings for node(s) {', '.join(unsampled)}", lowest)
    skipped = sum(sum(n.skipped.values()) for n in nodes)
    note = f"all {len(nodes)} Envoy node(s) delivered every access-log entry"
    if skipped:
        reasons: dict[str, int] = {}
        for node in nodes:
            for reason, count in node.skipped.items():
                reasons[reason] = reasons.get(reason, 0) + count
        listed = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        note += f" ({skipped} not billable: {listed})"
    return Verdict(COMPLETE, note, lowest)


class UsageCompleteness:
    """CompletenessSource backed by tollway.usage.v1.UsageService/GetCompleteness."""

    def __init__(self, client: AdminClient) -> None:
        self._client = client

    async def verdict(self, period: Period) -> Verdict:
        stub = usage_pb2_grpc.UsageServiceStub(self._client.channel())
        request = usage_pb2.GetCompletenessRequest(
            start_time=timestamp(period.start), end_time=timestamp(period.end)
        )
        try:
            response = await stub.GetCompleteness(
                request, metadata=self._client.metadata, timeout=RPC_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("usage completeness unavailable: %s", exc.code().name)
            return Verdict(UNKNOWN, f"usage service unavailable ({exc.code().name})")
        return completeness_verdict(list(response.nodes))

    async def completeness(self, period: Period) -> tuple[str, str]:
        verdict = await self.verdict(period)
        return verdict.state, verdict.note


@dataclass(frozen=True)
class LimiterCount:
    period_start: datetime | None
    period_end: datetime | None
    used: int
    overage: int


class QuotaReader:
    """The rate limiter's billing-period counter via tollway.throttle.v1.QuotaService."""

    def __init__(self, client: AdminClient) -> None:
        self._client = client

    async def admitted(self, subscription_id: str, at: datetime) -> LimiterCount | str:
        """The count, or why it could not be read."""
        stub = throttle_pb2_grpc.QuotaServiceStub(self._client.channel())
        request = throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=subscription_id, at=timestamp(at))
        try:
            response = await stub.GetSubscriptionQuota(
                request, metadata=self._client.metadata, timeout=RPC_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            return f"rate limiter unavailable ({exc.code().name}: {exc.details() or ''})".strip()
        for window in response.windows:
            if window.window == throttle_pb2.WINDOW_BILLING_PERIOD:
                return LimiterCount(
                    _utc(window.start_time),
                    _utc(window.reset_time),
                    int(window.used),
                    int(window.overage),
                )
        return "rate limiter reported no billing-period counter"


def _utc(stamp: Timestamp) -> datetime | None:
    if not stamp.ByteSize():
        return None
    return stamp.ToDatetime(tzinfo=UTC)
