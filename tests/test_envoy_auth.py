"""Only Envoy is served on the Envoy-facing port (tollway/envoy_auth.py), checked on a whole Tollway
process with raw gRPC clients: every Envoy-facing RPC without Envoy's credential is refused (token mode:
UNAUTHENTICATED; mtls: the handshake fails without a certificate from Tollway's CA, and a certificate
that CA issued to another name gets UNAUTHENTICATED), forged usage and quota spend count nothing while
the same calls with the credential do, ADS serves configured nodes only, and plaintext is explicit and
warned about. The settings' side: the generated PKI, tokens, partial TLS settings refused.
Through a real Envoy: tests/e2e/test_envoy_auth_e2e.py."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.harness import free_port
from tests.support import EnvoyCredential, logged_text
from tests.test_bad_input_rpc import METADATA, TOKEN, Running, Setup, setup
from tests.usage.usage_entries import entry, message
from tollway import envoy_contract as contract
from tollway.app.runner import TollwayProcess
from tollway.db import Database
from tollway.envoy_pki import PkiFiles, ensure_pki, issue_client_certificate
from tollway.errors import StartupRefused
from tollway.settings import Settings
from tollway.throttle.v1 import throttle_pb2, throttle_pb2_grpc
from tollway.usage.v1 import usage_pb2, usage_pb2_grpc
from xds.process import Xds
from xds.resources import CLUSTER_TYPE

Code = grpc.StatusCode
ENVOY_TOKEN = "envoy-link-test-token-0123456789"
# The Envoy-facing methods, as Envoy (and an attacker) call them.
ENVOY_METHODS = ("Check", "ShouldRateLimit", "StreamAccessLogs", "StreamAggregatedResources")


@dataclass
class Process:
    settings: Settings
    running: Running
    envoy: EnvoyCredential

    @property
    def admin(self) -> grpc.aio.Channel:
        return self.running.admin


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite only: what is checked here is the port, not the store."""
    db = Database(f"sqlite:///{tmp_path / 'tollway.db'}")
    await db.create_schema()
    try:
        yield db
    finally:
        await db.dispose()


async def start(tmp_path: Path, database: Database, mode: str, **overrides: Any) -> Process:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database.url,
        grpc_addr=f"127.0.0.1:{free_port()}",
        admin_addr=f"127.0.0.1:{free_port()}",
        envoy_admin_addr=f"127.0.0.1:{free_port()}",
        portal_addr=f"127.0.0.1:{free_port()}",
        portal_grpc_addr=f"127.0.0.1:{free_port()}",
        admin_token=TOKEN,
        change_poll_seconds=0.1,
        usage_flush_ms=50,
        envoy_auth=mode,
        **overrides,
    ).resolved()
    process = TollwayProcess(settings)
    await process.start()
    envoy = EnvoyCredential(settings)
    running = Running(process, grpc.aio.insecure_channel(settings.admin_addr), envoy.aio_channel(), database)
    return Process(settings, running, envoy)


async def stop(process: Process) -> None:
    await process.running.admin.close()
    await process.running.envoy_facing.close()
    await process.running.process.stop()


@pytest.fixture(params=["mtls", "token"])
async def process(
    request: pytest.FixtureRequest, tmp_path: Path, database: Database
) -> AsyncIterator[Process]:
    started = await start(tmp_path, database, request.param, envoy_token=ENVOY_TOKEN)
    try:
        yield started
    finally:
        await stop(started)


# --- the calls ---------------------------------------------------------------------------------------

EnvoyCall = Callable[[grpc.aio.Channel, tuple[tuple[str, str], ...]], Awaitable[Any]]


def check_request(ids: Setup) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path = "GET", "/weather/today"
    http.headers.update({":path": "/weather/today", contract.API_KEY_HEADER: "tw_forged_key"})
    request.attributes.context_extensions[contract.CONTEXT_API_ID] = ids.api_id
    return request


def rate_limit_request(ids: Setup, hits: int) -> rls_pb2.RateLimitRequest:
    values = {
        contract.SUBSCRIPTION_ID: ids.subscription_id,
        contract.PLAN_ID: ids.plan_id,
        contract.APPLICATION_ID: ids.application_id,
        contract.API_ID: ids.api_id,
    }
    entries = [
        ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=values[k]) for k in contract.DESCRIPTOR_KEYS
    ]
    return rls_pb2.RateLimitRequest(
        domain=contract.RLS_DOMAIN,
        descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=entries)],
        hits_addend=hits,
    )


def forged_usage(ids: Setup, node_id: str, count: int) -> list[Any]:
    """An access-log stream of `count` successful requests of a real subscription."""
    entries = [
        entry(
            200,
            api_id=ids.api_id,
            subscription_id=ids.subscription_id,
            application_id=ids.application_id,
            plan_id=ids.plan_id,
        )
        for _ in range(count)
    ]
    return [message(entries, node_id=node_id)]


