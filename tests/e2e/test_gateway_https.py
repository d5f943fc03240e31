"""HTTPS at the gateway through a real Envoy: a CA and a server certificate made in the test, the stack
started with TOLLWAY_GATEWAY_TLS_CERT/_KEY (and the HTTP redirect); curl --cacert over HTTP/2 and
HTTP/1.1 gets 200; the files replaced by another certificate are served without restarting Envoy, and a
mismatched pair written meanwhile is never served."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, free_port, start_stack, stop_stack
from tests.gateway_certs import CertAuthority, write_pair

pytestmark = pytest.mark.e2e

CA = CertAuthority()


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = Path(tmp_path_factory.mktemp("gateway-tls"))
    (directory / "ca.pem").write_bytes(CA.pem)
    write_pair(CA.issue("gateway-first"), directory / "cert.pem", directory / "key.pem")
    return directory


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> Iterator[Stack]:
    started = start_stack(
        Path(tmp_path_factory.mktemp("https")),
        gateway_tls_cert_file=str(tls_dir / "cert.pem"),
        gateway_tls_key_file=str(tls_dir / "key.pem"),
        gateway_http_redirect_addr=f"127.0.0.1:{free_port()}",
    )
    try:
        yield started
    finally:
        stop_stack(started)


@pytest.fixture(scope="module")
def key(stack: Stack) -> str:
    plan = stack.create_plan("https-basic")
    api = stack.create_api("secure", "/secure/v1", [plan.id])
    application = stack.create_application("https-app")
    stack.subscribe(application.id, api.id, plan.id)
    return stack.issue_key(application.id).key


def port(stack: Stack) -> int:
    return stack.settings.gateway_host_port[1]


def curl(stack: Stack, tls_dir: Path, api_key: str, *options: str, url: str = "") -> tuple[int, str]:
    """(status, HTTP version curl used) of one request; 0 when curl could not connect."""
    url = url or f"https://localhost:{port(stack)}/secure/v1/hello"
    done = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "--cacert",
            str(tls_dir / "ca.pem"),
            "-H",
            f"x-api-key: {api_key}",
            "-w",
            "%{http_code} %{http_version}",
            *options,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    status, _, version = done.stdout.partition(" ")
    return int(status or 0), version


def served_serial(stack: Stack, tls_dir: Path) -> int:
    """The serial number of the certificate the listener presents (verified against the test's CA)."""
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    with (
        socket.create_connection(("127.0.0.1", port(stack)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return int(tls.getpeercert()["serialNumber"], 16)  # type: ignore[index,arg-type]


def wait_for(predicate, timeout: float = 30.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def test_http2_and_http11_over_tls(stack: Stack, tls_dir: Path, key: str) -> None:
    wait_for(lambda: curl(stack, tls_dir, key, "--http2")[0] == 200, what="200 over HTTPS")
    assert curl(stack, tls_dir, key, "--http2") == (200, "2")
    assert curl(stack, tls_dir, key, "--http1.1") == (200, "1.1")
    # Without the key: refused by keymgr as over plain HTTP; without trusting the CA: no connection.
    assert curl(stack, tls_dir, "")[0] == 401
    no_ca = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--max-time", "10", f"https://localhost:{port(stack)}/secure/v1/"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert no_ca.returncode == 60  # peer certificate cannot be authenticated with known CA certificates
    # Plain HTTP on the HTTPS port gets no HTTP answer.
    assert curl(stack, tls_dir, key, url=f"http://localhost:{port(stack)}/secure/v1/hello")[0] == 0


def test_plain_http_redirects_to_https(stack: Stack, tls_dir: Path, key: str) -> None:
    redirect = stack.settings.gateway_http_redirect_addr
    done = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            f"http://{redirect}/secure/v1/hello?x=1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    host = redirect.rpartition(":")[0]
    assert done.stdout == f"301 https://{host}:{port(stack)}/secure/v1/hello?x=1"
    # Followed, it reaches the API over HTTPS.
    status, _ = curl(
        stack, tls_dir, key, "-L", url=f"http://localhost:{redirect.rpartition(':')[2]}/secure/v1/x"
    )
    assert status == 200


def test_replaced_certificate_is_served_without_restart(stack: Stack, tls_dir: Path, key: str) -> None:
    first = served_serial(stack, tls_dir)
    envoy_pid = stack.envoy.pid
    cert, key_file = tls_dir / "cert.pem", tls_dir / "key.pem"
    second = CA.issue("gateway-second")
    # The certificate written over in place first: the pair on disk is mismatched until the key follows.
    cert.write_bytes(second.cert_pem)
    time.sleep(3)  # several looks by the watch: the mismatched pair is refused, the old one stays
    assert served_serial(stack, tls_dir) == first
    assert any("cannot be served" in line for line in stack.logs.lines)
    key_file.write_bytes(second.key_pem)
    written = time.monotonic()
    wait_for(lambda: served_serial(stack, tls_dir) == second.serial, what="the new certificate served")
    print(f"new certificate served {time.monotonic() - written:.2f} s after its key was written")
    assert stack.envoy.pid == envoy_pid and stack.envoy.running
    assert curl(stack, tls_dir, key, "--http2") == (200, "2")
    # And again, replaced by rename this time.
    third = CA.issue("gateway-third")
    write_pair(third, tls_dir / "cert.new", tls_dir / "key.new")
    (tls_dir / "key.new").replace(key_file)
    (tls_dir / "cert.new").replace(cert)
    wait_for(lambda: served_serial(stack, tls_dir) == third.serial, what="the third certificate served")
    assert stack.envoy.pid == envoy_pid
    assert curl(stack, tls_dir, key, "--http1.1") == (200, "1.1")
