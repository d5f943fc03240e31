"""Shared vocabulary: the closed sets of words the catalog, keymgr, throttle and usage agree on.

Each enum's values are the spellings already on the wire or in the database (StrEnum members compare
equal to, and serialize as, those strings), so using them changes no stored or sent byte. Where one
idea has two spellings (a limit scope is "api" in the throttle's problem documents and "API" in the
traffic_limit table), the mapping between them is written once, here.
"""

from __future__ import annotations

from enum import StrEnum


class QuotaPolicy(StrEnum):
    """What happens beyond a plan's monthly quota (plan.quota_policy)."""

    # Requests are denied.
    HARD = "HARD"
    # Requests are admitted and marked as overage.
    SOFT = "SOFT"


class WindowName(StrEnum):
    """A counting window of a plan or shared limit; the names in metadata, problem documents and RLS
    current_limit.name."""

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    BILLING_PERIOD = "billing_period"


class LimitScope(StrEnum):
    """Whose requests a limit counts: one subscription's, or all of an API's or an application's.

    Values are the wire spelling (problem documents); `stored` is the traffic_limit table's."""

    SUBSCRIPTION = "subscription"
    API = "api"
    APPLICATION = "application"

    @property
    def stored(self) -> str:
        """The spelling in traffic_limit.scope (and TrafficLimitDraft.scope); API and APPLICATION only,
        KeyError for SUBSCRIPTION (a subscription's limits come from its plan, never from a row)."""
        return _STORED_SCOPES[self]

    @classmethod
    def from_stored(cls, value: str) -> LimitScope:
        """The scope of a traffic_limit.scope value; ValueError for anything else."""
        for scope, stored in _STORED_SCOPES.items():
            if stored == value:
                return scope
        raise ValueError(f"unknown stored limit scope {value!r}")


# The one place the two spellings meet.
_STORED_SCOPES: dict[LimitScope, str] = {
    LimitScope.API: "API",
    LimitScope.APPLICATION: "APPLICATION",
}
# Scopes a traffic_limit row may have, in their stored spelling.
SHARED_LIMIT_SCOPES: tuple[str, ...] = (LimitScope.API.stored, LimitScope.APPLICATION.stored)


class FailureMode(StrEnum):
    """What the gateway does when the rate-limit counters cannot answer."""

    # Admit the request (marked store_unavailable in the access log).
    ALLOW = "allow"
    # Refuse it with 503.
    DENY = "deny"


class EnvoyAuthMode(StrEnum):
    """How Envoy proves to Tollway's Envoy-facing port that it is the gateway (TOLLWAY_ENVOY_AUTH)."""

    # A client certificate from Tollway's Envoy CA, over TLS both ways (the default).
    MTLS = "mtls"
    # A shared bearer token in every call's metadata, where TLS is terminated elsewhere.
    TOKEN = "token"
    # Nothing: anyone who reaches the port is taken for Envoy (explicit only, warned about at startup).
    NONE = "none"


class ThrottleMode(StrEnum):
    """Where a request's plan limits are applied (TOLLWAY_THROTTLE_MODE)."""

    # Envoy's ratelimit filter asks the throttle (ShouldRateLimit) after ext_authz's Check: two calls.
    RATELIMIT = "ratelimit"
    # keymgr's Check applies them in the same step and answers 429 itself: one call per request.
    AUTHZ = "authz"


class BlockTarget(StrEnum):
    """What a block rule blocks (block_rule.target; BLOCK_TARGET_<name> in the store proto)."""

    API = "API"
    APPLICATION = "APPLICATION"
    API_KEY = "API_KEY"
    CLIENT_CIDR = "CLIENT_CIDR"
