"""Envoy authenticates to Tollway through a real Envoy, in both modes (tollway/envoy_auth.py):
- mtls (the default, and what every other e2e test runs on): every Tollway cluster, the bootstrap's
  xds cluster included, carries Envoy's client certificate, and Envoy's TLS handshakes show it is used;
- token: the whole request path (ADS, ext_authz, rate limit, access log) works with the token as
  initial metadata, and the token never reaches a log line;
- an Envoy without the credential, or naming a node ADS does not serve, gets no configuration.
Raw-client refusals of each RPC: tests/test_envoy_auth.py."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Stack, start_stack, stop_stack
from tests.usage.usage_stack import today, usage_stub, wait_until
from tollway.catalog.v1 import catalog_pb2
from tollway.envoy import XDS_CLUSTER, EnvoyProcess, bootstrap_config
from tollway.envoy_auth import EnvoyLink
from tollway.usage.v1 import usage_pb2
from tollway.vocabulary import EnvoyAuthMode

pytestmark = pytest.mark.e2e

TOLLWAY_CLUSTERS = (XDS_CLUSTER, "tollway_keymgr", "tollway_throttle", "tollway_usage")
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


@pytest.fixture(scope="module")
def token_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(
        Path(tmp_path_factory.mktemp("token-stack")),
        envoy_auth="token",
        envoy_token=secrets.token_urlsafe(32),
        usage_flush_ms=50,
    )
    try:
        yield started
    finally:
        stop_stack(started)


def clusters(envoy: EnvoyProcess) -> dict[str, dict[str, Any]]:
    """Every cluster Envoy runs (static and from ADS), by name."""
    dump = json.loads(envoy.admin_get("/config_dump"))
    [section] = [s for s in dump["configs"] if s["@type"].endswith("ClustersConfigDump")]
    found = {}
    for key in ("static_clusters", "dynamic_active_clusters"):
        for item in section.get(key, []):
            found[item["cluster"]["name"]] = item["cluster"]
    return found


def stat(envoy: EnvoyProcess, name: str) -> int:
    for line in envoy.admin_get(f"/stats?filter=^{name}$").splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def a_paying_customer(stack: Stack, per_minute: int) -> tuple[str, str]:
    """An API on a plan of `per_minute` requests, a subscribed application and its key: (path, key)."""
    plan = stack.create_plan("link", limits=catalog_pb2.PlanLimits(requests_per_minute=per_minute))
    api = stack.create_api("link", "/link/v1", [plan.id])
    application = stack.create_application("link-app")
    stack.subscribe(application.id, api.id, plan.id)
    return "/link/v1/hello", stack.issue_key(application.id).key


def counted(stack: Stack) -> dict[str, int]:
    """Today's usage of the whole stack by outcome class."""
    start, end = today()
    request = usage_pb2.GetUsageTotalsRequest(start_time=start, end_time=end)
    answer = stack.call(usage_stub(stack).GetUsageTotals, request)
    names = ("success", "throttled", "unauthorized")
    return {name: sum(getattr(group.counts, name) for group in answer.groups) for name in names}


def intruding_envoy(stack: Stack, work_dir: Path, node_id: str, link: EnvoyLink) -> EnvoyProcess:
    host, port = stack.settings.grpc_host_port
    envoy = EnvoyProcess(
        bootstrap_config(node_id, "intruder", host, port, "127.0.0.1", 0, link=link),
        work_dir=work_dir,
        concurrency=1,
    )
    envoy.start()
    return envoy


