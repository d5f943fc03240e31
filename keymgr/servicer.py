"""Envoy's ext_authz Check: CheckRequest → decide() → CheckResponse, from memory only.

Allowed requests carry dynamic metadata (namespace `envoy.filters.http.ext_authz`, read by the
rate-limit actions and the access log; names in tollway.envoy_contract) and identifying headers for
the upstream; the key header is stripped. Refusals are RFC 9457 problem documents with the right
HTTP status, never a bare 403.

In the fused mode (TOLLWAY_THROTTLE_MODE=authz, a `LimitGate` given) an allowed request then passes the
plan limits in the same call: admitted, the answer adds the X-RateLimit-* response headers and the
limits' access-log metadata; refused, it is the 429 (or 503) the gate describes, with the request's
identity in the metadata so usage/ files it as throttled. An allowed answer is sent as bytes: the
cached allowed response's (encoded once per key and snapshot), in the fused mode followed by the
headers' (keymgr/wire.py).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct
from google.rpc import code_pb2, status_pb2

from keymgr.decision import Allowed, AuthzRequest, Denied, decide
from keymgr.index import KeyIndex, KeySnapshot
from keymgr.metrics import ALLOWED, KeymgrMetrics
from keymgr.wire import response_header
from tollway import envoy_contract as contract
from tollway.admission import Admission, LimitGate
from tollway.handler_wrapping import add_service
from tollway.logs import REQUEST_ID
from tollway.request_guard import RateLimitedLog
from tollway.schema import utcnow

log = logging.getLogger(__name__)

_OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_GRPC_CODES = {
    401: code_pb2.UNAUTHENTICATED,
    402: code_pb2.FAILED_PRECONDITION,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    429: code_pb2.RESOURCE_EXHAUSTED,
    500: code_pb2.INTERNAL,
    503: code_pb2.UNAVAILABLE,
}
# Allowed responses depend only on (snapshot, api, key, key header): reuse them until the snapshot
# changes (replaced by a full load, or changed in place: its version moves). Bounded so that many
# keys cannot grow it without limit.
_CACHE_LIMIT = 50_000
_REQUEST_ID_LIMIT = 128
_OK_STATUS = status_pb2.Status(code=code_pb2.OK)


def _header(name: str, value: str) -> HeaderValueOption:
    # OVERWRITE: whatever a client sent under these names never reaches the upstream.
    return HeaderValueOption(header=HeaderValue(key=name, value=value), append_action=_OVERWRITE)


def _struct(fields: Mapping[str, Any]) -> Struct:
    struct = Struct()
    struct.update(fields)
    return struct


def authz_request(request: external_auth_pb2.CheckRequest) -> AuthzRequest:
    """The parts of a CheckRequest a decision needs; absent parts read as empty, never raise."""
    attributes = request.attributes
    http = attributes.request.http
    headers: Mapping[str, str]
    if http.header_map.headers:
        # Envoy sends this form instead of `headers` when encode_raw_headers is on.
        joined: dict[str, str] = {}
        for entry in http.header_map.headers:
            name = entry.key.lower()
            value = entry.raw_value.decode("utf-8", "replace") if entry.raw_value else entry.value
            joined[name] = f"{joined[name]},{value}" if name in joined else value
        headers = joined
    else:
        # Envoy's header names are always lowercase, so the map is read as is (no per-request copy).
        headers = http.headers
    return AuthzRequest(
        headers=headers,
        api_id=attributes.context_extensions.get(contract.CONTEXT_API_ID, ""),
        client_ip=attributes.source.address.socket_address.address,
        # Client-controlled when Envoy preserves it: bounded before it reaches bodies and logs.
        request_id=(headers.get(contract.REQUEST_ID_HEADER, "") or http.id)[:_REQUEST_ID_LIMIT],
    )


def limit_descriptor(decision: Allowed) -> dict[str, str]:
    """The descriptor the route's rate-limit actions would send for this request (its keys are
    contract.DESCRIPTOR_KEYS): what the fused mode hands the limit gate."""
    return {
        contract.SUBSCRIPTION_ID: decision.subscription.id,
        contract.PLAN_ID: decision.plan.id,
        contract.APPLICATION_ID: decision.application.id,
        contract.API_ID: decision.api.id,
    }


def allowed_response(decision: Allowed) -> external_auth_pb2.CheckResponse:
    api, application, subscription, plan = (
        decision.api,
        decision.application,
        decision.subscription,
        decision.plan,
    )
    return external_auth_pb2.CheckResponse(
        status=_OK_STATUS,
        ok_response=external_auth_pb2.OkHttpResponse(
            headers=[
                _header(contract.APPLICATION_HEADER, application.id),
                _header(contract.SUBSCRIPTION_HEADER, subscription.id),
                _header(contract.PLAN_HEADER, plan.id),
                _header(contract.KEY_ID_HEADER, decision.key_id),
            ],
            # The upstream never sees the key.
            headers_to_remove=list(decision.key_header_names_to_remove),
        ),
        dynamic_metadata=_struct(
            {
                contract.API_ID: api.id,
                contract.API_NAME: api.name,
                contract.APPLICATION_ID: application.id,
                contract.SUBSCRIPTION_ID: subscription.id,
                contract.PLAN_ID: plan.id,
                contract.PLAN_NAME: plan.name,
                contract.KEY_ID: decision.key_id,
            }
        ),
    )


def _problem_prefix(decision: Denied) -> str:
    # Everything but the request id, which is appended per request.
    document = {
        "type": contract.problem_type(decision.reason),
        "title": decision.title,
        "status": decision.http_status,
        "detail": decision.detail,
        "reason": decision.reason,
    }
    return json.dumps(document, separators=(",", ":"))[:-1] + ',"request_id":'


def problem_body(decision: Denied, request_id: str) -> str:
    """RFC 9457 problem details; built from the decision only, so it can never contain the key."""
    return _problem_prefix(decision) + json.dumps(request_id) + "}"


def denied_response(decision: Denied, request_id: str) -> external_auth_pb2.CheckResponse:
    headers = [
        _header(contract.CONTENT_TYPE_HEADER, contract.PROBLEM_CONTENT_TYPE),
        _header(contract.CACHE_CONTROL_HEADER, "no-store"),
    ]
    if decision.www_authenticate:
        headers.append(_header(contract.WWW_AUTHENTICATE_HEADER, decision.www_authenticate))
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(
            code=_GRPC_CODES.get(decision.http_status, code_pb2.PERMISSION_DENIED), message=decision.reason
        ),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=HttpStatus(code=decision.http_status),
            headers=headers,
            body=problem_body(decision, request_id),
        ),
        # Lets the access log attribute the refusal (api, and application/key once they were known).
        dynamic_metadata=_struct({**decision.context, contract.REASON: decision.reason}),
    )


def limited_response(admission: Admission, identity: Struct) -> external_auth_pb2.CheckResponse:
    """An allowed request the limits refused (fused mode): the gate's status, headers and body, and
    the request's identity with the refusal's reason and the limits' metadata for the access log."""
    response = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(
            code=_GRPC_CODES.get(admission.status, code_pb2.UNAVAILABLE), message=admission.reason
        ),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=HttpStatus(code=admission.status),
            headers=[_header(name, value) for name, value in admission.headers],
            body=admission.body,
        ),
        dynamic_metadata=identity,
    )
    response.dynamic_metadata.update({**admission.metadata, contract.REASON: admission.reason})
    return response


