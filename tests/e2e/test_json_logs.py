"""A whole stack (`tollway up --demo`: the services, a real Envoy, the portal) logging JSON at debug level:
every line of its log parses as one JSON object with time, level, component and message, refusals carry
Envoy's request id, and a grep of every line finds none of the issued keys, the admin token or the
key-hash secret."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import free_port

pytestmark = pytest.mark.e2e
TOLLWAY = str(Path(sys.executable).parent / "tollway")


def get(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"x-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_stack_run_logs_json_lines_without_a_secret(tmp_path: Path) -> None:
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
        TOLLWAY_METRICS_ADDR=f"127.0.0.1:{free_port()}",
        TOLLWAY_LOG_FORMAT="json",
        TOLLWAY_LOG_LEVEL="debug",
        TOLLWAY_LOG_LEVELS="aiosqlite=info",
    )
    log_path = tmp_path / "stderr.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [TOLLWAY, "up", "--demo"], env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True,
        )  # fmt: skip
    lines: list[str] = []
    issued: list[str] = []
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
        banner = "\n".join(lines)
        token = next(line.split("=", 1)[1] for line in lines if line.startswith("TOLLWAY_ADMIN_TOKEN="))
        curl = next(line for line in lines if line.startswith("curl "))
        demo_key = re.search(r"tw_[a-z2-7]+_[a-z2-7]+", curl)
        url = re.search(r"http://\S+", curl)
        assert demo_key is not None and url is not None, banner
        assert env["TOLLWAY_METRICS_ADDR"] in banner  # the banner names every address
        issued.append(demo_key.group(0))

        # A key issued through the CLI (printed once, on stdout), then traffic with every kind of key.
        admin = {**env, "TOLLWAY_ADMIN_TOKEN": token}
        listed = subprocess.run(
            [TOLLWAY, "app", "list", "--output", "json"], env=admin, capture_output=True, text=True
        )
        app_id = json.loads(listed.stdout)["applications"][0]["id"]
        created = subprocess.run(
            [TOLLWAY, "key", "create", app_id, "--output", "json"], env=admin, capture_output=True, text=True
        )
        assert created.returncode == 0, created.stderr
        new_key = json.loads(created.stdout)["key"]
        issued.append(new_key)
        wrong_secret = demo_key.group(0)[:-4] + "aaaa"  # the demo key's id with a wrong secret
        statuses = [get(url.group(0), key) for key in (demo_key.group(0), new_key, wrong_secret, "nonsense")]
        assert statuses[2:] == [401, 401], statuses
        refused = subprocess.run(
            [TOLLWAY, "plan", "list", "--token", token[::-1]], env=env, capture_output=True, text=True
        )
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
        time.sleep(1.0)  # the access log and its ingestion log lines
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise

    text = log_path.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert len(records) > 20
    for record in records:
        assert {"time", "level", "component", "logger", "message"} <= record.keys(), record
    assert {"keymgr", "xds", "tollway"} <= {record["component"] for record in records}
    refusals = [r for r in records if r["logger"] == "keymgr.servicer" and "refused" in str(r["message"])]
    assert refusals and all(r.get("request_id") for r in refusals)
    hash_secret = (tmp_path / "data" / "key-hash-secret").read_text().strip()
    for secret in (*issued, wrong_secret, token, hash_secret):
        assert secret not in text, "a key or secret reached a log line"
