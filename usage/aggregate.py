"""Pure logic: a batch of usage records summed into the rows the store upserts. Minute windows are
counted per record; hours and days are rolled up from them per window (cheap: a batch has few
windows). No I/O: usage/store.py writes what this computes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tollway.schema_usage import USAGE_LATENCY_BUCKETS_US
from usage.classify import OUTCOMES, THROTTLED, Record, latency_bucket

GRANULARITY_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
BUCKET_COLUMNS = tuple(f"latency_b{i:02d}" for i in range(len(USAGE_LATENCY_BUCKETS_US) + 1))
# The additive columns of a window, in the order of a Counters list.
SUM_COLUMNS = (*OUTCOMES, "overage", "request_bytes", "response_bytes", "latency_us_sum", *BUCKET_COLUMNS)
KEY_COLUMNS = (
    "granularity",
    "window_start",
    "api_id",
    "subscription_id",
    "application_id",
    "plan_id",
    "key_id",
)
_N_OUT = len(OUTCOMES)
_I_OVERAGE, _I_REQ, _I_RESP, _I_LAT = _N_OUT, _N_OUT + 1, _N_OUT + 2, _N_OUT + 3
_I_BUCKET = _N_OUT + 4


@dataclass
class ApplyResult:
    counted: int = 0
    duplicates: int = 0
    skipped: int = 0  # entries accounted as skipped (their frames' tallies, each applied once)


@dataclass
class Aggregate:
    """Windows (every granularity), per-node receipts and throttle rows of a batch of records."""

    windows: dict[tuple[Any, ...], list[int]] = field(default_factory=dict)
    latency_max: dict[tuple[Any, ...], int] = field(default_factory=dict)
    receipts: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    throttles: dict[tuple[Any, ...], int] = field(default_factory=lambda: defaultdict(int))

    def add(self, record: Record) -> None:
        """Adds one record to its minute window; `roll_up()` derives hours and days afterwards."""
        (node, _, minute, api, sub, app, plan, key, outcome, overage, req, resp, latency, limit) = record
        window = ("minute", minute, api, sub, app, plan, key)
        counters = self.windows.get(window)
        if counters is None:
            counters = self.windows[window] = [0] * len(SUM_COLUMNS)
            self.latency_max[window] = 0
        counters[outcome] += 1
        counters[_I_OVERAGE] += overage
        counters[_I_REQ] += req
        counters[_I_RESP] += resp
        counters[_I_LAT] += latency
        counters[_I_BUCKET + latency_bucket(latency)] += 1
        if latency > self.latency_max[window]:
            self.latency_max[window] = latency
        self.receipts[(node, minute - minute % 3600)] += 1
        if outcome == THROTTLED:
            self.throttles[(minute, api, sub, app, plan, limit)] += 1

    def roll_up(self) -> None:
        """Hour and day windows from the minute windows (per window, not per record: cheap)."""
        for (_, minute, *ident), counters in list(self.windows.items()):
            maximum = self.latency_max[("minute", minute, *ident)]
            for granularity in ("hour", "day"):
                seconds = GRANULARITY_SECONDS[granularity]
                window = (granularity, minute - minute % seconds, *ident)
                total = self.windows.get(window)
                if total is None:
                    self.windows[window] = list(counters)
                    self.latency_max[window] = maximum
                else:
                    for index, value in enumerate(counters):
                        total[index] += value
                    self.latency_max[window] = max(self.latency_max[window], maximum)
