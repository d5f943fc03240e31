"""One Prometheus endpoint per process: components register render callables, the process serves them.

No client library: each component keeps plain counters on its hot path (an int increment) and renders
the text exposition format only when scraped. `MetricsRegistry.render()` concatenates every source; a
source that raises costs only its own lines (counted in tollway_metrics_render_errors_total), never
the scrape. Served over HTTP (any GET path) at TOLLWAY_METRICS_ADDR when set.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

log = logging.getLogger(__name__)

Render = Callable[[], str]
Labels = Mapping[str, str]


def escape(value: str) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{escape(str(value))}"' for name, value in labels.items()) + "}"


def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> list[str]:
    """The lines of one metric family: HELP, TYPE, then one sample per label set."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]
    return lines


class Histogram:
    """Cumulative-bucket histogram (seconds); `observe` is a bisect and two additions."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, count in zip((*self.buckets, math.inf), self.counts, strict=True):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines.append(f"{name}_sum {_number(self.sum)}")
        lines.append(f"{name}_count {self.count}")
        return lines


class MetricsRegistry:
    """The render callables of one process, in registration order."""

    def __init__(self) -> None:
        self._sources: list[tuple[str, Render]] = []
        self.render_errors = 0

    def register(self, name: str, render: Render) -> None:
        self._sources.append((name, render))

    def render(self) -> str:
        parts: list[str] = []
        for name, source in self._sources:
            try:
                text = source()
            except Exception:
                self.render_errors += 1
                log.warning("metrics source %s failed to render", name, exc_info=True)
                continue
            parts.append(text if text.endswith("\n") else text + "\n")
        parts.append(
            "\n".join(
                family(
                    "tollway_metrics_render_errors_total",
                    "counter",
                    "Metric sources that raised while rendering a scrape.",
                    [({}, self.render_errors)],
                )
            )
            + "\n"
        )
        return "".join(parts)


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve_metrics(host: str, port: int, render: Render) -> asyncio.Server:
    """A minimal HTTP endpoint for Prometheus: any GET answers the current metrics."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            if request_line.startswith(b"GET "):
                body = render().encode()
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body, head = b"method not allowed\n", b"HTTP/1.1 405 Method Not Allowed\r\n"
            writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