async def first_ads_response(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], node_id: str
) -> discovery_pb2.DiscoveryResponse:
    stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
        metadata=metadata, timeout=5
    )
    await stream.write(discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id=node_id), type_url=CLUSTER_TYPE))
    try:
        return await stream.read()  # type: ignore[no-any-return]
    finally:
        stream.cancel()


def envoy_calls(ids: Setup, node_id: str) -> dict[str, EnvoyCall]:
    """Each Envoy-facing RPC with a request that Envoy's credential would get served."""
    return {
        "Check": lambda channel, metadata: external_auth_pb2_grpc.AuthorizationStub(channel).Check(
            check_request(ids), metadata=metadata, timeout=5
        ),
        "ShouldRateLimit": lambda channel, metadata: rls_pb2_grpc.RateLimitServiceStub(
            channel
        ).ShouldRateLimit(rate_limit_request(ids, 1), metadata=metadata, timeout=5),
        "StreamAccessLogs": lambda channel, metadata: als_pb2_grpc.AccessLogServiceStub(
            channel
        ).StreamAccessLogs(iter(forged_usage(ids, node_id, 1)), metadata=metadata, timeout=5),
        "StreamAggregatedResources": lambda channel, metadata: first_ads_response(channel, metadata, node_id),
    }


async def refused_with(call: Awaitable[Any]) -> Code:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def quota_used(process: Process, ids: Setup) -> int:
    """The subscription's use of its period as the throttle counts it (once its view has it)."""
    stub = throttle_pb2_grpc.QuotaServiceStub(process.admin)
    request = throttle_pb2.GetSubscriptionQuotaRequest(subscription_id=ids.subscription_id)
    for _ in range(100):
        try:
            answer = await stub.GetSubscriptionQuota(request, metadata=METADATA, timeout=5)
            break
        except grpc.aio.AioRpcError as error:
            if error.code() != Code.NOT_FOUND:
                raise
            await asyncio.sleep(0.05)
    # The billing period is counted whatever the plan's limits.
    [period] = [w for w in answer.windows if w.window == throttle_pb2.WINDOW_BILLING_PERIOD]
    return int(period.used)


async def usage_received(process: Process) -> int:
    stats = await usage_pb2_grpc.UsageServiceStub(process.admin).GetIngestionStats(
        usage_pb2.GetIngestionStatsRequest(), metadata=METADATA, timeout=5
    )
    return int(stats.received)


def other_name_certificate(process: Process, directory: Path) -> grpc.ChannelCredentials:
    """A client certificate from Tollway's own Envoy CA, issued to someone who is not Envoy."""
    pki = PkiFiles.under(process.settings.data_dir / "envoy-tls")
    cert, key = directory / "intruder.pem", directory / "intruder.key"
    issue_client_certificate(pki, "intruder", cert, key)
    return grpc.ssl_channel_credentials(pki.ca_cert.read_bytes(), key.read_bytes(), cert.read_bytes())


def tls_options(process: Process) -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", process.settings.envoy_tls_server_name)]


# --- refused without the credential --------------------------------------------------------------------


