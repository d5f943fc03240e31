"""The gateway's Envoy for `tollway up`: a bootstrap pointing at this process's ADS (tollway.envoy
builds it and runs the binary), its files kept in <data_dir>/envoy. It names itself
TOLLWAY_ENVOY_NODE_ID (one of the nodes ADS serves) and authenticates as the settings say
(TOLLWAY_ENVOY_AUTH; the embedded default: mTLS with the certificates generated in the data dir)."""

from __future__ import annotations

from tollway.envoy import EnvoyProcess, bootstrap_config
from tollway.settings import Settings


def gateway_envoy(settings: Settings) -> EnvoyProcess:
    """An Envoy (not yet started) that takes its whole configuration from this process's ADS."""
    ads_host, ads_port = settings.grpc_host_port
    admin_host, admin_port = settings.envoy_admin_host_port
    return EnvoyProcess(
        bootstrap_config(
            node_id=settings.envoy_node_id,
            node_cluster="tollway",
            ads_host=ads_host,
            ads_port=ads_port,
            admin_host=admin_host,
            admin_port=admin_port,
            link=settings.envoy_link,
        ),
        work_dir=settings.data_dir / "envoy",
        concurrency=settings.envoy_concurrency,
    )
