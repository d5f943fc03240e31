"""The subscription state machine, pure: states, who acts, and the one table of allowed transitions.

Kept apart from `tollway/lifecycle.py` (which writes transitions) so the schema can build its partial
unique index from the live states without importing the code that writes rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tollway.errors import FailedPrecondition


class SubscriptionState(StrEnum):
    ACTIVE = "ACTIVE"
    PENDING_APPROVAL = "PENDING_APPROVAL"
    BLOCKED = "BLOCKED"
    SUSPENDED = "SUSPENDED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


# States in which a subscription still holds its (application, API) slot.
LIVE_SUBSCRIPTION_STATES: tuple[SubscriptionState, ...] = (
    SubscriptionState.ACTIVE,
    SubscriptionState.PENDING_APPROVAL,
    SubscriptionState.BLOCKED,
    SubscriptionState.SUSPENDED,
)
SUBSCRIPTION_STATES: tuple[SubscriptionState, ...] = tuple(SubscriptionState)


class Actor(StrEnum):
    """Who moves a subscription; recorded on every event."""

    ADMIN = "ADMIN"  # an operator through StoreService (keymgr): block, unblock, cancel
    BILLING = "BILLING"  # an operator through BillingService: approval workflow and plan changes
    SYSTEM = "SYSTEM"  # Tollway itself, e.g. cancelling the subscriptions of a deleted application


class Action(StrEnum):
    BLOCK = "BLOCK"
    UNBLOCK = "UNBLOCK"
    CANCEL = "CANCEL"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    SUSPEND = "SUSPEND"
    RESUME = "RESUME"
    CHANGE_PLAN = "CHANGE_PLAN"


@dataclass(frozen=True, slots=True)
class Rule:
    """One action: the actors allowed to take it, the states it starts from, the state it leaves
    the subscription in (None: the state stays, as for a plan change) and the event kind it writes."""

    actors: frozenset[Actor]
    from_states: tuple[SubscriptionState, ...]
    to_state: SubscriptionState | None
    event_kind: str


_LIVE = LIVE_SUBSCRIPTION_STATES
S = SubscriptionState

TRANSITIONS: dict[Action, Rule] = {
    Action.BLOCK: Rule(frozenset({Actor.ADMIN}), (S.ACTIVE,), S.BLOCKED, "BLOCKED"),
    Action.UNBLOCK: Rule(frozenset({Actor.ADMIN}), (S.BLOCKED,), S.ACTIVE, "UNBLOCKED"),
    Action.CANCEL: Rule(frozenset({Actor.ADMIN, Actor.SYSTEM}), _LIVE, S.CANCELLED, "CANCELLED"),
    Action.APPROVE: Rule(frozenset({Actor.BILLING}), (S.PENDING_APPROVAL,), S.ACTIVE, "APPROVED"),
    Action.REJECT: Rule(frozenset({Actor.BILLING}), (S.PENDING_APPROVAL,), S.REJECTED, "REJECTED"),
    Action.SUSPEND: Rule(frozenset({Actor.BILLING}), (S.ACTIVE,), S.SUSPENDED, "SUSPENDED"),
    Action.RESUME: Rule(frozenset({Actor.BILLING}), (S.SUSPENDED,), S.ACTIVE, "RESUMED"),
    Action.CHANGE_PLAN: Rule(frozenset({Actor.BILLING}), _LIVE, None, "PLAN_CHANGED"),
}

# Event kinds billing reads to split a period: when the fee starts, changes plan, and stops.
APPROVED = TRANSITIONS[Action.APPROVE].event_kind
PLAN_CHANGED = TRANSITIONS[Action.CHANGE_PLAN].event_kind
CANCELLED = TRANSITIONS[Action.CANCEL].event_kind


def initial_state(approval_required: bool) -> SubscriptionState:
    """The state a new subscription starts in: waiting for approval when its plan requires one."""
    return S.PENDING_APPROVAL if approval_required else S.ACTIVE


def target_state(action: Action, from_state: str) -> str:
    """The state `action` leaves a subscription in that is now `from_state`."""
    to_state = TRANSITIONS[action].to_state
    return from_state if to_state is None else to_state.value


def is_allowed(action: Action, actor: Actor, from_state: str) -> bool:
    rule = TRANSITIONS[action]
    return actor in rule.actors and from_state in rule.from_states


def check_transition(subscription_id: str, action: Action, actor: Actor, from_state: str) -> str:
    """The state `actor` may move the subscription to by `action`, or FAILED_PRECONDITION naming the
    current state and the target."""
    rule = TRANSITIONS[action]
    to_state = target_state(action, from_state)
    if actor not in rule.actors:
        raise FailedPrecondition(
            f"subscription {subscription_id!r} is {from_state}; {actor} may not move it to {to_state}"
            f" ({action})"
        )
    if from_state not in rule.from_states:
        allowed = " or ".join(rule.from_states)
        outcome = f"can become {to_state}" if rule.to_state is not None else "can change plan"
        raise FailedPrecondition(
            f"subscription {subscription_id!r} is {from_state}; only {allowed} subscriptions {outcome}"
        )
    return to_state