def _metadata_bytes(metadata: Mapping[str, Any]) -> bytes:
    """A CheckResponse that adds the limits' metadata to an admitted request, encoded."""
    encoded: bytes = external_auth_pb2.CheckResponse(dynamic_metadata=_struct(metadata)).SerializeToString()
    return encoded


@dataclass(slots=True)
class _AllowedAnswer:
    """The answer to an allowed (api, key) until the snapshot changes, with what the fused mode adds."""

    response: external_auth_pb2.CheckResponse
    encoded: bytes
    # Fused mode only: the descriptor handed to the limit gate.
    descriptors: tuple[dict[str, str], ...] = ()


_INTERNAL_ERROR = Denied(
    http_status=500,
    reason=contract.INTERNAL_ERROR,
    title="Internal error",
    detail="The gateway could not decide on this request.",
)


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]  # Envoy ships no types
    """Check answers an allowed request with bytes (and, with a `gate`, fused mode, also applies the
    plan limits): register it with `add_authorization_service`, which sends those as they are."""

    def __init__(
        self,
        index: KeyIndex,
        key_hash_secret: str,
        clock: Callable[[], datetime] = utcnow,
        gate: LimitGate | None = None,
        metrics: KeymgrMetrics | None = None,
    ) -> None:
        self._index = index
        self._secret = key_hash_secret
        self._clock = clock
        self._gate = gate
        self.metrics = metrics if metrics is not None else KeymgrMetrics()
        # A request that trips the decision repeats as fast as a client sends it: one line per
        # interval and place, with a count.
        self._failures = RateLimitedLog(log)
        self._cache_snapshot: tuple[KeySnapshot, int] | None = None
        self._cache: dict[tuple[str, str, tuple[str, ...]], _AllowedAnswer] = {}
        # Refusals differ per request only in the body's request id: copy a template, set the body.
        self._denied: dict[tuple[object, ...], tuple[external_auth_pb2.CheckResponse, str]] = {}

    async def Check(
        self,
        request: external_auth_pb2.CheckRequest,
        context: grpc.aio.ServicerContext[external_auth_pb2.CheckRequest, external_auth_pb2.CheckResponse],
    ) -> external_auth_pb2.CheckResponse | bytes:
        started = time.perf_counter()
        try:
            if self._gate is not None:
                return await self._check(request)
            # Without limits nothing awaits (no second coroutine per Check), and an allowed answer
            # goes out as the bytes cached with it: nothing is serialized per request.
            answer, reason = self._authorize(request)
            self.metrics.decision(reason)
            return answer.encoded if isinstance(answer, _AllowedAnswer) else answer
        finally:
            self.metrics.check_seconds.observe(time.perf_counter() - started)

    async def _check(
        self, request: external_auth_pb2.CheckRequest
    ) -> external_auth_pb2.CheckResponse | bytes:
        gate = self._gate
        if gate is None:
            return self.check(request)
        answer, reason = self._authorize(request)
        if not isinstance(answer, _AllowedAnswer):
            self.metrics.decision(reason)
            return answer
        admission = await gate.admit(answer.descriptors)
        try:
            if not admission.admitted:
                self.metrics.decision(admission.reason)
                return limited_response(admission, answer.response.dynamic_metadata)
            response = self._admitted(answer, admission)
            self.metrics.decision(ALLOWED)
            return response
        except Exception as exc:
            self._failed(exc)
            self.metrics.decision(contract.INTERNAL_ERROR)
            return self._denied_response(_INTERNAL_ERROR, "")

    def _admitted(self, answer: _AllowedAnswer, admission: Admission) -> bytes:
        """The allowed answer with the limits' headers and metadata (see the module docstring)."""
        parts = [answer.encoded]
        if admission.metadata:
            parts.append(_metadata_bytes(admission.metadata))
        for name, value in admission.headers:
            parts.append(response_header(name, value))
        return b"".join(parts)

    def check(self, request: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse:
        """Synchronous core of Check without limits (no awaits: nothing here waits on I/O)."""
        answer, reason = self._authorize(request)
        self.metrics.decision(reason)
        return answer.response if isinstance(answer, _AllowedAnswer) else answer

    def _authorize(
        self, request: external_auth_pb2.CheckRequest
    ) -> tuple[_AllowedAnswer | external_auth_pb2.CheckResponse, str]:
        """The cached answer for an allowed request, the refusal for any other; and the reason."""
        request_id = ""
        try:
            authz = authz_request(request)
            request_id = authz.request_id
            # Each RPC runs in its own task (its own context): every line logged for it carries the id.
            REQUEST_ID.set(request_id)
            snapshot = self._index.snapshot
            decision = decide(snapshot, authz, self._clock(), self._secret)
            if isinstance(decision, Allowed):
                return self._allowed(snapshot, decision), ALLOWED
        except Exception as exc:
            self._failed(exc)
            decision = _INTERNAL_ERROR
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "refused: reason=%s status=%d key_id=%s api_id=%s request_id=%r",
                decision.reason,
                decision.http_status,
                decision.key_id or "-",
                decision.context.get(contract.API_ID, "-"),
                request_id,
            )
        return self._denied_response(decision, request_id), decision.reason

    def _failed(self, exc: Exception) -> None:
        """Logs a failure; the caller fails closed with a defined answer. Only the exception type and
        place are logged: its message or locals could hold request data."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        self._failures.event(
            logging.ERROR,
            f"{type(exc).__name__}@{where}",
            "Check failed: %s at %s",
            type(exc).__name__,
            where,
        )

    def _denied_response(self, decision: Denied, request_id: str) -> external_auth_pb2.CheckResponse:
        cache_key = (
            decision.http_status,
            decision.reason,
            decision.title,
            decision.detail,
            decision.www_authenticate,
            *sorted(decision.context.items()),
        )
        cached = self._denied.get(cache_key)
        if cached is None:
            if len(self._denied) >= _CACHE_LIMIT:
                self._denied = {}
            cached = self._denied[cache_key] = (denied_response(decision, ""), _problem_prefix(decision))
        template, prefix = cached
        response = external_auth_pb2.CheckResponse()
        response.CopyFrom(template)
        response.denied_response.body = prefix + json.dumps(request_id) + "}"
        return response

    def _allowed(self, snapshot: KeySnapshot, decision: Allowed) -> _AllowedAnswer:
        current = self._cache_snapshot
        if (
            current is None
            or current[0] is not snapshot
            or current[1] != snapshot.version
            or len(self._cache) >= _CACHE_LIMIT
        ):
            self._cache = {}
            self._cache_snapshot = (snapshot, snapshot.version)
        cache_key = (decision.api.id, decision.key_id, decision.key_header_names_to_remove)
        answer = self._cache.get(cache_key)
        if answer is None:
            # Shared between calls: grpc only serializes it, nothing mutates it.
            response = allowed_response(decision)
            descriptors = (limit_descriptor(decision),) if self._gate is not None else ()
            answer = self._cache[cache_key] = _AllowedAnswer(
                response, response.SerializeToString(), descriptors
            )
        return answer


def _serialize(response: external_auth_pb2.CheckResponse | bytes) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


_AUTHORIZATION_SERVICE = external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name


def add_authorization_service(servicer: AuthorizationServicer, server: grpc.aio.Server) -> None:
    """Registers Check, sending an answer that is already bytes (an allowed one) as it is."""
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.Check,
        request_deserializer=external_auth_pb2.CheckRequest.FromString,
        response_serializer=_serialize,
    )
    add_service(server, _AUTHORIZATION_SERVICE, {"Check": handler})
