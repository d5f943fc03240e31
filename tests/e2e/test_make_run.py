"""`make run` prints a curl that works exactly as printed, plus the admin address and token lines."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import free_port

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_make_run_prints_a_working_curl(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        TOLLWAY_DATA_DIR=str(tmp_path / "data"),
        TOLLWAY_GRPC_ADDR=f"127.0.0.1:{free_port()}",
        TOLLWAY_ADMIN_ADDR=f"127.0.0.1:{free_port()}",
        TOLLWAY_GATEWAY_ADDR=f"127.0.0.1:{free_port()}",
        TOLLWAY_ENVOY_ADMIN_ADDR=f"127.0.0.1:{free_port()}",
        TOLLWAY_DEMO_UPSTREAM_ADDR=f"127.0.0.1:{free_port()}",
        TOLLWAY_PORTAL_ADDR=f"127.0.0.1:{free_port()}",
        TOLLWAY_PORTAL_GRPC_ADDR=f"127.0.0.1:{free_port()}",
    )
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("TOLLWAY_ADMIN_TOKEN="):
                break
        curl = next((line for line in lines if line.startswith("curl ")), None)
        assert curl is not None, "no curl line in:\n" + "\n".join(lines) + stderr_path.read_text()
        assert any(re.fullmatch(r"TOLLWAY_ADMIN_ADDR=\S+:\d+", line) for line in lines)
        assert any(re.fullmatch(r"TOLLWAY_ADMIN_TOKEN=\S+", line) for line in lines)

        minute = int(time.time() // 60)
        body = subprocess.run(["sh", "-c", curl], capture_output=True, text=True, timeout=30).stdout
        assert '"path"' in body and "x-api-key" not in body
        # The demo plan allows 10 a minute, as the banner says: repeating the curl shows the 429.
        codes = ["200"]
        while codes[-1] == "200" and len(codes) < 30:
            result = subprocess.run(
                ["sh", "-c", curl + " -o /dev/null -w '%{http_code}'"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            codes.append(result.stdout.strip())
        assert codes[-1] == "429", codes
        if int(time.time() // 60) == minute:  # no minute boundary crossed: exactly the plan's 10 admitted
            assert codes == ["200"] * 10 + ["429"], codes

        key = re.search(r"tw_[a-z2-7]+_[a-z2-7]+", curl)
        assert key is not None
        assert key.group(0) not in stderr_path.read_text(), "the demo key reached a log line"
        check_the_portal(lines, stderr_path.read_text())
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    # Ctrl-C stopped everything: Envoy's listener and the services' ports are closed.
    for name in (
        "TOLLWAY_GATEWAY_ADDR",
        "TOLLWAY_GRPC_ADDR",
        "TOLLWAY_ADMIN_ADDR",
        "TOLLWAY_PORTAL_ADDR",
        "TOLLWAY_PORTAL_GRPC_ADDR",
    ):
        assert wait_closed(env[name]), f"{name} still accepts connections after Ctrl-C"


def check_the_portal(lines: list[str], log: str) -> None:
    """The printed portal URL serves the portal, the demo consumer's printed sign-in works, and its demo
    API has reference docs; the password reached no log line."""
    from tests.portal.web_client import WebClient

    url = next(line.split("=", 1)[1] for line in lines if line.startswith("TOLLWAY_PORTAL_URL="))
    email = next(line.split()[-1] for line in lines if line.strip().startswith("email:"))
    password = next(line.split()[-1] for line in lines if line.strip().startswith("password:"))
    assert password not in log, "the demo consumer's password reached a log line"
    portal = WebClient(url)
    assert portal.sign_in(email, password).status_code == 303
    assert "demo-app" in portal.get("/apps").text
    catalog = portal.get("/catalog").text
    api_id = re.search(r'href="/apis/(api_\w+)"', catalog)
    assert api_id is not None
    page = portal.get(f"/apis/{api_id.group(1)}").text
    assert "API reference" in page and "Echo a GET request" in page
    portal.close()


def wait_closed(address: str, timeout: float = 10.0) -> bool:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            return True
        time.sleep(0.1)
    return False
