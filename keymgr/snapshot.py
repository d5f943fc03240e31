"""What a Check reads: keys, applications, live subscriptions, published APIs, plans and block rules,
held compactly enough for a million keys in one gateway process.

A row is stored as a tuple of shared strings, raw bytes and integers, never as an object per row with
string timestamps: a key is `key id -> (application id, 32-byte hash[, expires µs, revoked µs])`, an
application `id -> deleted`, a live subscription `(application id, API id) -> (id, plan id, state)`.
Application, API and plan ids are shared between the maps rather than repeated per row. Measured with
tests/keymgr/measure_index_memory.py (SQLite, 100k applications, subscriptions and keys): the index
holds 56 MB by tracemalloc, ~560 bytes per key with its application and subscription, and process RSS
grew 45 MB (98 -> 143 MB); extrapolated to a million of each: ~560 MB of index, where the
dataclass-per-row snapshot grew RSS by 1,090 MB. Still above the 400 MB goal for the whole process: the
rest is per-object overhead of the three dicts, the id strings and the record tuples.

Readers get the familiar entry objects (`KeyEntry`, `SubscriptionEntry`, ...) through read-only
mapping views that build one on lookup, so `decide` reads entries as before. A snapshot is changed in
place only by `KeyIndex.apply`, synchronously (no await), so a Check sees an entity either before or
after a change, never half of one; `version` moves on every change, for caches keyed on the snapshot.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from tollway.vocabulary import BlockTarget

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ApiEntry:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class PlanEntry:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ApplicationEntry:
    id: str
    # The index does not hold application names (the gateway never sends them): read back as "".
    name: str = ""
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class SubscriptionEntry:
    id: str
    application_id: str
    api_id: str
    plan_id: str
    state: str


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key_id: str
    application_id: str
    # Hex, as the store writes it; held as 32 raw bytes.
    key_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        # Any revocation time counts, even one ahead of this replica's clock: revocation is immediate.
        return self.revoked_at is not None


# (application id, hash) or (application id, hash, expires µs, revoked µs) when either time is set.
KeyRecord = tuple[str, bytes] | tuple[str, bytes, int | None, int | None]
# (subscription id, plan id, state) by (application id, API id).
SubscriptionRecord = tuple[str, str, str]
SubscriptionKey = tuple[str, str]
# A block rule: (target, value).
RuleRecord = tuple[str, str]


def micros(value: datetime | None) -> int | None:
    """Microseconds since the epoch of an aware datetime (exact, one small int per time)."""
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def from_micros(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def key_record(application_id: str, key_hash_hex: str, expires: int | None, revoked: int | None) -> KeyRecord:
    hash_bytes = bytes.fromhex(key_hash_hex)
    if expires is None and revoked is None:
        return (application_id, hash_bytes)
    return (application_id, hash_bytes, expires, revoked)


def _key_entry(key_id: str, record: KeyRecord) -> KeyEntry:
    if len(record) == 2:
        return KeyEntry(key_id, record[0], record[1].hex(), None, None)
    _, hash_bytes, expires, revoked = record  # the 4-tuple form
    return KeyEntry(key_id, record[0], hash_bytes.hex(), from_micros(expires), from_micros(revoked))


def _application_entry(application_id: str, deleted: bool) -> ApplicationEntry:
    return ApplicationEntry(id=application_id, deleted=deleted)


def _subscription_entry(key: SubscriptionKey, record: SubscriptionRecord) -> SubscriptionEntry:
    return SubscriptionEntry(record[0], key[0], key[1], record[1], record[2])


K = TypeVar("K")
R = TypeVar("R")
E = TypeVar("E")


class RecordView(Mapping[K, E], Generic[K, R, E]):
    """A read-only mapping over compact records that builds an entry object per lookup."""

    __slots__ = ("_entry", "_records")

    def __init__(self, records: Mapping[K, R], entry: Callable[[K, R], E]) -> None:
        self._records = records
        self._entry = entry

    def __getitem__(self, key: K) -> E:
        return self._entry(key, self._records[key])

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __iter__(self) -> Iterator[K]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


class KeySnapshot:
    """Everything a Check needs. Built whole by a full load, then changed per entity by `KeyIndex`."""

    __slots__ = (
        "_blocked_counts",
        "_blocked_ids",
        "_networks",
        "api_entries",
        "apis",
        "application_records",
        "applications",
        "blocked_api_ids",
        "blocked_application_ids",
        "blocked_key_ids",
        "blocked_networks",
        "key_records",
        "keys",
        "loaded",
        "plan_entries",
        "plans",
        "revision",
        "rules",
        "subscription_records",
        "subscriptions",
        "version",
    )

    def __init__(self, *, loaded: bool = False, revision: int = -1) -> None:
        # False only for the placeholder a KeyIndex holds before its first load.
        self.loaded = loaded
        # The change-log head this snapshot's full load started from.
        self.revision = revision
        self.version = 0
        self.key_records: dict[str, KeyRecord] = {}
        # Deleted applications stay (as True): a key of a deleted application is refused as such.
        self.application_records: dict[str, bool] = {}
        # Live subscriptions (ACTIVE, PENDING_APPROVAL, BLOCKED, SUSPENDED) only.
        self.subscription_records: dict[SubscriptionKey, SubscriptionRecord] = {}
        # Published APIs only: an unpublished API is unknown to the gateway.
        self.api_entries: dict[str, ApiEntry] = {}
        self.plan_entries: dict[str, PlanEntry] = {}
        self.rules: dict[str, RuleRecord] = {}
        # How many rules block each (target, value): a value stays blocked while any rule names it.
        self._blocked_counts: Counter[RuleRecord] = Counter()
        self._networks: dict[str, IPNetwork] = {}
        self._blocked_ids: dict[str, set[str]] = {
            BlockTarget.API: set(),
            BlockTarget.APPLICATION: set(),
            BlockTarget.API_KEY: set(),
        }
        self.blocked_api_ids: Set[str] = self._blocked_ids[BlockTarget.API]
        self.blocked_application_ids: Set[str] = self._blocked_ids[BlockTarget.APPLICATION]
        self.blocked_key_ids: Set[str] = self._blocked_ids[BlockTarget.API_KEY]
        self.blocked_networks: tuple[IPNetwork, ...] = ()
        self.keys: Mapping[str, KeyEntry] = RecordView(self.key_records, _key_entry)
        self.applications: Mapping[str, ApplicationEntry] = RecordView(
            self.application_records, _application_entry
        )
        self.subscriptions: Mapping[SubscriptionKey, SubscriptionEntry] = RecordView(
            self.subscription_records, _subscription_entry
        )
        self.apis: Mapping[str, ApiEntry] = MappingProxyType(self.api_entries)
        self.plans: Mapping[str, PlanEntry] = MappingProxyType(self.plan_entries)

    @classmethod
    def build(
        cls,
        *,
        revision: int = 0,
        keys: Iterable[KeyEntry] = (),
        apis: Iterable[ApiEntry] = (),
        plans: Iterable[PlanEntry] = (),
        applications: Iterable[ApplicationEntry] = (),
        subscriptions: Iterable[SubscriptionEntry] = (),
        blocked_api_ids: Iterable[str] = (),
        blocked_application_ids: Iterable[str] = (),
        blocked_key_ids: Iterable[str] = (),
        blocked_networks: Iterable[IPNetwork] = (),
    ) -> KeySnapshot:
        """A loaded snapshot from plain entries (used by tests)."""
        snapshot = cls(loaded=True, revision=revision)
        for key in keys:
            snapshot.key_records[key.key_id] = key_record(
                key.application_id, key.key_hash, micros(key.expires_at), micros(key.revoked_at)
            )
        snapshot.api_entries.update((api.id, api) for api in apis)
        snapshot.plan_entries.update((plan.id, plan) for plan in plans)
        snapshot.application_records.update((app.id, app.deleted) for app in applications)
        for sub in subscriptions:
            snapshot.subscription_records[(sub.application_id, sub.api_id)] = (sub.id, sub.plan_id, sub.state)
        targets = (
            (BlockTarget.API, blocked_api_ids),
            (BlockTarget.APPLICATION, blocked_application_ids),
            (BlockTarget.API_KEY, blocked_key_ids),
            (BlockTarget.CLIENT_CIDR, (str(network) for network in blocked_networks)),
        )
        for target, values in targets:
            for value in values:
                snapshot.set_rule(f"{target}:{value}", (target.value, value))
        return snapshot

    # --- reads -----------------------------------------------------------------------------------------

    def client_blocked(self, client_ip: str) -> bool:
        if not self.blocked_networks or not client_ip:
            return False
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        # A v4 client seen on a dual-stack socket arrives as ::ffff:a.b.c.d; v4 rules must still match.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.blocked_networks)

    def contents(self) -> dict[str, Any]:
        """Every record and every derived set, in plain comparable form (two indexes are the same index
        exactly when their contents are equal)."""
        return {
            "loaded": self.loaded,
            "keys": dict(self.key_records),
            "applications": dict(self.application_records),
            "subscriptions": dict(self.subscription_records),
            "apis": dict(self.api_entries),
            "plans": dict(self.plan_entries),
            "rules": dict(self.rules),
            "blocked_api_ids": set(self.blocked_api_ids),
            "blocked_application_ids": set(self.blocked_application_ids),
            "blocked_key_ids": set(self.blocked_key_ids),
            "blocked_networks": sorted(map(str, self.blocked_networks)),
        }

    # --- changes (synchronous: callers never await between the changes of one batch) -------------------

    def set_subscription(
        self, subscription_id: str, key: SubscriptionKey, record: SubscriptionRecord | None
    ) -> None:
        """The subscription's current row: `record` when it is live, None when it is not (or is gone)."""
        if record is not None:
            self.subscription_records[key] = record
            return
        current = self.subscription_records.get(key)
        # Another subscription may hold the pair now (cancelled, then subscribed again).
        if current is not None and current[0] == subscription_id:
            del self.subscription_records[key]

    def remove_subscription_by_id(self, subscription_id: str) -> None:
        """A subscription whose row is gone. Tollway never deletes subscription rows (they are billing
        history), so this scan is for rows removed by hand."""
        for key, record in list(self.subscription_records.items()):
            if record[0] == subscription_id:
                del self.subscription_records[key]

    def set_rule(self, rule_id: str, rule: RuleRecord | None) -> None:
        """A block rule's current (target, value), or None when it is gone."""
        old = self.rules.pop(rule_id, None)
        if old is not None:
            # Before the networks are rebuilt below: a removed CIDR rule must leave them.
            self._networks.pop(rule_id, None)
            self._blocked_counts[old] -= 1
            if self._blocked_counts[old] <= 0:
                del self._blocked_counts[old]
                self._set_blocked(old, False)
        if rule is None:
            return
        target, value = rule
        if target == BlockTarget.CLIENT_CIDR:
            try:
                self._networks[rule_id] = ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                # The store validates CIDRs; a bad row must not stop the gateway from loading.
                log.warning("ignoring block rule %s: invalid CIDR", rule_id)
        elif target not in (BlockTarget.API, BlockTarget.APPLICATION, BlockTarget.API_KEY):
            log.warning("ignoring block rule %s: unknown target %r", rule_id, target)
        self.rules[rule_id] = rule
        self._blocked_counts[rule] += 1
        self._set_blocked(rule, True)

    def _set_blocked(self, rule: RuleRecord, blocked: bool) -> None:
        target, value = rule
        if target == BlockTarget.CLIENT_CIDR:
            # Few rules: rebuilt whole, in rule order, without duplicates.
            self.blocked_networks = tuple(dict.fromkeys(self._networks.values()))
            return
        ids = self._blocked_ids.get(target)
        if ids is None:
            return
        if blocked:
            ids.add(value)
        else:
            ids.discard(value)


EMPTY_SNAPSHOT = KeySnapshot()
