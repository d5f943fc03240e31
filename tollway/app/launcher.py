"""The gateway's Envoy for `tollway up`: a bootstrap pointing at this process's ADS (tollway.envoy
builds it and runs the binary), its files kept in <data_dir>/envoy."""

from __future__ import annotations

from tollway.envoy import EnvoyProcess, bootstrap_config
from tollway.settings import Settings


def gateway_envoy(settings: Settings) -> EnvoyProcess:
    """An Envoy (not yet started) that takes its whole configuration from this process's ADS."""
    ads_host, ads_port = settings.grpc_host_port
    admin_host, admin_port = settings.envoy_admin_host_port
    return EnvoyProcess(
        bootstrap_config(
            node_id="tollway-gateway",
            node_cluster="tollway",
            ads_host=ads_host,
            ads_port=ads_port,
            admin_host=admin_host,
            admin_port=admin_port,
        ),
        work_dir=settings.data_dir / "envoy",
        concurrency=settings.envoy_concurrency,
    )
