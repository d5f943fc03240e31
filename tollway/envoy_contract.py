"""The contract between Envoy and Tollway's components, written once.

keymgr writes the ext_authz dynamic metadata, the xDS routes turn it into rate-limit descriptors, the
throttle reads the descriptors and writes the ratelimit dynamic metadata, and usage reads both from the
access log. Each side names these strings from here, so a renamed key cannot silently break the
chain (tests/xds and tests/keymgr check that the route's descriptors use the keys keymgr writes).

Every value here is on the wire (Envoy config, metadata, headers, problem documents): changing one is
a protocol change, not a refactoring.
"""

from __future__ import annotations

from typing import Final

# --- filters and metadata namespaces ------------------------------------------------------------------

# The ext_authz filter's name, and the namespace its dynamic metadata is stored under.
EXT_AUTHZ_FILTER: Final = "envoy.filters.http.ext_authz"
EXT_AUTHZ_NAMESPACE: Final = EXT_AUTHZ_FILTER
# Envoy stores RLS dynamic_metadata under this namespace (fixed in the filter's source, whatever the
# filter's name); it is also the ratelimit filter's name.
RATELIMIT_FILTER: Final = "envoy.filters.http.ratelimit"
RATELIMIT_NAMESPACE: Final = RATELIMIT_FILTER

# --- route names (xds → access log) -------------------------------------------------------------------

# Every published API's route (and its upstream cluster) is named API_ROUTE_PREFIX + the API's id.
API_ROUTE_PREFIX: Final = "api_"
# Envoy's catch-all route: a path no API is published at (404 from Envoy itself, keymgr never called).
NOT_FOUND_ROUTE: Final = "tollway_not_found"

# --- gRPC services Envoy calls (full names: what each cluster's gRPC health check asks about) ----------

AUTHORIZATION_SERVICE: Final = "envoy.service.auth.v3.Authorization"
RATE_LIMIT_SERVICE: Final = "envoy.service.ratelimit.v3.RateLimitService"
ACCESS_LOG_SERVICE: Final = "envoy.service.accesslog.v3.AccessLogService"

# --- ext_authz: route context extensions (xds → keymgr) -----------------------------------------------

CONTEXT_API_ID: Final = "api_id"
CONTEXT_API_NAME: Final = "api_name"
CONTEXT_API_VERSION: Final = "api_version"

# --- ext_authz dynamic metadata (keymgr → ratelimit actions, access log) ------------------------------

API_ID: Final = "api_id"
API_NAME: Final = "api_name"
APPLICATION_ID: Final = "application_id"
SUBSCRIPTION_ID: Final = "subscription_id"
PLAN_ID: Final = "plan_id"
PLAN_NAME: Final = "plan_name"
KEY_ID: Final = "key_id"
# Set on refusals only: the problem reason (see problem types below).
REASON: Final = "reason"

# --- rate-limit descriptor (route actions → throttle) -------------------------------------------------

# The RLS domain of every descriptor Tollway's routes produce.
RLS_DOMAIN: Final = "tollway"
# One descriptor per request; each entry's key is the ext_authz metadata key its value is read from.
DESCRIPTOR_KEYS: Final = (SUBSCRIPTION_ID, PLAN_ID, APPLICATION_ID, API_ID)

# --- ratelimit dynamic metadata (throttle → access log) -----------------------------------------------
# In TOLLWAY_THROTTLE_MODE=authz keymgr's Check applies the limits and writes these same keys into its
# own namespace (EXT_AUTHZ_NAMESPACE), beside the request's identity; a request it refused for its
# limits also carries REASON (one of RATE_LIMIT_REASONS, or RATE_LIMIT_UNAVAILABLE).

