"""xds metrics, read at scrape time from the ADS servicer's per-node state (prometheus-client).

tollway_xds_pushes_total{node,type_url}   DiscoveryResponses sent
tollway_xds_acks_total{node,type_url}     responses Envoy applied
tollway_xds_nacks_total{node,type_url}    responses Envoy rejected (error_detail set)
tollway_xds_connected_envoys              known nodes with at least one open ADS stream
tollway_xds_streams{node}                 open ADS streams per node
tollway_xds_stale_requests_total{type_url} requests naming an old nonce (ignored)

Nodes are labelled only once they opened a stream with a configured node id (TOLLWAY_ENVOY_NODES):
an unknown node is refused before it is recorded, so the label set is bounded by the configuration;
type URLs are the served ones only.
"""

from __future__ import annotations

from collections.abc import Iterable

from tollway.metrics import Metric, counter_family, gauge_family
from xds.server import AggregatedDiscoveryServicer


def collect(ads: AggregatedDiscoveryServicer) -> Iterable[Metric]:
    nodes = list(ads.nodes.values())
    for name, help_text, attribute in (
        ("pushes", "DiscoveryResponses sent, per node and type URL.", "pushes"),
        ("acks", "Responses an Envoy applied (ACK), per node and type URL.", "acks"),
        ("nacks", "Responses an Envoy rejected (NACK), per node and type URL.", "nacks"),
    ):
        yield counter_family(
            f"tollway_xds_{name}_total",
            help_text,
            ("node", "type_url"),
            {(n.node_id, t): v for n in nodes for t, v in getattr(n, attribute).items()},
        )
    yield gauge_family(
        "tollway_xds_connected_envoys",
        "Known Envoy nodes with at least one open ADS stream.",
        (),
        {(): sum(1 for n in nodes if n.streams > 0)},
    )
    yield gauge_family(
        "tollway_xds_streams",
        "Open ADS streams, per node.",
        ("node",),
        {(n.node_id,): n.streams for n in nodes},
    )
    yield counter_family(
        "tollway_xds_stale_requests_total",
        "Requests naming an outdated nonce (ignored), per type URL.",
        ("type_url",),
        {(t,): v for t, v in ads.stale_requests.items()},
    )
