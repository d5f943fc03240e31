"""Tollway's ADS driving a real Envoy 1.40: routes, rewrites, 404s, live updates, NACKs."""

from __future__ import annotations

import dataclasses
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from xds_harness import EchoHandler, Gateway, wait_until

from tollway.catalog.view import PublishedApi
from xds.resources import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    ROUTE_CONFIG_NAME,
    ROUTE_TYPE,
    GatewayOptions,
    system_ca_file,
)

pytestmark = pytest.mark.e2e


def _status(gateway: Gateway, path: str) -> int:
    return gateway.get(path).status


def test_route_reaches_upstream_with_rewritten_path(gateway: Gateway) -> None:
    gateway.publish([gateway.api("weather", "/weather/v1", "/base"), gateway.api("plain", "/plain/v2")])
    wait_until(lambda: _status(gateway, "/plain/v2/x") == 200, 2)

    reply = gateway.get("/weather/v1/today?x=1")
    assert reply.status == 200
    seen = reply.json()
    assert seen["path"] == "/base/today?x=1"
    assert seen["headers"]["host"] == f"127.0.0.1:{gateway.upstream_port}"
    assert seen["headers"]["x-request-id"]
    assert reply.headers["x-request-id"] == seen["headers"]["x-request-id"]

    assert gateway.get("/weather/v1").json()["path"] == "/base"
    assert gateway.get("/weather/v1?q=2").json()["path"] == "/base?q=2"
    assert gateway.get("/plain/v2").json()["path"] == "/"
    assert gateway.get("/plain/v2/a/b").json()["path"] == "/a/b"
    # path_separated_prefix: a longer segment is not the API.
    assert gateway.get("/weather/v10/today").status == 404

    # keymgr is told which API is being called.
    check = next(c for c in reversed(gateway.authz.checks) if c.attributes.request.http.path == "/weather/v1")
    assert dict(check.attributes.context_extensions) == {
        "api_id": "weather",
        "api_name": "name-weather",
        "api_version": "v1",
    }


def test_check_carries_only_the_headers_a_decision_reads(gateway: Gateway) -> None:
    gateway.publish([gateway.api("private", "/private/v1")])
    wait_until(lambda: _status(gateway, "/private/v1/x") == 200, 2)
    sent = {
        "x-api-key": "tw_key",
        "authorization": "Bearer tw_other",
        "cookie": "session=secret",
        "x-custom": "1",
    }
    reply = gateway.get("/private/v1/headers", headers=sent)
    assert reply.status == 200
    # The upstream still gets every header; keymgr only the key's two and the request id.
    assert {"cookie", "x-custom"} <= set(reply.json()["headers"])
    check = next(
        c for c in reversed(gateway.authz.checks) if c.attributes.request.http.path == "/private/v1/headers"
    )
    headers = check.attributes.request.http.headers
    assert headers["x-api-key"] == "tw_key" and headers["authorization"] == "Bearer tw_other"
    assert headers["x-request-id"]
    assert "cookie" not in headers and "x-custom" not in headers


def test_unknown_path_is_a_problem_json_404_without_keymgr(gateway: Gateway) -> None:
    gateway.publish([gateway.api("weather", "/weather/v1", "/base")])
    wait_until(lambda: _status(gateway, "/weather/v1") == 200, 2)
    checks_before = len(gateway.authz.checks)

    reply = gateway.get("/no/such/api")
    assert reply.status == 404
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["status"] == 404
    assert problem["title"] == "Not Found"
    # The same members as every other refusal (keymgr's, the throttle's), the request id Envoy's.
    assert problem["type"] == "https://tollway.dev/problems/not_found"
    assert problem["reason"] == "not_found"
    assert {"type", "title", "status", "detail", "reason", "request_id"} == problem.keys()
    assert problem["request_id"]
    assert isinstance(problem["status"], int), reply.body  # a JSON integer, as in the other refusals
    assert len(gateway.authz.checks) == checks_before


