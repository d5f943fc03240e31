"""tollway.envoy: the binary, the bootstrap Envoy accepts, and the process lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from xds_harness import wait_until

from tollway.envoy import EnvoyError, EnvoyProcess, bootstrap_config, envoy_binary


def test_envoy_binary_is_executable() -> None:
    path = envoy_binary()
    assert os.access(path, os.X_OK)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    assert "1.40" in version.stdout


def test_bootstrap_validates_with_envoy(tmp_path: Path) -> None:
    bootstrap = bootstrap_config("node-1", "tollway", "xds.internal", 18000, "127.0.0.1", 0)
    assert bootstrap["dynamic_resources"]["ads_config"]["transport_api_version"] == "V3"
    assert bootstrap["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    assert bootstrap_config("n", "c", "127.0.0.1", 1)["static_resources"]["clusters"][0]["type"] == "STATIC"
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(bootstrap))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_process_lifecycle_with_admin_on_a_chosen_port(tmp_path: Path) -> None:
    # No ADS server behind this port: Envoy still starts its admin interface.
    envoy = EnvoyProcess(
        bootstrap_config("lifecycle", "tollway", "127.0.0.1", 1, "127.0.0.1", 0),
        work_dir=tmp_path,
        concurrency=1,
    )
    with envoy:
        assert envoy.running

        def admin_answers() -> dict | None:
            try:
                return json.loads(envoy.admin_get("/server_info"))
            except (EnvoyError, OSError):
                return None

        info = wait_until(admin_answers, 20)
        assert info["command_line_options"]["concurrency"] == 1
        assert info["node"]["id"] == "lifecycle"
    assert not envoy.running
    envoy.stop()  # stopping twice is harmless
    assert envoy.config_path.is_file()
    assert envoy.log_path.is_file()


def test_wait_ready_reports_an_envoy_that_exits(tmp_path: Path) -> None:
    bootstrap = bootstrap_config("broken", "tollway", "127.0.0.1", 1, "127.0.0.1", 0)
    bootstrap["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE"
    envoy = EnvoyProcess(bootstrap, work_dir=tmp_path, concurrency=1)
    envoy.start()
    try:
        with pytest.raises(EnvoyError, match="exited"):
            envoy.wait_ready(20)
    finally:
        envoy.stop()
    assert "NOT_A_TYPE" in envoy.log_tail(50)
