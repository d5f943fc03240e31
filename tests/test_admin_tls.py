"""The admin port over TLS and mTLS (certificates made by openssl for the test), and the CLI reaching it."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from tests.e2e.harness import free_port
from tollway.app.cli import app
from tollway.app.runner import TollwayProcess
from tollway.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from tollway.settings import Settings

TOKEN = (("authorization", "Bearer tls-test-token"),)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        cwd=d,
    )
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d,
        )  # fmt: skip
    return d


async def serve(settings: Settings) -> TollwayProcess:
    process = TollwayProcess(settings)
    await process.start()
    return process


@pytest.fixture
async def tls_settings(tmp_path: Path, pki: Path) -> AsyncIterator[Settings]:
    yield Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'tollway.db'}",
        components=("admin",),
        admin_addr=f"127.0.0.1:{free_port()}",
        admin_token="tls-test-token",
        admin_tls_cert_file=str(pki / "server.pem"),
        admin_tls_key_file=str(pki / "server.key"),
    ).resolved()


async def list_plans(channel: grpc.aio.Channel) -> catalog_pb2.ListPlansResponse:
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    return await stub.ListPlans(catalog_pb2.ListPlansRequest(), metadata=TOKEN, timeout=5)


async def test_admin_over_tls(tls_settings: Settings, pki: Path) -> None:
    process = await serve(tls_settings)
    try:
        credentials = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
        async with grpc.aio.secure_channel(tls_settings.admin_addr, credentials) as channel:
            assert (await list_plans(channel)).plans is not None
        async with grpc.aio.insecure_channel(tls_settings.admin_addr) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_plans(plaintext)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await process.stop()


async def test_admin_over_mtls_requires_a_client_certificate(tls_settings: Settings, pki: Path) -> None:
    process = await serve(replace(tls_settings, admin_tls_client_ca_file=str(pki / "ca.pem")))
    ca = (pki / "ca.pem").read_bytes()
    try:
        async with grpc.aio.secure_channel(
            tls_settings.admin_addr, grpc.ssl_channel_credentials(ca)
        ) as anonymous:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_plans(anonymous)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        client = grpc.ssl_channel_credentials(
            ca, (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes()
        )
        async with grpc.aio.secure_channel(tls_settings.admin_addr, client) as channel:
            assert (await list_plans(channel)).plans is not None
    finally:
        await process.stop()


async def test_cli_reaches_the_tls_admin_port(tls_settings: Settings, pki: Path) -> None:
    process = await serve(replace(tls_settings, admin_tls_client_ca_file=str(pki / "ca.pem")))
    env = {
        "TOLLWAY_ADMIN_ADDR": tls_settings.admin_addr,
        "TOLLWAY_ADMIN_TOKEN": "tls-test-token",
        "TOLLWAY_ADMIN_TLS_CA": str(pki / "ca.pem"),
        "TOLLWAY_ADMIN_TLS_CLIENT_CERT": str(pki / "client.pem"),
        "TOLLWAY_ADMIN_TLS_CLIENT_KEY": str(pki / "client.key"),
    }
    try:
        # The CLI is synchronous: run it off the event loop that serves the admin port.
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["plan", "create", "tls-plan", "--per-minute", "5"], env=env
        )
        assert result.exit_code == 0, result.output
        assert '"tls-plan"' in result.output
    finally:
        await process.stop()