def test_api_added_and_removed_while_envoy_runs(gateway: Gateway) -> None:
    weather = gateway.api("weather", "/weather/v1", "/base")
    gateway.publish([weather])
    wait_until(lambda: _status(gateway, "/weather/v1") == 200, 2)
    assert gateway.get("/maps/v1/tile").status == 404

    started = time.monotonic()
    gateway.publish([weather, gateway.api("maps", "/maps/v1", "/m")])
    wait_until(lambda: _status(gateway, "/maps/v1/tile") == 200, 1.0)
    assert time.monotonic() - started < 1.0
    assert gateway.get("/maps/v1/tile").json()["path"] == "/m/tile"

    started = time.monotonic()
    gateway.publish([weather])
    wait_until(lambda: _status(gateway, "/maps/v1/tile") == 404, 1.0)
    assert time.monotonic() - started < 1.0
    assert _status(gateway, "/weather/v1") == 200
    # The cluster left only after the routes stopped using it.
    snapshot = gateway.cache.current()
    assert snapshot is not None
    gateway.wait_accepted(CLUSTER_TYPE, snapshot.versions[CLUSTER_TYPE])
    clusters = gateway.envoy.admin_get("/clusters?format=json")
    assert "api_maps" not in clusters
    assert "api_weather" in clusters


def test_nacked_snapshot_keeps_previous_routes_and_is_not_resent(gateway: Gateway) -> None:
    weather = gateway.api("weather", "/weather/v1", "/base")
    gateway.publish([weather])
    wait_until(lambda: _status(gateway, "/weather/v1") == 200, 2)
    good = gateway.cache.current()
    assert good is not None
    gateway.wait_accepted(ROUTE_TYPE, good.versions[ROUTE_TYPE])

    # A route whose rewrite regex does not compile: Envoy must reject the whole route table.
    broken = gateway.resources([weather, gateway.api("broken", "/broken/v1")])
    table = broken[ROUTE_TYPE][ROUTE_CONFIG_NAME]
    broken_route = next(r for r in table.virtual_hosts[0].routes if r.name == "api_broken")
    broken_route.route.regex_rewrite.pattern.regex = "^/broken/v1(["
    nacks_before = gateway.ads.nacks[ROUTE_TYPE]
    bad = gateway.cache.set_snapshot(broken)

    wait_until(lambda: gateway.ads.nacks[ROUTE_TYPE] > nacks_before, 3)
    node = gateway.ads.node(gateway.node_id)
    assert node is not None
    assert bad.versions[ROUTE_TYPE] in node.rejected_versions(ROUTE_TYPE)
    assert "missing ]" in node.last_error[ROUTE_TYPE]  # RE2 says what is wrong with the pattern
    assert node.accepted_versions[ROUTE_TYPE] == good.versions[ROUTE_TYPE]

    # Previous routes keep serving; the new API never appeared.
    assert gateway.get("/weather/v1/x").json()["path"] == "/base/x"
    assert _status(gateway, "/broken/v1") == 404
    assert gateway.route_versions() == [good.versions[ROUTE_TYPE]]

    # The rejected version is not pushed again and again.
    sent = gateway.ads.responses_sent[ROUTE_TYPE]
    time.sleep(1.0)
    assert gateway.ads.responses_sent[ROUTE_TYPE] == sent
    assert gateway.ads.nacks[ROUTE_TYPE] == nacks_before + 1

    # A newer, valid snapshot goes through.
    gateway.publish([weather, gateway.api("fixed", "/fixed/v1")])
    wait_until(lambda: _status(gateway, "/fixed/v1") == 200, 2)
    fixed = gateway.cache.current()
    assert fixed is not None
    gateway.wait_accepted(ROUTE_TYPE, fixed.versions[ROUTE_TYPE])
    assert gateway.route_versions() == [fixed.versions[ROUTE_TYPE]]