async def test_token_mode_refuses_every_envoy_facing_rpc_without_the_token(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    process = await start(tmp_path, database, "token", envoy_token=ENVOY_TOKEN)
    try:
        ids = await setup(process.running)
        calls = envoy_calls(ids, process.settings.envoy_node_id)
        assert sorted(calls) == sorted(ENVOY_METHODS)
        wrong = (("authorization", "Bearer " + ENVOY_TOKEN[:-1] + "x"),)
        admin_token = (("authorization", f"Bearer {TOKEN}"),)
        async with grpc.aio.insecure_channel(process.settings.grpc_addr) as raw:
            for name, call in calls.items():
                for metadata in ((), wrong, admin_token, (("authorization", ENVOY_TOKEN),)):
                    assert await refused_with(call(raw, metadata)) == Code.UNAUTHENTICATED, (name, metadata)
            # The same calls with the token are served.
            for name, call in calls.items():
                assert await call(raw, process.envoy.metadata) is not None, name
            # Health stays open, as on the admin port.
            health = await health_pb2_grpc.HealthStub(raw).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await stop(process)
    logged = logged_text(caplog.records)
    assert "missing or invalid Envoy bearer token" in logged
    assert ENVOY_TOKEN not in logged and ENVOY_TOKEN[:-1] not in logged


async def test_mtls_mode_refuses_every_envoy_facing_rpc_without_envoys_certificate(
    tmp_path: Path, database: Database
) -> None:
    process = await start(tmp_path, database, "mtls")
    link = process.settings.envoy_link
    ca = Path(link.ca_file).read_bytes()
    foreign = ensure_pki(tmp_path / "foreign", "tollway", "tollway-envoy")
    handshake_refused = {
        "plaintext": grpc.aio.insecure_channel(process.settings.grpc_addr),
        "no client certificate": grpc.aio.secure_channel(
            process.settings.grpc_addr, grpc.ssl_channel_credentials(ca), options=tls_options(process)
        ),
        # The right name, signed by another CA.
        "another CA": grpc.aio.secure_channel(
            process.settings.grpc_addr,
            grpc.ssl_channel_credentials(
                ca, foreign.client_key.read_bytes(), foreign.client_cert.read_bytes()
            ),
            options=tls_options(process),
        ),
    }
    intruder = grpc.aio.secure_channel(
        process.settings.grpc_addr, other_name_certificate(process, tmp_path), options=tls_options(process)
    )
    try:
        ids = await setup(process.running)
        calls = envoy_calls(ids, process.settings.envoy_node_id)
        for what, channel in handshake_refused.items():
            for name, call in calls.items():
                # No TLS session, so no RPC: grpc reports the connection, not the call, as failed.
                assert await refused_with(call(channel, ())) == Code.UNAVAILABLE, (what, name)
        for name, call in calls.items():
            assert await refused_with(call(intruder, ())) == Code.UNAUTHENTICATED, name
        # Health and reflection stay open to any certificate from the CA.
        health = await health_pb2_grpc.HealthStub(intruder).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        for name, call in calls.items():
            assert await call(process.running.envoy_facing, ()) is not None, name
    finally:
        for channel in (*handshake_refused.values(), intruder):
            await channel.close()
        await stop(process)


async def test_forged_usage_and_quota_spend_count_nothing(process: Process, tmp_path: Path) -> None:
    """What an attacker did before (500 forged access-log entries counted; hits_addend 100 spent a
    customer's quota) now changes nothing; the same calls with Envoy's credential do count."""
    ids = await setup(process.running)
    node = process.settings.envoy_node_id
    if process.settings.envoy_auth == "token":
        attacker, attacker_metadata = grpc.aio.insecure_channel(process.settings.grpc_addr), ()
    else:
        attacker = grpc.aio.secure_channel(
            process.settings.grpc_addr,
            other_name_certificate(process, tmp_path),
            options=tls_options(process),
        )
        attacker_metadata = ()
    try:
        received_before = await usage_received(process)
        with pytest.raises(grpc.aio.AioRpcError):
            await als_pb2_grpc.AccessLogServiceStub(attacker).StreamAccessLogs(
                iter(forged_usage(ids, node, 500)), metadata=attacker_metadata, timeout=5
            )
        with pytest.raises(grpc.aio.AioRpcError):
            await rls_pb2_grpc.RateLimitServiceStub(attacker).ShouldRateLimit(
                rate_limit_request(ids, 100), metadata=attacker_metadata, timeout=5
            )
        assert await quota_used(process, ids) == 0
        assert await usage_received(process) == received_before

        # Envoy's credential: the same kinds of calls are served and counted.
        envoy, metadata = process.running.envoy_facing, process.envoy.metadata
        await als_pb2_grpc.AccessLogServiceStub(envoy).StreamAccessLogs(
            iter(forged_usage(ids, node, 3)), metadata=metadata, timeout=5
        )
        answer = await rls_pb2_grpc.RateLimitServiceStub(envoy).ShouldRateLimit(
            rate_limit_request(ids, 1), metadata=metadata, timeout=5
        )
        assert answer.overall_code == rls_pb2.RateLimitResponse.OK
        assert await quota_used(process, ids) == 1
        # Received once written to the WAL (group commit): the 3 arrive, the 500 forged never do.
        for _ in range(200):
            if await usage_received(process) >= received_before + 3:
                break
            await asyncio.sleep(0.05)
        assert await usage_received(process) == received_before + 3
    finally:
        await attacker.close()


async def test_ads_serves_configured_nodes_only(process: Process) -> None:
    channel, metadata = process.running.envoy_facing, process.envoy.metadata
    xds = process.running.process.find(Xds)
    assert xds is not None
    for node_id in ("attacker", "", "x" * 10_000):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await first_ads_response(channel, metadata, node_id)
        assert caught.value.code() == Code.PERMISSION_DENIED
        assert "node" in (caught.value.details() or "")
        assert len(caught.value.details() or "") < 300
    assert xds.ads.nodes == {}  # no state for a node that was refused
    assert sum(xds.ads.responses_sent.values()) == 0
    served = await first_ads_response(channel, metadata, process.settings.envoy_node_id)
    assert served.type_url == CLUSTER_TYPE and served.resources
    assert set(xds.ads.nodes) == {process.settings.envoy_node_id}


async def test_plaintext_is_explicit_and_warned_about(
    tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    assert Settings.read_env({}).envoy_auth == "mtls"
    caplog.set_level(logging.WARNING)
    process = await start(tmp_path, database, "none")
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("TOLLWAY_ENVOY_AUTH=none" in line for line in warnings), warnings
        # Anyone is Envoy now: the raw plaintext client is served.
        async with grpc.aio.insecure_channel(process.settings.grpc_addr) as raw:
            ids = await setup(process.running)
            assert await envoy_calls(ids, process.settings.envoy_node_id)["Check"](raw, ()) is not None
    finally:
        await stop(process)


# --- settings -------------------------------------------------------------------------------------------


def test_the_embedded_default_generates_a_private_ca_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data").resolved()
    directory = tmp_path / "data" / "envoy-tls"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.iterdir())
    assert [p.name for p in files] == [
        "ca.key",
        "ca.pem",
        "envoy.key",
        "envoy.pem",
        "server.key",
        "server.pem",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    contents = {p.name: p.read_bytes() for p in files}
    # Both sides of the link point at the generated files.
    link, facing = settings.envoy_link, settings.envoy_facing
    assert Path(link.ca_file) == directory / "ca.pem" == Path(facing.client_ca_file)
    assert Path(link.client_cert_file) == directory / "envoy.pem"
    assert Path(facing.cert_file) == directory / "server.pem"
    # Each certificate for its role only.
    server = x509.load_pem_x509_certificate(contents["server.pem"])
    client = x509.load_pem_x509_certificate(contents["envoy.pem"])
    usage = x509.ExtendedKeyUsage
    assert list(server.extensions.get_extension_for_class(usage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert list(client.extensions.get_extension_for_class(usage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "tollway" in san.get_values_for_type(x509.DNSName)
    # A second start reuses them; another name asked for issues new ones.
    Settings(data_dir=tmp_path / "data").resolved()
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == contents
    Settings(data_dir=tmp_path / "data", envoy_tls_server_name="tollway.internal").resolved()
    assert (directory / "server.pem").read_bytes() != contents["server.pem"]


def test_tls_files_of_your_own_are_all_or_nothing(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "own", "tollway", "tollway-envoy")
    own = Settings(
        data_dir=tmp_path / "data",
        envoy_tls_cert_file=str(pki.server_cert),
        envoy_tls_key_file=str(pki.server_key),
        envoy_tls_client_ca_file=str(pki.ca_cert),
        envoy_tls_client_cert_file=str(pki.client_cert),
        envoy_tls_client_key_file=str(pki.client_key),
    )
    resolved = own.resolved()
    assert resolved.envoy_tls_ca_file == str(pki.ca_cert)  # Envoy trusts the client CA by default
    assert not (tmp_path / "data" / "envoy-tls").exists()
    with pytest.raises(StartupRefused, match="TOLLWAY_ENVOY_TLS_CLIENT_KEY"):
        replace(own, envoy_tls_client_key_file="").resolved()


def test_token_mode_takes_a_given_token_a_file_or_generates_one(tmp_path: Path) -> None:
    generated = Settings(data_dir=tmp_path / "a", envoy_auth="token").resolved()
    token_file = tmp_path / "a" / "envoy-token"
    assert generated.envoy_token == token_file.read_text() and len(generated.envoy_token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert generated.envoy_link.call_metadata() == (("authorization", f"Bearer {generated.envoy_token}"),)
    assert ENVOY_TOKEN not in repr(Settings(envoy_token=ENVOY_TOKEN))
    (tmp_path / "token").write_text(ENVOY_TOKEN + "\n")
    from_file = Settings.from_env(
        {
            "TOLLWAY_DATA_DIR": str(tmp_path / "b"),
            "TOLLWAY_ENVOY_AUTH": "token",
            "TOLLWAY_ENVOY_TOKEN_FILE": str(tmp_path / "token"),
        }
    )
    assert from_file.envoy_token == ENVOY_TOKEN
    for bad in ("short", "has a space in the middle of it", "non-ascii-tokén-0123456789"):
        with pytest.raises(StartupRefused, match="TOLLWAY_ENVOY_TOKEN"):
            Settings(data_dir=tmp_path / "c", envoy_auth="token", envoy_token=bad).resolved()


def test_the_nodes_ads_serves_default_to_the_launchers_own(tmp_path: Path) -> None:
    environ = {"TOLLWAY_DATA_DIR": str(tmp_path), "TOLLWAY_ENVOY_AUTH": "none"}
    assert Settings.from_env(environ).envoy_nodes == ("tollway-gateway",)
    environ["TOLLWAY_ENVOY_NODES"] = "edge-1, edge-2,edge-1,"
    assert Settings.from_env(environ).envoy_nodes == ("edge-1", "edge-2")