def refused(stack: Stack, fragment: str, timeout: float = 15.0) -> bool:
    """True once Tollway logged a refusal containing `fragment`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(fragment in line for line in stack.logs.lines):
            return True
        time.sleep(0.05)
    return False


def has_no_configuration(envoy: EnvoyProcess) -> bool:
    dump = json.loads(envoy.admin_get("/config_dump"))
    sections = {s["@type"].rsplit(".", 1)[-1]: s for s in dump["configs"]}
    return not sections["ClustersConfigDump"].get("dynamic_active_clusters") and not sections[
        "ListenersConfigDump"
    ].get("dynamic_listeners")


def wait_admin(envoy: EnvoyProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not envoy.admin_address_path.is_file() or not envoy.admin_address_path.read_text().strip():
        assert envoy.running, envoy.log_tail()
        assert time.monotonic() < deadline, "Envoy did not report its admin address"
        time.sleep(0.05)


# --- mtls: the default ----------------------------------------------------------------------------------


def test_mtls_every_tollway_cluster_presents_envoys_certificate(stack: Stack) -> None:
    assert stack.settings.envoy_auth == "mtls"
    path, key = a_paying_customer(stack, per_minute=100)
    response, _ = stack.wait_for_status(path, 200, {"x-api-key": key})
    assert response.status == 200
    running = clusters(stack.envoy)
    link = stack.settings.envoy_link
    for name in TOLLWAY_CLUSTERS:
        socket = running[name]["transport_socket"]["typed_config"]
        assert socket["@type"] == UPSTREAM_TLS, name
        [certificate] = socket["common_tls_context"]["tls_certificates"]
        assert certificate["certificate_chain"]["filename"] == link.client_cert_file
        validation = socket["common_tls_context"]["validation_context"]
        assert validation["trusted_ca"]["filename"] == link.ca_file
        assert validation["match_typed_subject_alt_names"][0]["matcher"]["exact"] == link.server_name
    # The connections are TLS: Envoy completed handshakes to each service it called.
    for name in ("tollway_xds", "tollway_keymgr", "tollway_throttle"):
        assert stat(stack.envoy, f"cluster.{name}.ssl.handshake") >= 1, name
    assert wait_until(lambda: stat(stack.envoy, "cluster.tollway_usage.ssl.handshake") >= 1)


def test_mtls_an_envoy_naming_an_unknown_node_gets_no_configuration(stack: Stack, tmp_path: Path) -> None:
    """Envoy's certificate, but a node id ADS does not serve (TOLLWAY_ENVOY_NODES)."""
    envoy = intruding_envoy(stack, tmp_path, "intruder", stack.settings.envoy_link)
    try:
        wait_admin(envoy)
        assert refused(stack, "refused an ADS stream from unknown node 'intruder'")
        assert has_no_configuration(envoy)
        assert stack.run(_no_state_for("intruder", stack))
    finally:
        envoy.stop()


async def _no_state_for(node_id: str, stack: Stack) -> bool:
    from xds.process import Xds

    xds = stack.process.find(Xds)
    return xds is not None and xds.ads.node(node_id) is None and xds.ads.node("e2e") is not None


# --- token ----------------------------------------------------------------------------------------------


def test_token_mode_carries_the_whole_request_path(token_stack: Stack) -> None:
    stack = token_stack
    path, key = a_paying_customer(stack, per_minute=2)
    first, _ = stack.wait_for_status(path, 200, {"x-api-key": key})
    assert first.status == 200  # ADS and ext_authz with the token
    assert stack.get(path, {"x-api-key": key}).status == 200
    throttled = stack.get(path, {"x-api-key": key})
    assert throttled.status == 429  # the rate limit service with the token
    assert stack.get(path).status == 401

    # The access log with the token: each outcome reached usage.
    def all_counted() -> bool:
        totals = counted(stack)
        return totals["success"] >= 2 and totals["throttled"] >= 1 and totals["unauthorized"] >= 1

    assert wait_until(all_counted), counted(stack)
    token = stack.settings.envoy_token
    assert not [line for line in stack.logs.lines if token in line]
    assert token not in stack.envoy.log_tail(100_000)


def test_token_mode_an_envoy_with_another_token_gets_no_configuration(
    token_stack: Stack, tmp_path: Path
) -> None:
    stack = token_stack
    wrong = EnvoyLink(EnvoyAuthMode.TOKEN, token=secrets.token_urlsafe(32))
    envoy = intruding_envoy(stack, tmp_path, stack.settings.envoy_node_id, wrong)
    try:
        wait_admin(envoy)
        assert refused(stack, "StreamAggregatedResources: missing or invalid Envoy bearer token")
        assert has_no_configuration(envoy)
    finally:
        envoy.stop()