def test_config_dump_shows_accepted_versions(gateway: Gateway) -> None:
    gateway.publish([gateway.api("weather", "/weather/v1", "/base"), gateway.api("dump", "/dump/v1")])
    wait_until(lambda: _status(gateway, "/dump/v1") == 200, 2)
    snapshot = gateway.cache.current()
    assert snapshot is not None
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        gateway.wait_accepted(type_url, snapshot.versions[type_url])
    assert gateway.route_versions() == [snapshot.versions[ROUTE_TYPE]]
    assert gateway.dump_section("ClustersConfigDump")["version_info"] == snapshot.versions[CLUSTER_TYPE]
    listeners = gateway.dump_section("ListenersConfigDump")
    assert listeners["version_info"] == snapshot.versions[LISTENER_TYPE]
    assert [entry["active_state"]["version_info"] for entry in listeners["dynamic_listeners"]] == [
        snapshot.versions[LISTENER_TYPE]
    ]


def test_access_log_entries_reach_usage(gateway: Gateway) -> None:
    gateway.publish([gateway.api("weather", "/weather/v1", "/base")])
    wait_until(lambda: _status(gateway, "/weather/v1/logged") == 200, 2)

    def logged() -> bool:
        return any(
            entry.request.original_path == "/weather/v1/logged"
            for message in gateway.access_log.messages
            for entry in message.http_logs.log_entry
        )

    wait_until(logged, 5)
    identified = [m for m in gateway.access_log.messages if m.HasField("identifier")]
    assert identified[0].identifier.log_name == "tollway"
    assert identified[0].identifier.node.id == gateway.node_id


def test_unreachable_keymgr_fails_closed(gateway: Gateway) -> None:
    weather = gateway.api("weather", "/weather/v1", "/base")
    dead_keymgr = GatewayOptions(
        listener_host="127.0.0.1",
        listener_port=gateway.listener_port,
        keymgr_endpoints=(("127.0.0.1", 1),),
        usage_endpoints=gateway.options.usage_endpoints,
    )
    try:
        gateway.publish([weather], dead_keymgr)
        wait_until(lambda: _status(gateway, "/weather/v1") == 503, 3)
    finally:
        gateway.publish([weather])
    wait_until(lambda: _status(gateway, "/weather/v1") == 200, 3)


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An HTTPS echo server for "localhost" with a throwaway self-signed certificate (its own CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="xds-test-tls-upstream", daemon=True).start()
    try:
        yield server.server_address[1], cert
    finally:
        server.shutdown()
        server.server_close()


def test_https_upstream_is_verified_by_name(gateway: Gateway, tls_upstream: tuple[int, Path]) -> None:
    port, cert = tls_upstream
    secure = PublishedApi("secure", "secure", "v1", "/secure/v1", (f"https://localhost:{port}/inner",))
    trusting = dataclasses.replace(gateway.options, upstream_ca_file=str(cert))
    gateway.publish([secure], trusting)
    reply = wait_until(lambda: (r := gateway.get("/secure/v1/x")).status == 200 and r, 3)
    assert reply.json()["path"] == "/inner/x"
    assert reply.json()["headers"]["host"] == f"localhost:{port}"

    # The same upstream checked against another CA bundle (the system's) must fail, not pass silently.
    gateway.publish([secure], dataclasses.replace(gateway.options, upstream_ca_file=system_ca_file()))
    wait_until(lambda: _status(gateway, "/secure/v1/x") == 503, 3)


def test_api_with_two_upstream_hosts_balances_and_names_each(gateway: Gateway) -> None:
    port = gateway.upstream_port
    both = PublishedApi(
        "both", "both", "v1", "/both/v1", (f"http://127.0.0.1:{port}/p", f"http://localhost:{port}/p")
    )
    gateway.publish([both])
    wait_until(lambda: _status(gateway, "/both/v1/x") == 200, 3)
    hosts = {gateway.get("/both/v1/x").json()["headers"]["host"] for _ in range(8)}
    # Round robin over both endpoints, each addressed by its own name and port.
    assert hosts == {f"127.0.0.1:{port}", f"localhost:{port}"}
