"""Aggregated Discovery Service, state of the world, for Envoy's CDS, LDS and RDS (and SDS: the
gateway's HTTPS certificate, xds/gateway_tls.py).

Per stream and type the server remembers the latest nonce it sent, what it sent, and what Envoy
accepted. Rules (the ones go-control-plane users trip over):

* Every response carries a fresh nonce. A request answering an older nonce is stale and ignored.
* ACK (latest nonce, no error_detail): Envoy now runs that version.
* NACK (latest nonce, error_detail): logged, and that version is never sent to the node again; Envoy
  keeps its last accepted configuration until a newer snapshot arrives.
* Make-before-break: a type is sent only once every type before it (CDS → SDS → LDS → RDS) runs the
  current snapshot. Clusters the new routes no longer use stay in CDS (a "+retained" version) until
  Envoy accepted the listeners and routes that stopped using them; then CDS is pruned.

Only configured node ids are served (TOLLWAY_ENVOY_NODES): a stream naming any other node (or none)
ends PERMISSION_DENIED before anything is sent, and per-node state exists for configured nodes only, so
its size is fixed by the configuration, not by what callers claim. The node id is what Envoy says it
is; the Envoy-facing port's credential (tollway/envoy_auth.py) is what authenticates it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from tollway.request_guard import RateLimitedLog
from xds.cache import Snapshot, SnapshotCache
from xds.gateway_tls import SECRET_TYPE
from xds.resources import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, TYPE_ORDER

log = logging.getLogger(__name__)

SHORT_TYPE_NAMES = {CLUSTER_TYPE: "CDS", SECRET_TYPE: "SDS", LISTENER_TYPE: "LDS", ROUTE_TYPE: "RDS"}
# Types Envoy subscribes to as a whole; the others (RDS, SDS) by resource name.
WILDCARD_TYPES = frozenset({CLUSTER_TYPE, LISTENER_TYPE})
RETAINED_SUFFIX = "+retained"

# How much of an unknown node id a refusal repeats back.
_NODE_ID_SHOWN = 100

# (version, resource names): what one response delivered, and what a NACK rejects.
Identity = tuple[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class _Payload:
    version: str
    resources: Mapping[str, Message]

    @property
    def identity(self) -> Identity:
        return self.version, frozenset(self.resources)


@dataclass(slots=True)
class _TypeState:
    """One type on one stream."""

    subscribed: bool = False
    names: frozenset[str] = frozenset()  # requested resource names (non-wildcard types)
    nonce: str = ""  # latest nonce sent; only a request carrying it counts
    sent: _Payload | None = None
    pending: bool = False  # sent, not yet ACKed or NACKed
    accepted: _Payload | None = None


@dataclass(slots=True)
class NodeState:
    """What the control plane knows of one Envoy node (by node id), across its streams."""

    node_id: str
    streams: int = 0
    accepted: dict[str, _Payload] = field(default_factory=dict)
    rejected: defaultdict[str, set[Identity]] = field(default_factory=lambda: defaultdict(set))
    last_error: dict[str, str] = field(default_factory=dict)
    # Responses sent, and Envoy's ACKs and NACKs of them, per type URL (xds/metrics.py exports them).
    pushes: Counter[str] = field(default_factory=Counter)
    acks: Counter[str] = field(default_factory=Counter)
    nacks: Counter[str] = field(default_factory=Counter)

    @property
    def accepted_versions(self) -> dict[str, str]:
        return {type_url: payload.version for type_url, payload in self.accepted.items()}

    def rejected_versions(self, type_url: str) -> set[str]:
        return {version for version, _ in self.rejected.get(type_url, ())}


@dataclass(slots=True)
class _Stream:
    stream_id: int
    node: NodeState | None = None
    snapshot: Snapshot | None = None
    types: dict[str, _TypeState] = field(default_factory=lambda: {t: _TypeState() for t in TYPE_ORDER})


def _same_content(left: Mapping[str, Message], right: Mapping[str, Message]) -> bool:
    return left.keys() == right.keys() and all(left[name] == right[name] for name in left)


def _packed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


class AggregatedDiscoveryServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]  # Envoy ships no types
    """grpc.aio servicer serving the snapshots of one SnapshotCache to any number of Envoys.

    The counters (per type URL) are for tests and metrics; `nodes` holds per-node state by node id, for
    the `known_nodes` only: every other node is refused.
    """

    def __init__(
        self, cache: SnapshotCache, known_nodes: Collection[str], control_plane_id: str = "tollway"
    ) -> None:
        if not known_nodes:
            raise ValueError("ADS needs at least one known node id")
        self._cache = cache
        self.known_nodes = frozenset(known_nodes)
        self._control_plane = base_pb2.ControlPlane(identifier=control_plane_id)
        # What a peer controls (how often it opens streams, asks for unknown types, rejects a version)
        # is reported once per interval per kind, with a count: a hostile or looping peer cannot flood
        # the log.
        self._peer_events = RateLimitedLog(log)
        self._nonces = itertools.count(1)
        self._stream_ids = itertools.count(1)
        self.responses_sent: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self.nacks: Counter[str] = Counter()
        self.stale_requests: Counter[str] = Counter()
        self.nodes: dict[str, NodeState] = {}

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        stream = _Stream(next(self._stream_ids), snapshot=self._cache.current())
        # One queue serialises Envoy's requests and snapshot changes, so stream state has one writer.
        events: asyncio.Queue[discovery_pb2.DiscoveryRequest | Snapshot | None] = asyncio.Queue()
        generation = stream.snapshot.generation if stream.snapshot is not None else 0
        reader = asyncio.create_task(self._read_requests(request_iterator, events))
        watcher = asyncio.create_task(self._watch_snapshots(generation, events))
        try:
            while (event := await events.get()) is not None:
                if isinstance(event, Snapshot):
                    stream.snapshot = event
                else:
                    refusal = self._refusal(event.node.id) if stream.node is None else None
                    if refusal is not None:
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
                    self._on_request(stream, event)
                for response in self._due_responses(stream):
                    yield response
        finally:
            reader.cancel()
            watcher.cancel()
            await asyncio.gather(reader, watcher, return_exceptions=True)
            if stream.node is not None:
                stream.node.streams -= 1
                self._peer_events.event(
                    logging.INFO,
                    "stream closed",
                    "ADS stream %d of node %s closed",
                    stream.stream_id,
                    stream.node.node_id,
                )

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse
        ],
    ) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Tollway serves state-of-the-world ADS only")

    def node(self, node_id: str) -> NodeState | None:
        return self.nodes.get(node_id)

    def _refusal(self, node_id: str) -> str | None:
        """Why a stream opened by `node_id` gets no configuration, None when it is a known node."""
        if node_id in self.known_nodes:
            return None
        shown = node_id[:_NODE_ID_SHOWN]
        self._peer_events.event(
            logging.WARNING, "unknown node", "refused an ADS stream from unknown node %r", shown
        )
        if not node_id:
            return "the first request of an ADS stream must name its node (node.id)"
        return f"node {shown!r} is not one of the Envoy nodes this control plane serves (TOLLWAY_ENVOY_NODES)"

    @staticmethod
    async def _read_requests(
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        events: asyncio.Queue[discovery_pb2.DiscoveryRequest | Snapshot | None],
    ) -> None:
        try:
            async for request in request_iterator:
                events.put_nowait(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-read; the stream just ends
            log.debug("ADS request stream ended: %r", exc)
        finally:
            events.put_nowait(None)

    async def _watch_snapshots(
        self, generation: int, events: asyncio.Queue[discovery_pb2.DiscoveryRequest | Snapshot | None]
    ) -> None:
        while True:
            snapshot = await self._cache.wait_newer(generation)
            generation = snapshot.generation
            events.put_nowait(snapshot)

    # -- requests ---------------------------------------------------------------------------------

    def _on_request(self, stream: _Stream, request: discovery_pb2.DiscoveryRequest) -> None:
        if stream.node is None:
            # Envoy names its node on the stream's first message only (a known one: see _refusal).
            node_id = request.node.id
            stream.node = self.nodes.setdefault(node_id, NodeState(node_id))
            stream.node.streams += 1
            self._peer_events.event(
                logging.INFO,
                "stream opened",
                "ADS stream %d opened by node %s (cluster %s)",
                stream.stream_id,
                node_id,
                request.node.cluster or "-",
            )
        node = stream.node
        type_url = request.type_url
        state = stream.types.get(type_url)
        if state is None:
            self._peer_events.event(
                logging.WARNING,
                "unknown type",
                "node %s asked for %s, which Tollway does not serve",
                node.node_id,
                type_url,
            )
            return
        short = SHORT_TYPE_NAMES[type_url]
        if request.response_nonce:
            if request.response_nonce != state.nonce:
                # Answers a response that a newer one already replaced; the newer one's answer counts.
                self.stale_requests[type_url] += 1
                log.debug("node %s: stale %s nonce %s ignored", node.node_id, short, request.response_nonce)
                return
            assert state.sent is not None  # a nonce is only ever set together with `sent`
            if not state.pending:
                pass  # answered already; Envoy repeats the nonce when it only changes resource names
            elif request.HasField("error_detail"):
                state.pending = False
                self.nacks[type_url] += 1
                node.nacks[type_url] += 1
                node.rejected[type_url].add(state.sent.identity)
                node.last_error[type_url] = request.error_detail.message
                self._peer_events.event(
                    logging.WARNING,
                    f"rejected {short}",
                    "node %s rejected %s version %s (keeps version %s): %s",
                    node.node_id,
                    short,
                    state.sent.version,
                    request.version_info or "none",
                    request.error_detail.message,
                )
            elif request.version_info == state.sent.version:
                state.pending = False
                self.acks[type_url] += 1
                node.acks[type_url] += 1
                state.accepted = state.sent
                node.accepted[type_url] = state.sent
                log.debug("node %s applied %s version %s", node.node_id, short, state.sent.version)
        else:
            # First request for this type on this stream: answer it (afresh, whatever was sent before).
            state.subscribed = True
            state.sent = None
            state.nonce = ""
            state.pending = False
            known = node.accepted.get(type_url)
            if request.version_info and known is not None and known.version == request.version_info:
                # A reconnecting Envoy still runs this; make-before-break starts from it.
                state.accepted = known
        if type_url not in WILDCARD_TYPES:
            state.names = frozenset(request.resource_names)

    # -- responses --------------------------------------------------------------------------------

    def _desired(self, stream: _Stream, type_url: str) -> _Payload | None:
        """What Envoy should run for this type now, or None when there is nothing to say."""
        snapshot = stream.snapshot
        if snapshot is None or type_url not in snapshot.resources:
            return None
        state = stream.types[type_url]
        resources = snapshot.resources[type_url]
        if type_url not in WILDCARD_TYPES:
            resources = {name: resources[name] for name in sorted(state.names) if name in resources}
        target = _Payload(snapshot.versions[type_url], resources)
        if type_url != CLUSTER_TYPE or (
            self._settled(stream, LISTENER_TYPE) and self._settled(stream, ROUTE_TYPE)
        ):
            return target
        # Listeners/routes are not on this snapshot yet: keep the clusters they may still use.
        accepted = state.accepted
        if accepted is None:
            return target
        retained = {name: c for name, c in accepted.resources.items() if name not in target.resources}
        if not retained:
            return target
        union = {**target.resources, **retained}
        if _same_content(union, accepted.resources):
            return accepted
        return _Payload(target.version + RETAINED_SUFFIX, union)

    def _settled(self, stream: _Stream, type_url: str) -> bool:
        """True when Envoy runs what it should for this type (or does not use the type at all)."""
        state = stream.types[type_url]
        if not state.subscribed or (type_url not in WILDCARD_TYPES and not state.names):
            return True
        desired = self._desired(stream, type_url)
        if desired is None:
            return True
        return state.accepted is not None and state.accepted.identity == desired.identity

    def _due_responses(self, stream: _Stream) -> list[discovery_pb2.DiscoveryResponse]:
        node = stream.node
        if node is None or stream.snapshot is None:
            return []
        responses = []
        for position, type_url in enumerate(TYPE_ORDER):
            state = stream.types[type_url]
            if not state.subscribed or (type_url not in WILDCARD_TYPES and not state.names):
                continue
            # Make-before-break: nothing goes out before Envoy runs every type it depends on.
            if not all(self._settled(stream, earlier) for earlier in TYPE_ORDER[:position]):
                continue
            desired = self._desired(stream, type_url)
            if desired is None:
                continue
            identity = desired.identity
            if state.sent is not None and state.sent.identity == identity:
                continue  # sent already (pending, accepted or rejected)
            if state.accepted is not None and state.accepted.identity == identity and not state.pending:
                continue  # Envoy runs it, and nothing else is on its way
            if identity in node.rejected[type_url]:
                continue  # never again: only a newer snapshot is sent
            responses.append(self._response(stream, node, type_url, desired))
        return responses

    def _response(
        self, stream: _Stream, node: NodeState, type_url: str, payload: _Payload
    ) -> discovery_pb2.DiscoveryResponse:
        state = stream.types[type_url]
        state.nonce = str(next(self._nonces))
        state.sent = payload
        state.pending = True
        self.responses_sent[type_url] += 1
        node.pushes[type_url] += 1
        log.info(
            "push %s version %s (%d resources) to node %s",
            SHORT_TYPE_NAMES[type_url],
            payload.version,
            len(payload.resources),
            node.node_id,
        )
        return discovery_pb2.DiscoveryResponse(
            version_info=payload.version,
            type_url=type_url,
            nonce=state.nonce,
            control_plane=self._control_plane,
            resources=[_packed(payload.resources[name]) for name in sorted(payload.resources)],
        )
