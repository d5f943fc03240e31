"""Webhook delivery metrics (prometheus-client instruments in a registry of their own; the billing
process includes it). Every series exists from the first scrape on, at zero.

tollway_webhook_deliveries_total{result}   delivery attempts by outcome: delivered (2xx), retried (failed,
                                           another attempt scheduled), failed (failed, no attempt left)
tollway_webhook_delivery_seconds           from the event's commit to the 2xx answer (histogram)
tollway_webhook_outbox_backlog             deliveries pending plus events not yet fanned out, as of the
                                           deliverer's last look (at most BACKLOG_REFRESH_SECONDS old)
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tollway.metrics import component_registry

RESULTS = ("delivered", "retried", "failed")
# From seconds (a receiver up) to the retry schedule's hours (one that was down).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0)
BACKLOG_REFRESH_SECONDS = 5.0


class WebhookMetrics:
    def __init__(self) -> None:
        self.registry = component_registry()
        self.deliveries = Counter(
            "tollway_webhook_deliveries",
            "Webhook delivery attempts, by result.",
            ["result"],
            registry=self.registry,
        )
        for result in RESULTS:
            self.deliveries.labels(result)
        self.latency = Histogram(
            "tollway_webhook_delivery_seconds",
            "Time from an event's commit to its delivery (2xx answer).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.backlog = Gauge(
            "tollway_webhook_outbox_backlog",
            "Webhook deliveries pending plus outbox events not yet fanned out.",
            registry=self.registry,
        )
