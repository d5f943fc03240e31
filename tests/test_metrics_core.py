"""tollway/metrics.py: the text format helpers and the registry every component renders through."""

from __future__ import annotations

import asyncio
import re
import urllib.request

from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.harness import free_port
from tollway.metrics import Histogram, MetricsRegistry, family, serve_metrics

SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$'
)


def test_a_failing_source_costs_only_its_own_lines() -> None:
    registry = MetricsRegistry()
    registry.register("good", lambda: "\n".join(family("a_total", "counter", "A.", [({}, 3)])))

    def broken() -> str:
        raise RuntimeError("boom")

    registry.register("broken", broken)
    text = registry.render()
    assert "a_total 3\n" in text
    assert "tollway_metrics_render_errors_total 1\n" in text


@given(st.text(max_size=40))
def test_label_values_are_escaped_into_valid_sample_lines(value: str) -> None:
    for line in family("x_total", "counter", "X.", [({"node": value}, 1)])[2:]:
        assert SAMPLE.match(line), line


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        histogram.observe(value)
    lines = histogram.render("h_seconds", "H.")
    assert 'h_seconds_bucket{le="0.1"} 2' in lines
    assert 'h_seconds_bucket{le="1.0"} 3' in lines
    assert 'h_seconds_bucket{le="+Inf"} 4' in lines
    assert "h_seconds_count 4" in lines and "h_seconds_sum 7.65" in lines


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
        assert status == 200 and "tollway_metrics_render_errors_total 0" in body
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
