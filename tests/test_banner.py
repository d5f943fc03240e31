"""`tollway up` prints every address it serves: gateway, Envoy admin, the Envoy-facing port of each
worker, admin, portal web and gRPC, and the metrics endpoint of each worker."""

from __future__ import annotations

from tollway.app.banner import address_lines
from tollway.settings import Settings


def test_every_listener_is_printed_with_each_workers_metrics() -> None:
    settings = Settings(
        gateway_addr="127.0.0.1:8080",
        envoy_admin_addr="127.0.0.1:9901",
        admin_addr="127.0.0.1:18001",
        portal_url="http://127.0.0.1:8088",
        portal_grpc_addr="127.0.0.1:18002",
        metrics_addr="127.0.0.1:9464",
        workers=2,
    )
    text = "\n".join(address_lines(settings, ["127.0.0.1:18000", "127.0.0.1:18002"], "/tmp/envoy.log"))
    for expected in (
        "http://127.0.0.1:8080",
        "http://127.0.0.1:9901",
        "127.0.0.1:18000, 127.0.0.1:18002",
        "127.0.0.1:18001",
        "http://127.0.0.1:8088",
        "portal gRPC",
        "http://127.0.0.1:9464/metrics, http://127.0.0.1:9465/metrics",
        "/tmp/envoy.log",
    ):
        assert expected in text, expected


def test_metrics_off_says_how_to_turn_them_on_and_no_portal_when_not_run() -> None:
    settings = Settings(components=("admin", "xds", "keymgr"), metrics_addr="")
    text = "\n".join(address_lines(settings, ["127.0.0.1:18000"], "envoy.log"))
    assert "TOLLWAY_METRICS_ADDR" in text
    assert "portal" not in text
