"""tollway/metrics.py: the text format helpers and the registry every component renders through."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterable

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, Metric, generate_latest

from tests.e2e.harness import free_port
from tests.metrics_support import parse, value
from tollway.metrics import (
    LATENCY_BUCKETS,
    FunctionCollector,
    LoopHistogram,
    MetricsRegistry,
    counter_family,
    serve_metrics,
)


def test_a_failing_source_costs_only_its_own_lines() -> None:
    registry = MetricsRegistry()
    registry.include("good", FunctionCollector(lambda: [counter_family("a_total", "A.", (), {(): 3})]))

    def broken() -> Iterable[Metric]:
        raise RuntimeError("boom")

    registry.include("broken", FunctionCollector(broken))
    series = parse(registry.render())
    assert value(series, "a_total") == 3
    assert value(series, "tollway_metrics_render_errors_total") == 1


@given(st.text(max_size=40))
def test_label_values_survive_the_text_format(label: str) -> None:
    registry = MetricsRegistry()
    registry.include(
        "x", FunctionCollector(lambda: [counter_family("x_total", "X.", ("node",), {(label,): 1})])
    )
    assert value(parse(registry.render()), "x_total", node=label) == 1


def test_each_process_registry_is_its_own() -> None:
    """Two processes (or components) in one interpreter: the same names never collide."""
    one, two = MetricsRegistry(), MetricsRegistry()
    for registry in (one, two):
        Counter("same_name", "S.", registry=registry.registry).inc()
    assert value(parse(one.render()), "same_name_total") == 1
    assert value(parse(two.render()), "same_name_total") == 1


async def test_served_over_http_and_only_for_get() -> None:
    registry = MetricsRegistry()
    port = free_port()
    server = await serve_metrics("127.0.0.1", port, registry.render)
    try:

        def fetch(method: str) -> tuple[int, str]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method=method)
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, ""

        status, body = await asyncio.to_thread(fetch, "GET")
        assert status == 200 and value(parse(body), "tollway_metrics_render_errors_total") == 0
        assert (await asyncio.to_thread(fetch, "POST"))[0] == 405
    finally:
        server.close()
        await server.wait_closed()


def test_metrics_address_from_env_and_the_throttle_era_alias(tmp_path) -> None:
    from tollway.settings import Settings

    base = {"TOLLWAY_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).metrics_addr == ""
    assert Settings.from_env({**base, "TOLLWAY_METRICS_ADDR": "0.0.0.0:9100"}).metrics_addr == "0.0.0.0:9100"
    alias = {**base, "TOLLWAY_THROTTLE_METRICS_ADDR": "127.0.0.1:9101"}
    assert Settings.from_env(alias).metrics_addr == "127.0.0.1:9101"
    both = {**alias, "TOLLWAY_METRICS_ADDR": "127.0.0.1:9100"}
    assert Settings.from_env(both).metrics_addr == "127.0.0.1:9100"


@given(st.text(max_size=60))
def test_admin_method_labels_are_only_registered_methods(method: str) -> None:
    """Whatever a caller names, the label is a method of a registered service or `other`."""
    from prometheus_client import CollectorRegistry

    from tollway.catalog.v1 import catalog_pb2
    from tollway.rpc_metrics import OTHER, RpcMetricsInterceptor

    service = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]
    interceptor = RpcMetricsInterceptor(CollectorRegistry(), [service.full_name])
    known = {f"/{service.full_name}/{m.name}" for m in service.methods}
    assert interceptor.method_label(method) in known | {OTHER}
    assert interceptor.method_label(f"/{service.full_name}/ListPlans") == f"/{service.full_name}/ListPlans"
    assert interceptor.method_label(f"/{service.full_name}/NoSuchMethod") == OTHER


# Latencies around and on the bucket bounds, as a Check's or a ShouldRateLimit's are.
latencies = st.lists(
    st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(min_value=0, max_value=3)), max_size=60
)


@given(latencies)
def test_a_loop_histogram_exposes_what_the_library_histogram_exposes(values: list[float]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop_histogram = LoopHistogram("t_seconds", "T.", LATENCY_BUCKETS, ours)
    library_histogram = Histogram("t_seconds", "T.", buckets=LATENCY_BUCKETS, registry=theirs)
    for latency in values:
        loop_histogram.observe(latency)
        library_histogram.observe(latency)
    assert generate_latest(ours) == generate_latest(theirs)
