"""The Envoy contract holds end to end: what keymgr writes is what the xDS routes read, what the routes
send is what the throttle reads, and what the throttle writes is what usage reads (pure, no servers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from google.protobuf.struct_pb2 import Struct

from keymgr.decision import Allowed, Denied
from keymgr.index import ApiEntry, ApplicationEntry, PlanEntry, SubscriptionEntry
from keymgr.servicer import allowed_response, problem_body
from throttle.envoy_config import ratelimit_filter, route_rate_limits
from throttle.limits import MINUTE, Window
from throttle.rls_response import problem_body as throttle_problem_body
from throttle.service import Decision
from tollway import envoy_contract as contract
from tollway.catalog.view import PublishedApi
from tollway.envoy_auth import PLAINTEXT_LINK
from usage.classify import classify
from xds.resources import GatewayOptions, api_route, parse_upstream

ALLOWED = Allowed(
    api=ApiEntry(id="api_1", name="weather"),
    application=ApplicationEntry(id="app_1", name="one", deleted=False),
    subscription=SubscriptionEntry(
        id="sub_1", application_id="app_1", api_id="api_1", plan_id="plan_1", state="ACTIVE"
    ),
    plan=PlanEntry(id="plan_1", name="gold"),
    key_id="key_1",
    key_header_names_to_remove=(contract.API_KEY_HEADER,),
)
OPTIONS = GatewayOptions(
    keymgr_endpoints=(("127.0.0.1", 1),),
    usage_endpoints=(("127.0.0.1", 2),),
    upstream_ca_file=None,
    route_rate_limits=route_rate_limits(),
)
API = PublishedApi(
    id="api_1", name="weather", version="v1", context_path="/w/v1", upstream_urls=("http://10.0.0.1",)
)


def test_route_descriptors_read_the_metadata_keymgr_writes() -> None:
    written = allowed_response(ALLOWED).dynamic_metadata
    (rate_limit,) = api_route(API, [parse_upstream(API.upstream_urls[0])], OPTIONS).route.rate_limits
    entries: dict[str, str] = {}
    for action in rate_limit.actions:
        key = action.metadata.metadata_key
        assert key.key == contract.EXT_AUTHZ_NAMESPACE
        (segment,) = key.path
        assert segment.key in written.fields, segment.key
        entries[action.metadata.descriptor_key] = written.fields[segment.key].string_value
    assert tuple(entries) == contract.DESCRIPTOR_KEYS
    assert entries == {
        "subscription_id": "sub_1",
        "plan_id": "plan_1",
        "application_id": "app_1",
        "api_id": "api_1",
    }


def test_route_context_extensions_name_the_api_keymgr_looks_up() -> None:
    route = api_route(API, [parse_upstream(API.upstream_urls[0])], OPTIONS)
    per_route = ext_authz_pb2.ExtAuthzPerRoute()
    route.typed_per_filter_config[contract.EXT_AUTHZ_FILTER].Unpack(per_route)
    assert per_route.check_settings.context_extensions[contract.CONTEXT_API_ID] == "api_1"
    assert len(route.route.rate_limits) == 1


def test_ratelimit_filter_uses_the_domain_the_throttle_answers() -> None:
    config = rate_limit_pb2.RateLimit()
    ratelimit_filter(100, "deny", PLAINTEXT_LINK).typed_config.Unpack(config)
    assert config.domain == contract.RLS_DOMAIN == "tollway"
    assert config.failure_mode_deny


def test_usage_reads_the_metadata_keymgr_and_the_throttle_write() -> None:
    entry = accesslog_pb2.HTTPAccessLogEntry()
    common = entry.common_properties
    common.access_log_type = accesslog_pb2.AccessLogType.Value("DownstreamEnd")
    common.start_time.FromDatetime(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    common.metadata.filter_metadata[contract.EXT_AUTHZ_NAMESPACE].CopyFrom(
        allowed_response(ALLOWED).dynamic_metadata
    )
    throttle_metadata = Struct()
    throttle_metadata.update({contract.OVERAGE: True, contract.WINDOW: "billing_period"})
    common.metadata.filter_metadata[contract.RATELIMIT_NAMESPACE].CopyFrom(throttle_metadata)
    entry.response.response_code.value = 200
    record = classify(entry, "node", datetime(2026, 1, 1, 12, 1, tzinfo=UTC).timestamp())
    assert record[3:8] == ("api_1", "sub_1", "app_1", "plan_1", "key_1")
    assert record[9] == 1  # overage


def test_both_problem_documents_share_the_type_base() -> None:
    denied = Denied(http_status=401, reason="key_missing", title="API key required", detail="d")
    keymgr_type = json.loads(problem_body(denied, "r"))["type"]
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    window = Window(
        MINUTE, "k", 5, True, datetime(2026, 1, 1, 12, tzinfo=UTC), datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    )
    throttle_type = json.loads(throttle_problem_body(Decision(True, [], now, exceeded=window)))["type"]
    assert keymgr_type == "https://tollway.dev/problems/key_missing" == contract.problem_type("key_missing")
    assert (
        throttle_type
        == "https://tollway.dev/problems/rate_limited"
        == contract.problem_type(contract.RATE_LIMITED)
    )


def test_identity_headers_are_the_contract_names() -> None:
    headers = {
        option.header.key: option.header.value for option in allowed_response(ALLOWED).ok_response.headers
    }
    assert headers == {
        contract.APPLICATION_HEADER: "app_1",
        contract.SUBSCRIPTION_HEADER: "sub_1",
        contract.PLAN_HEADER: "plan_1",
        contract.KEY_ID_HEADER: "key_1",
    }
    assert all(
        option.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        for option in allowed_response(ALLOWED).ok_response.headers
    )
