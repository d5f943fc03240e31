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


class RedisMode(StrEnum):
    """What TOLLWAY_REDIS_URL / TOLLWAY_REDIS_NODES name for the rate-limit counters."""

    # One Redis (or a proxy in front of several that keeps a script on one node).
    STANDALONE = "standalone"
    # A Redis Cluster: any of its nodes; the client discovers the rest and follows failovers.
    CLUSTER = "cluster"


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


class TierMode(StrEnum):
    """How a plan's tiers price the requests beyond the included ones (plan.tier_mode;
    TIER_MODE_<name> in the catalog proto)."""

    # Each tier prices the requests that fall into it (and charges its flat fee once reached).
    GRADUATED = "GRADUATED"
    # The tier the period's count reaches prices every request (and charges its flat fee).
    VOLUME = "VOLUME"


class VersionEffect(StrEnum):
    """When a new plan version takes effect (plan_version.effect; VERSION_EFFECT_<name> in the catalog
    proto)."""

    # At the start of each subscription's next billing period (its own anchor day).
    NEXT_PERIOD = "NEXT_PERIOD"
    # At a stated instant (a whole minute, never in the past), for every subscription at once; an open
    # period is split there and prorated, like a plan change.
    INSTANT = "INSTANT"


class EventType(StrEnum):
    """What happened, as told to webhook endpoints and on BillingService.StreamEvents (the `type` of an
    event in the outbox, tollway/events.py). Values are the wire spelling; new ones are only added."""

    # A threshold of a quota, spend cap or credit balance was crossed (once per period and threshold).
    ALERT_RAISED = "alert.raised"
    # An invoice was finalized: numbered and immutable from now on.
    INVOICE_FINALIZED = "invoice.finalized"
    # A credit note corrected a finalized invoice.
    CREDIT_NOTE_ISSUED = "credit_note.issued"
    # A subscription moved through its lifecycle (approved, blocked, cancelled, plan changed, ...).
    SUBSCRIPTION_STATE_CHANGED = "subscription.state_changed"
    # A prepaid credit balance reached zero.
    CREDIT_EXHAUSTED = "credit.exhausted"