# bool: the request was admitted beyond a soft monthly quota.
OVERAGE: Final = "overage"
# number: how many of its hits were beyond the quota.
OVERAGE_HITS: Final = "overage_hits"
# bool: a shadow-mode plan would have denied the request.
SHADOW_OVER_LIMIT: Final = "shadow_over_limit"
# string: the window concerned (second, minute, hour, day or billing_period).
WINDOW: Final = "window"
# bool: counters unreachable; admitted by failure mode "allow".
STORE_UNAVAILABLE: Final = "store_unavailable"
# string: an older name for WINDOW, still accepted by the access-log reader.
LIMIT: Final = "limit"

# --- headers ------------------------------------------------------------------------------------------

# Where clients present a key (lowercase, as Envoy sends header names).
API_KEY_HEADER: Final = "x-api-key"
AUTHORIZATION_HEADER: Final = "authorization"
REQUEST_ID_HEADER: Final = "x-request-id"
# The request headers Envoy sends with a Check (ext_authz allowed_headers): all a decision reads.
CHECK_HEADERS: Final = (API_KEY_HEADER, AUTHORIZATION_HEADER, REQUEST_ID_HEADER)
# Identity headers added for the upstream (overwriting whatever a client sent under these names).
APPLICATION_HEADER: Final = "x-tollway-application"
SUBSCRIPTION_HEADER: Final = "x-tollway-subscription"
PLAN_HEADER: Final = "x-tollway-plan"
KEY_ID_HEADER: Final = "x-tollway-key-id"
# Response headers of refusals.
CONTENT_TYPE_HEADER: Final = "content-type"
CACHE_CONTROL_HEADER: Final = "cache-control"
WWW_AUTHENTICATE_HEADER: Final = "www-authenticate"
RETRY_AFTER_HEADER: Final = "retry-after"
# WWW-Authenticate values for 401s: no key presented, and a key presented but refused.
WWW_AUTHENTICATE_REALM: Final = 'Bearer realm="tollway"'
WWW_AUTHENTICATE_INVALID_TOKEN: Final = 'Bearer realm="tollway", error="invalid_token"'
# X-RateLimit-* headers are emitted by Envoy's ratelimit filter (DRAFT_VERSION_03) from the throttle's
# descriptor statuses; named here so tests and docs can refer to them.
RATELIMIT_LIMIT_HEADER: Final = "x-ratelimit-limit"
RATELIMIT_REMAINING_HEADER: Final = "x-ratelimit-remaining"
RATELIMIT_RESET_HEADER: Final = "x-ratelimit-reset"
# Envoy's ratelimit filter marks its 429s with this header (value "true"); the fused Check does too.
ENVOY_RATELIMITED_HEADER: Final = "x-envoy-ratelimited"

# --- problem documents (RFC 9457) ---------------------------------------------------------------------

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://tollway.dev/problems/"
# Throttle refusals (429).
RATE_LIMITED: Final = "rate_limited"
QUOTA_EXCEEDED: Final = "quota_exceeded"
# 503 of the fused Check (TOLLWAY_THROTTLE_MODE=authz) when the limits cannot be applied and
# TOLLWAY_RATELIMIT_FAILURE_MODE is deny: the ratelimit filter's status_on_error in the other mode.
RATE_LIMIT_UNAVAILABLE: Final = "rate_limit_unavailable"
# A HARD monthly quota whose counter the store lost is being rebuilt from usage: retry shortly.
QUOTA_REBUILDING: Final = "quota_rebuilding"
RATE_LIMIT_REASONS: Final = (RATE_LIMITED, QUOTA_EXCEEDED, QUOTA_REBUILDING)
# Server-side refusals of keymgr (the client-side ones are keymgr.decision.REASONS).
SERVICE_UNAVAILABLE: Final = "service_unavailable"
INTERNAL_ERROR: Final = "internal_error"
# Envoy's own 404 for a path no API is published at (the catch-all route's direct response).
NOT_FOUND: Final = "not_found"


def problem_type(reason: str) -> str:
    """The `type` URI of a problem document with this reason."""
    return PROBLEM_TYPE_BASE + reason
