"""The benchmark's own parts that need no server: reading h2load's per-request log, the fixed-rate
driver against an in-process HTTP server, the scenarios' Envoy filter chains as built (Envoy itself
loads them in tests/e2e/test_bench_smoke.py), which Tollway modes this checkout can run, and the
command line's scenario names."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format

from bench.__main__ import _names
from bench.envoys import gateway_bootstrap, link_settings
from bench.loadgen import LoadResult, parse_h2load_log, percentile
from bench.pacer import paced
from bench.scenarios import SCENARIOS, TollwayMode, mode_unavailable


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_h2load_log_gives_rate_statuses_and_latency() -> None:
    rows = [
        "1796207847366453\t200\t6907",
        "1796207847366500\t429\t1000",
        "1796207847366669\t200\t3000\textra-column",
        "1796207847366700\t-1\t5000",  # no answer
        "",
    ]
    result = parse_h2load_log(rows, seconds=2.0)
    assert result.statuses == Counter({200: 2, 429: 1})
    assert result.failed == 1
    assert result.answered == 3
    assert result.rate == 1.5
    assert result.ok_rate == 1.0
    assert result.non_2xx == 2
    assert result.latencies_ms == [1.0, 3.0, 6.907]
    assert result.p(0.5) == 3.0
    summary = result.summary()
    assert summary["statuses"] == {"200": 2, "429": 1}
    assert summary["non_2xx"] == 2


async def _http_server(requests_seen: list[dict[str, str]]) -> asyncio.Server:
    """Answers GET /ok 200 with a content length, /chunked 200 chunked, /limited 429 and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                path = head[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)
                }
                requests_seen.append({"path": path, **headers})
                if path == "/chunked":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                    )
                elif path == "/limited":
                    writer.write(b"HTTP/1.1 429 Too Many\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno")
                    await writer.drain()
                    writer.close()
                    return
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(("path", "status"), [("/ok", 200), ("/chunked", 200), ("/limited", 429)])
async def test_pacer_sends_the_scheduled_requests_and_reads_each_answer(path: str, status: int) -> None:
    seen: list[dict[str, str]] = []
    server = await _http_server(seen)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await paced("127.0.0.1", port, path, {"x-api-key": "k1"}, rate=200.0, seconds=0.25)
    finally:
        server.close()
        await server.wait_closed()
    assert result.statuses == Counter({status: 50})
    assert result.failed == 0
    assert len(result.latencies_ms) == 50
    assert len(seen) == 50
    assert all(r["x-api-key"] == "k1" and r["path"] == path for r in seen)


async def test_pacer_counts_a_refused_connection_as_failed() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    result = await paced("127.0.0.1", port, "/", {}, rate=100.0, seconds=0.05)
    assert result == LoadResult(0.05, Counter(), [], failed=5)


def _without_type(typed: dict) -> dict:
    return {k: v for k, v in typed.items() if k != "@type"}


def test_each_chain_is_tollways_listener_with_its_own_filters(tmp_path: Path) -> None:
    api = ["api_api_bench"]
    grpc = ["tollway_keymgr", "tollway_usage"]
    expected = {
        "none": (["envoy.filters.http.router"], False, api),
        "apikey": (
            [
                "envoy.filters.http.api_key_auth",
                "envoy.filters.http.local_ratelimit",
                "envoy.filters.http.router",
            ],
            False,
            api,
        ),
        "tollway": (
            ["envoy.filters.http.ext_authz", "envoy.filters.http.ratelimit", "envoy.filters.http.router"],
            True,
            [*grpc, *api, "tollway_throttle"],
        ),
        "authz": (["envoy.filters.http.ext_authz", "envoy.filters.http.router"], True, [*grpc, *api]),
    }
    settings = link_settings(tmp_path / "link", "mtls", 8080, ("127.0.0.1", 7070))
    for chain, (filters, logged, clusters) in expected.items():
        bootstrap = gateway_bootstrap(chain, settings, 9090, api_key="tw_key")
        typed = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"
        ]
        hcm = json_format.ParseDict(_without_type(typed), hcm_pb2.HttpConnectionManager())
        assert [f.name for f in hcm.http_filters] == filters, chain
        assert bool(hcm.access_log) == logged, chain
        built = bootstrap["static_resources"]["clusters"]
        assert [c["name"] for c in built] == clusters, chain
        # Tollway's link and health checks on the clusters that reach the (no-op) services.
        for cluster in built:
            reaches_services = cluster["name"].startswith("tollway_")
            assert ("transport_socket" in cluster) == reaches_services, cluster["name"]
            assert ("health_checks" in cluster) == reaches_services, cluster["name"]
        assert hcm.route_config.virtual_hosts, "the route table is inline (no ADS)"
        assert "dynamic_resources" not in bootstrap
    plaintext = gateway_bootstrap("tollway", link_settings(tmp_path / "plain", "none"), 9090)
    assert not any("transport_socket" in c for c in plaintext["static_resources"]["clusters"])
    with pytest.raises(ValueError, match="unknown chain"):
        gateway_bootstrap("fused", settings, 9090)


def test_a_mode_needing_what_this_checkout_lacks_is_not_available() -> None:
    assert mode_unavailable(TollwayMode("redis")) == ""
    assert mode_unavailable(TollwayMode("memory", {"TOLLWAY_RATELIMIT_STORE": "redis"})) == ""
    assert "not a setting" in mode_unavailable(TollwayMode(env={"TOLLWAY_NO_SUCH_SETTING": "1"}))
    assert "refused" in mode_unavailable(TollwayMode(env={"TOLLWAY_RATELIMIT_STORE": "floppy"}))
    assert "has no --no-such-option" in mode_unavailable(TollwayMode(up_args=("--no-such-option",)))
    assert mode_unavailable(TollwayMode(up_args=("--demo",))) == ""


def test_scenario_names_and_groups() -> None:
    assert _names(["gateway"]) == list(SCENARIOS)
    assert _names(["B,N", "C-memory", "N"]) == ["B", "N", "C-memory"]
    assert _names(["components"]) == ["check", "ratelimit", "ingest", "invoice", "idle"]
    with pytest.raises(SystemExit, match="unknown scenario 'Z'"):
        _names(["A,Z"])
    assert {row.floor for row in SCENARIOS.values() if row.mode is not None} == {"N", "F"}


def test_loop_lag_bounds_read_the_histograms_increase() -> None:
    from bench.gateway import FixedRun

    nothing = LoadResult(1.0)
    # 100 ticks: 98 within 1 ms, one between 10 and 25 ms, one between 50 and 100 ms.
    lag = {0.001: 98.0, 0.01: 98.0, 0.025: 99.0, 0.05: 99.0, 0.1: 100.0, 0.25: 100.0, math.inf: 100.0}
    run = FixedRun(500.0, nothing, nothing, lag)
    assert run.loop_lag_bound(0.5) == 0.001
    assert run.loop_lag_bound(0.99) == 0.025
    assert run.loop_lag_bound(1.0) == 0.1
    assert FixedRun(500.0, nothing, nothing).loop_lag_bound(0.99) is None
