"""X-RateLimit-* response headers, as the IETF draft (draft-ietf-httpapi-ratelimit-headers-03, the
spelling Envoy's DRAFT_VERSION_03 uses) states them, built by the throttle for both modes.

Envoy's ratelimit filter can derive these headers itself, but only from one status per descriptor: with
per-second, per-minute and per-hour limits on a plan, its quota policy named one window and a client
could not see the others coming. Here the policy lists every limited window of every descriptor:

    X-RateLimit-Limit: 10, 10;w=1;name="second", 600;w=60;name="minute", 10000;w=3600;name="hour"
    X-RateLimit-Remaining: 9        (of the window with the least room: the one that refuses next)
    X-RateLimit-Reset: 1            (seconds until that window resets)

The ratelimit path hands them to Envoy as the response's headers to add (Envoy's own derivation is
off), the fused path answers them from Check: one function, so the two modes cannot drift.
"""

from __future__ import annotations

from throttle.limits import DAY, HOUR, MINUTE, PERIOD, SECOND, Window
from throttle.service import Decision
from tollway import envoy_contract as contract

# A window's length in the policy's `w` (a billing period is stated as 30 days, as Envoy states MONTH).
_WINDOW_SECONDS = {SECOND: 1, MINUTE: 60, HOUR: 3600, DAY: 86400, PERIOD: 30 * 86400}
# (window name, limit) → its quota-policy item, e.g. ', 5;w=60;name="minute"'. Bounded: plans are few.
_policies: dict[tuple[str, int], str] = {}
_POLICY_CACHE_LIMIT = 10_000


def _policy(window: Window) -> str:
    key = (window.name, window.limit)
    policy = _policies.get(key)
    if policy is None:
        if len(_policies) >= _POLICY_CACHE_LIMIT:
            _policies.clear()
        policy = _policies[key] = f', {window.limit};w={_WINDOW_SECONDS[window.name]};name="{window.name}"'
    return policy


def ratelimit_headers(decision: Decision) -> tuple[tuple[str, str], ...]:
    """Limit (the nearest window's limit, then every limited window's policy item), Remaining and
    Reset of the window with the least room; none when no descriptor is limited."""
    least = None
    policy = ""
    for outcome in decision.outcomes:
        if outcome.window is None:
            continue
        if least is None or outcome.remaining < least.remaining:
            least = outcome
        for window in outcome.windows or (outcome.window,):
            policy += _policy(window)
    if least is None or least.window is None:
        return ()
    return (
        (contract.RATELIMIT_LIMIT_HEADER, f"{least.window.limit}{policy}"),
        (contract.RATELIMIT_REMAINING_HEADER, str(least.remaining)),
        (contract.RATELIMIT_RESET_HEADER, str(decision.reset_seconds(least.window))),
    )
