"""Billing metrics (prometheus-client instruments in billing's own registry; the process includes it).

tollway_billing_invoice_runs_total{result}   invoice runs: ok, replayed (idempotent repeat), refused
                                             (bad input), failed
tollway_billing_invoice_run_seconds          how long a run took (histogram), whatever its result
tollway_billing_invoices_generated_total     draft invoices written by runs
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from tollway.metrics import component_registry

RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RUN_RESULTS = ("ok", "replayed", "refused", "failed")


class BillingMetrics:
    def __init__(self) -> None:
        self.registry = component_registry()
        self.runs = Counter(
            "tollway_billing_invoice_runs", "Invoice runs, by result.", ["result"], registry=self.registry
        )
        for result in RUN_RESULTS:
            self.runs.labels(result)  # every result from the first scrape on, at zero
        self.run_seconds = Histogram(
            "tollway_billing_invoice_run_seconds",
            "Duration of invoice runs.",
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.invoices = Counter(
            "tollway_billing_invoices_generated", "Draft invoices written by runs.", registry=self.registry
        )
