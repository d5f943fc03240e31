"""Who may call: one pure function from a request and a snapshot to an allow or a deny.

The checks run in a fixed order so that every refusal names the first thing wrong, and an unknown key id
and a wrong secret get the same answer (no oracle for which key ids exist).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from keymgr.index import ApiEntry, ApplicationEntry, KeySnapshot, PlanEntry, SubscriptionEntry
from keymgr.keys import parse_key, verify_key
from tollway import envoy_contract as contract
from tollway.envoy_contract import API_KEY_HEADER, AUTHORIZATION_HEADER
from tollway.subscription_states import SubscriptionState

# Compared against for unknown key ids so that they cost the same HMAC as known ones.
_DUMMY_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuthzRequest:
    # Lowercased header names; repeated headers joined with "," as Envoy sends them.
    headers: Mapping[str, str]
    # From the route's ext_authz context_extensions; "" when the route set none.
    api_id: str
    client_ip: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Allowed:
    api: ApiEntry
    application: ApplicationEntry
    subscription: SubscriptionEntry
    plan: PlanEntry
    key_id: str
    # The header(s) the key came in, stripped before the request goes upstream.
    key_header_names_to_remove: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Denied:
    http_status: int
    reason: str
    title: str
    detail: str
    www_authenticate: str | None = None
    # The presented key's (public) id when it could be parsed: for logs, never the key itself.
    key_id: str | None = None
    # What was established before the refusal (api_id, application_id, ...), for access-log metadata.
    context: Mapping[str, str] = field(default_factory=dict)


Decision = Allowed | Denied

_TITLES = {
    "api_not_found": (404, "API not found"),
    "client_blocked": (403, "Client blocked"),
    "key_missing": (401, "API key required"),
    "key_malformed": (401, "Malformed API key"),
    "key_invalid": (401, "Invalid API key"),
    "key_revoked": (401, "API key revoked"),
    "key_expired": (401, "API key expired"),
    "api_blocked": (403, "API blocked"),
    "application_blocked": (403, "Application blocked"),
    "key_blocked": (403, "API key blocked"),
    "not_subscribed": (403, "Not subscribed"),
    "subscription_pending_approval": (403, "Subscription pending approval"),
    "subscription_blocked": (403, "Subscription blocked"),
    "subscription_suspended": (403, "Subscription suspended"),
    # Billing's gates (billing/credit_store.py, billing/metering.py): payment is what is missing.
    "credit_exhausted": (402, "Credit exhausted"),
    "spend_cap_reached": (402, "Spend cap reached"),
    contract.SERVICE_UNAVAILABLE: (503, "Service unavailable"),
}
REASONS = tuple(_TITLES)


def _deny(
    reason: str,
    detail: str,
    *,
    key_presented: bool = False,
    key_id: str | None = None,
    context: Mapping[str, str] | None = None,
) -> Denied:
    status, title = _TITLES.get(reason, (403, reason.replace("_", " ").capitalize()))
    www_authenticate = None
    if status == 401:
        www_authenticate = (
            contract.WWW_AUTHENTICATE_INVALID_TOKEN if key_presented else contract.WWW_AUTHENTICATE_REALM
        )
    return Denied(
        http_status=status,
        reason=reason,
        title=title,
        detail=detail,
        www_authenticate=www_authenticate,
        key_id=key_id,
        context=context or {},
    )


def presented_key(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(key, header it came in) from X-API-Key, else from Authorization: Bearer; None when absent."""
    value = headers.get(API_KEY_HEADER, "").strip()
    if value:
        return value, API_KEY_HEADER
    parts = headers.get(AUTHORIZATION_HEADER, "").split(None, 1)
    if parts and parts[0].lower() == "bearer":
        # "Bearer" with nothing after it is a presented but malformed key, not a missing one.
        return (parts[1].strip() if len(parts) > 1 else ""), AUTHORIZATION_HEADER
    return None


