"""One Prometheus endpoint per process, through the maintained client library (prometheus-client).

Each process owns one `MetricsRegistry` (a `CollectorRegistry` of its own, never the library's global
default one), so tests that build several processes or components in one interpreter never collide.
Each component keeps its metrics in a registry of its own (`component_registry()`) and the process
includes it; a component's collector that raises costs only its own families (counted in
tollway_metrics_render_errors_total), never the scrape. Served over HTTP (any GET path) at
TOLLWAY_METRICS_ADDR when set; with `--workers N`, worker k serves its own on the metrics port + k.

Hot-path counters that change on every request may stay plain ints exported by a collector at scrape
time (`counter_family`), and their latency histograms `LoopHistogram`s (no lock per observation);
everything else is the library's instruments. Label values
are always bounded: fixed vocabularies, configured node ids, method names of registered services.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client import Metric as Metric
from prometheus_client import disable_created_metrics as _disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# No `_created` series: they double every counter's series and no dashboard reads them.
_disable_created_metrics()  # type: ignore[no-untyped-call]

log = logging.getLogger(__name__)

Labels = Mapping[str, str]

# Latency buckets (seconds) shared by the hot-path histograms: Check, ShouldRateLimit, Redis.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def component_registry() -> CollectorRegistry:
    """A registry for one component's instruments (never the library's global default)."""
    return CollectorRegistry(auto_describe=False)


def counter_family(
    name: str, help_text: str, label_names: Iterable[str], samples: Mapping[Any, float]
) -> CounterMetricFamily:
    """A counter family from plain counts keyed by label values (`name` ends in _total)."""
    family = CounterMetricFamily(name, help_text, labels=list(label_names))
    for values, value in sorted(samples.items()):
        family.add_metric(list(values), value)
    return family


def gauge_family(
    name: str, help_text: str, label_names: Iterable[str], samples: Mapping[Any, float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=list(label_names))
    for values, value in sorted(samples.items()):
        family.add_metric(list(values), value)
    return family


class FunctionCollector(Collector):
    """A collector from a function returning metric families (values read at scrape time)."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return list(self._collect())


class LoopHistogram(Collector):
    """A histogram without labels observed only on the event loop, which also serves the scrape
    (tollway.metrics.serve_metrics): so no lock per observation, which the library's Histogram takes
    for its bucket and its sum. An observation costs 0.25 µs against the library's 1.6 (timeit, 11
    buckets, the 2-core development machine); Check and ShouldRateLimit each make one per request."""

    def __init__(
        self, name: str, documentation: str, buckets: Iterable[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound (+Inf only)
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # the first bound >= value: le semantics
        self._sum += value

    def collect(self) -> Iterable[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip([*self._bounds, float("inf")], self._counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]  # untyped upstream
        family = HistogramMetricFamily(self._name, self._documentation)
        family.add_metric([], buckets, self._sum)
        return [family]


class _Guarded(Collector):
    def __init__(self, name: str, inner: Collector, errors: Counter) -> None:
        self.name = name
        self.inner = inner
        self.errors = errors

    def collect(self) -> Iterable[Metric]:
        try:
            return list(self.inner.collect())
        except Exception:
            self.errors.inc()
            log.warning("metrics source %s failed to render", self.name, exc_info=True)
            return []


class MetricsRegistry:
    """The process's registry: its own instruments plus every component's collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        # Rendered after everything else, so a scrape counts its own failures.
        self._last = CollectorRegistry(auto_describe=False)
        self.render_errors = Counter(
            "tollway_metrics_render_errors",
            "Metric sources that raised while rendering a scrape.",
            registry=self._last,
        )

    def include(self, name: str, collector: Collector) -> None:
        """Adds a component's collector (or its whole registry); its failures cost only its lines."""
        self.registry.register(_Guarded(name, collector, self.render_errors))

    def render(self) -> str:
        return (generate_latest(self.registry) + generate_latest(self._last)).decode()


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve_metrics(host: str, port: int, render: Callable[[], str]) -> asyncio.Server:
    """A minimal HTTP endpoint for Prometheus: any GET answers the current metrics. Served on the
    event loop (not the library's threaded server), so collectors read component state between two
    of the loop's steps, never while it changes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            if request_line.startswith(b"GET "):
                body = render().encode()
                head = b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE_LATEST.encode() + b"\r\n"
            else:
                body, head = b"method not allowed\n", b"HTTP/1.1 405 Method Not Allowed\r\n"
            writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
