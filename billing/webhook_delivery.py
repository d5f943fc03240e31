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

from billing.webhook_signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    retry_delay,
    signature,
)
from billing.webhook_store import AttemptResult, Claimed, WebhookStore
from tollway.events import event_json
from tollway.schema import new_id, utcnow
from tollway.settings import Settings

log = logging.getLogger(__name__)

# The start of a receiver's answer kept in the delivery log; the rest is never read.
RESPONSE_PREFIX_BYTES = 256
# Deliveries in flight at once per replica (one claim's batch).
BATCH = 16
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
    def __init__(self, store: WebhookStore, settings: WebhookSettings) -> None:
        self._store = store
        self._settings = settings
        self.owner = new_id("deliverer", 12)
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._settings.timeout_seconds),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )
        self._task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
        """One round: fan out, claim, send the claimed deliveries at once, record their results in one
        transaction. True when there was work (look again at once)."""
        fanned = await self._store.fan_out()
        lease = self._settings.timeout_seconds + LEASE_MARGIN_SECONDS
        claimed = await self._store.claim(self.owner, BATCH, lease)
        if claimed:
            results = await asyncio.gather(*(self.post(one) for one in claimed))
            base, cap = self._settings.retry_base_seconds, self._settings.retry_max_seconds
            batch = [
                (one, result, retry_delay(one.attempt, base, cap))
                for one, result in zip(claimed, results, strict=True)
            ]
            states = await self._store.record(self.owner, batch, self._settings.max_attempts)
            for one, state in zip(claimed, states, strict=True):
                if state == "FAILED":
                    log.warning(
                        "webhook delivery %s of event %s to endpoint %s failed after %d attempts",
                        one.delivery_id, one.event.id, one.endpoint_id, one.attempt,
                    )  # fmt: skip
        return bool(fanned or claimed)

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
        if status and not 200 <= status < 300 and not error:
            error = f"HTTP {status}"
        return AttemptResult(
            started_at=started,
            duration_ms=int((time.monotonic() - clock) * 1000),
            status_code=status,
            error=error,
            response_prefix=prefix[:RESPONSE_PREFIX_BYTES].decode("utf-8", "replace"),
        )
