"""Sign-in attempt limits, per account and per client address (pure; the clock is passed in).

Failed attempts are counted in a sliding window: an account (its normalized email, whether or not
such an account exists, so the limit reveals nothing) may fail `per_account` times, a client address
`per_client` times, within `window_seconds`; past that, sign-in is refused until the oldest failure
leaves the window. A successful sign-in clears the account's failures (not the address's: one
address guessing many accounts stays limited).

Memory is bounded whatever callers send: at most `max_keys` keys are tracked (the least recently
failing are forgotten first) and each keeps at most its limit of timestamps. IPv6 clients count per
/64, since one host usually holds a whole /64. Counts are per portal replica: with N replicas an
attacker gets up to N times the limit."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass

DEFAULT_WINDOW_SECONDS = 15 * 60
DEFAULT_PER_ACCOUNT = 5
DEFAULT_PER_CLIENT = 30
DEFAULT_MAX_KEYS = 10_000


def client_key(address: str) -> str:
    """The unit a client address is counted in: the address (IPv4), its /64 (IPv6), else the text."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class _Window:
    """Failure times per key, oldest first, bounded in keys and in times per key."""

    def __init__(self, limit: int, window_seconds: float, max_keys: int) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _current(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        times = self._current(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_seconds - now)

    def fail(self, key: str, now: float) -> None:
        times = self._current(key, now)
        if times is None:
            times = deque(maxlen=self.limit)
            self._failures[key] = times
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        times.append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt is refused before the password is looked at, and for how long."""

    scope: str  # "account" or "client"
    retry_after_seconds: int


class SignInLimiter:
    def __init__(
        self,
        per_account: int = DEFAULT_PER_ACCOUNT,
        per_client: int = DEFAULT_PER_CLIENT,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if per_account < 1 or per_client < 1 or window_seconds <= 0 or max_keys < 1:
            raise ValueError("sign-in limits must be positive")
        self._accounts = _Window(per_account, window_seconds, max_keys)
        self._clients = _Window(per_client, window_seconds, max_keys)

    def check(self, account: str, client: str, now: float) -> Refusal | None:
        """None when an attempt for `account` from `client` may go ahead."""
        wait = self._clients.retry_after(client_key(client), now)
        if wait > 0:
            return Refusal("client", int(wait) + 1)
        wait = self._accounts.retry_after(account, now)
        if wait > 0:
            return Refusal("account", int(wait) + 1)
        return None

    def failed(self, account: str, client: str, now: float) -> None:
        self._accounts.fail(account, now)
        self._clients.fail(client_key(client), now)

    def succeeded(self, account: str) -> None:
        self._accounts.clear(account)

    def tracked(self) -> tuple[int, int]:
        """(accounts, clients) currently tracked: bounded by max_keys each."""
        return len(self._accounts), len(self._clients)