def decide(snapshot: KeySnapshot, request: AuthzRequest, now: datetime, server_secret: str) -> Decision:
    if not snapshot.loaded:
        return _deny(
            contract.SERVICE_UNAVAILABLE, "The gateway has not loaded its key data yet; retry shortly."
        )

    api = snapshot.apis.get(request.api_id)
    if api is None:
        return _deny("api_not_found", "No published API serves this route.")
    context: dict[str, str] = {contract.API_ID: api.id}

    if snapshot.client_blocked(request.client_ip):
        return _deny("client_blocked", "Requests from this client address are blocked.", context=context)

    found = presented_key(request.headers)
    if found is None:
        return _deny(
            "key_missing",
            "Send an API key in the X-API-Key header or as Authorization: Bearer <key>.",
            context=context,
        )
    presented, header = found
    parsed = parse_key(presented)
    if parsed is None:
        return _deny(
            "key_malformed",
            "The API key presented does not have the key format (tw_<key id>_<secret>).",
            key_presented=True,
            context=context,
        )

    key = snapshot.keys.get(parsed.key_id)
    if key is None:
        # Spend the same HMAC as a known key, then give the same answer as a wrong secret.
        verify_key(server_secret, parsed.full_key, _DUMMY_HASH)
        valid = False
    else:
        valid = verify_key(server_secret, parsed.full_key, key.key_hash)
    if key is None or not valid:
        return _deny(
            "key_invalid",
            "The API key presented is not valid.",
            key_presented=True,
            key_id=parsed.key_id,
            context=context,
        )
    context[contract.KEY_ID] = key.key_id
    context[contract.APPLICATION_ID] = key.application_id

    if key.revoked:
        return _deny(
            "key_revoked",
            "The API key presented was revoked.",
            key_presented=True,
            key_id=key.key_id,
            context=context,
        )
    if key.expires_at is not None and now >= key.expires_at:
        return _deny(
            "key_expired",
            "The API key presented has expired.",
            key_presented=True,
            key_id=key.key_id,
            context=context,
        )

    if api.id in snapshot.blocked_api_ids:
        return _deny("api_blocked", "This API is blocked.", key_id=key.key_id, context=context)

    application = snapshot.applications.get(key.application_id)
    if application is None or application.deleted or application.id in snapshot.blocked_application_ids:
        return _deny(
            "application_blocked",
            "The application this API key belongs to is blocked or deleted.",
            key_id=key.key_id,
            context=context,
        )

    if key.key_id in snapshot.blocked_key_ids:
        return _deny("key_blocked", "This API key is blocked.", key_id=key.key_id, context=context)

    subscription = snapshot.subscriptions.get((application.id, api.id))
    plan = snapshot.plans.get(subscription.plan_id) if subscription is not None else None
    if subscription is None or plan is None:
        return _deny(
            "not_subscribed",
            "The application this API key belongs to is not subscribed to this API.",
            key_id=key.key_id,
            context=context,
        )
    context[contract.SUBSCRIPTION_ID] = subscription.id
    context[contract.PLAN_ID] = plan.id

    if subscription.state != SubscriptionState.ACTIVE:
        state = subscription.state.lower()
        return _deny(
            f"subscription_{state}",
            f"The application's subscription to this API is {state.replace('_', ' ')}.",
            key_id=key.key_id,
            context=context,
        )

    if plan.prepaid and snapshot.credit_exhausted(application.id, plan.currency):
        return _deny(
            "credit_exhausted",
            f"The application has no {plan.currency or 'prepaid'} credit left for this prepaid plan; "
            "top up to continue.",
            key_id=key.key_id,
            context=context,
        )
    if snapshot.capped and (
        ("SUBSCRIPTION", subscription.id) in snapshot.capped
        or ("APPLICATION", application.id) in snapshot.capped
    ):
        return _deny(
            "spend_cap_reached",
            "The spend cap of this subscription or application for the billing period is reached.",
            key_id=key.key_id,
            context=context,
        )

    return Allowed(
        api=api,
        application=application,
        subscription=subscription,
        plan=plan,
        key_id=key.key_id,
        key_header_names_to_remove=(header,),
    )
