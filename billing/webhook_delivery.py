"""The webhook deliverer: a background task of the billing component. Each round it fans new outbox
events out into deliveries, claims due ones (a lease, so one replica sends each; billing/
webhook_store.py), POSTs them signed, and records each attempt. A failed attempt (no answer within the
deadline, a connection error, any non-2xx status) is retried with exponential backoff and jitter, up to
the configured attempts; then the delivery is FAILED, visible in the delivery log. Nothing about a
delivery lives only in memory: a restart resumes from the database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from billing.webhook_metrics import BACKLOG_REFRESH_SECONDS, WebhookMetrics
from billing.webhook_signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    retry_delay,
    signature,
)
from billing.webhook_store import AttemptResult, Claimed, WebhookStore
from tollway.background import cancel_task
from tollway.events import event_json
from tollway.schema import as_utc, new_id, utcnow
from tollway.settings import Settings

log = logging.getLogger(__name__)

# The start of a receiver's answer kept in the delivery log; the rest is never read.
RESPONSE_PREFIX_BYTES = 256
# Attempts in flight at once per replica.
CONCURRENCY = 32
# How long past the POST deadline a claim stays this replica's.
LEASE_MARGIN_SECONDS = 30.0
USER_AGENT = "Tollway-Webhooks/1"


@dataclass(frozen=True)
class WebhookSettings:
    """The deliverer's part of the settings (TOLLWAY_WEBHOOK_*), and the key of the stored secrets."""

    secret_key: str = field(repr=False)
    timeout_seconds: float = 10.0
    max_attempts: int = 12
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 3600.0
    poll_seconds: float = 1.0

    @classmethod
    def of(cls, settings: Settings) -> WebhookSettings:
        """From resolved settings (the secret key has its default by then)."""
        if not settings.webhook_secret_key:
            raise ValueError("webhook settings need resolved() settings (no secret key yet)")
        return cls(
            secret_key=settings.webhook_secret_key,
            timeout_seconds=settings.webhook_timeout,
            max_attempts=settings.webhook_max_attempts,
            retry_base_seconds=settings.webhook_retry_base,
            retry_max_seconds=settings.webhook_retry_max,
            poll_seconds=settings.webhook_poll,
        )


def body_of(claimed: Claimed) -> bytes:
    return json.dumps(event_json(claimed.event), separators=(",", ":"), ensure_ascii=False).encode()


class WebhookDeliverer:
    """Up to CONCURRENCY attempts in flight per replica, each its own task, so a receiver that takes
    its whole deadline holds one slot, not the others' deliveries; finished attempts are recorded
    together, one transaction per round."""

    def __init__(
        self, store: WebhookStore, settings: WebhookSettings, metrics: WebhookMetrics | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self.metrics = metrics or WebhookMetrics()
        self._backlog_read = -BACKLOG_REFRESH_SECONDS  # monotonic time of the last backlog count
        self.owner = new_id("deliverer", 12)
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        # Finished attempts not yet recorded: (delivery, result, delay before the next attempt).
        self._finished: list[tuple[Claimed, AttemptResult, float]] = []

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._settings.timeout_seconds),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
            limits=httpx.Limits(max_connections=CONCURRENCY),
        )
        self._task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self) -> None:
        """Stops claiming; attempts in flight are abandoned (their leases expire and they are made
        again, by this replica after a restart or by another); finished ones are recorded if possible."""
        await cancel_task(self._task)
        self._task = None
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._record_finished()
        if self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        """Looks for work now instead of at the next poll (an event was just committed here)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # a wake-up during the round below makes the wait after it end at once
            try:
                busy = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: try again next round
                log.warning("webhook delivery round failed: %s", type(exc).__name__)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_seconds)

    async def round(self) -> bool:
        """One round: record the attempts finished since the last one, fan new events out, claim as
        many due deliveries as there are free slots and start them. True when there was work."""
        recorded = await self._record_finished()
        fanned = await self._store.fan_out()
        if time.monotonic() - self._backlog_read >= BACKLOG_REFRESH_SECONDS:
            self._backlog_read = time.monotonic()
            self.metrics.backlog.set(await self._store.backlog())
        free = CONCURRENCY - len(self._in_flight)
        claimed: list[Claimed] = []
        if free > 0:
            lease = self._settings.timeout_seconds + LEASE_MARGIN_SECONDS
            claimed = await self._store.claim(self.owner, free, lease)
        for one in claimed:
            task = asyncio.create_task(self._attempt(one), name=f"webhook-{one.delivery_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return bool(recorded or fanned or claimed)

    async def _attempt(self, claimed: Claimed) -> None:
        result = await self.post(claimed)
        settings = self._settings
        delay = retry_delay(claimed.attempt, settings.retry_base_seconds, settings.retry_max_seconds)
        self._finished.append((claimed, result, delay))
        self._wake.set()

    async def _record_finished(self) -> int:
        batch, self._finished = self._finished, []
        if not batch:
            return 0
        try:
            states = await self._store.record(self.owner, batch, self._settings.max_attempts)
        except BaseException:
            self._finished = batch + self._finished  # recorded next round (the leases still hold)
            raise
        now = utcnow()
        for (one, result, _), state in zip(batch, states, strict=True):
            if result.delivered:
                self.metrics.deliveries.labels("delivered").inc()
                created = as_utc(one.event.created_at) or one.event.created_at
                self.metrics.latency.observe(max((now - created).total_seconds(), 0.0))
            elif state == "FAILED":
                self.metrics.deliveries.labels("failed").inc()
            else:
                self.metrics.deliveries.labels("retried").inc()
            if state == "FAILED":
                log.warning(
                    "webhook delivery %s of event %s to endpoint %s failed after %d attempts",
                    one.delivery_id, one.event.id, one.endpoint_id, one.attempt,
                )  # fmt: skip
        return len(batch)

    async def post(self, claimed: Claimed) -> AttemptResult:
        """One signed POST within the deadline; reads at most RESPONSE_PREFIX_BYTES of the answer."""
        assert self._client is not None
        body = body_of(claimed)
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: claimed.event.id,
            EVENT_TYPE_HEADER: claimed.event.type,
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: signature(claimed.secret, stamp, body),
        }
        started: datetime = utcnow()
        clock = time.monotonic()
        status, error, prefix = 0, "", b""
        try:
            async with asyncio.timeout(self._settings.timeout_seconds):
                async with self._client.stream(
                    "POST", claimed.url, content=body, headers=headers
                ) as response:
                    status = response.status_code
                    async for chunk in response.aiter_raw():
                        prefix += chunk
                        if len(prefix) >= RESPONSE_PREFIX_BYTES:
                            break
        except TimeoutError:
            error = f"no answer within {self._settings.timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            # The exception's text names the failure (refused, reset, TLS); it carries no secret.
            error = f"{type(exc).__name__}: {exc}"[:300]
        except Exception as exc:  # anything else the client raises is this attempt's failure too
            error = f"{type(exc).__name__}"
        if status and not 200 <= status < 300 and not error:
            error = f"HTTP {status}"
        return AttemptResult(
            started_at=started,
            duration_ms=int((time.monotonic() - clock) * 1000),
            status_code=status,
            error=error,
            response_prefix=prefix[:RESPONSE_PREFIX_BYTES].decode("utf-8", "replace"),
        )
