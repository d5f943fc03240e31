"""What a Check reads: keys, applications, live subscriptions, published APIs, plans and block rules,
held compactly enough for a million keys in one gateway process.

Rows are packed by keymgr/records.py, never held as an object per row with string timestamps: a key is
`key id -> bytes(flags, 32-byte hash[, expires µs][, revoked µs], application id)`, an application and
its live subscriptions are ONE record `application id -> bytes(known/deleted, per subscription: API
index, plan index, state index, subscription id)`, with the few distinct API ids, plan ids and states
in side tables. Ids in Tollway's formats are held as ints (the others as their strings). Measured with
tests/keymgr/measure_index_memory.py (SQLite, 100k applications, subscriptions and keys): the index
holds 29.4 MB by tracemalloc, ~294 bytes per key with its application and subscription (the previous
tuple-of-strings records: 56 MB, ~560 bytes), process RSS grew 12 MB (98 -> 110 MB; RSS growth
understates, as the load reuses memory freed after the inserts) and the load took 3.9 s (was 3.8 s).
Extrapolated to a million of each: ~290 MB of index (dict tables cost less per entry at 1M than at
100k, allocator rounding adds back about as much), i.e. ~390 MB for the process, where the
dataclass-per-row snapshot grew RSS by 1,090 MB. The price is ~1 µs per id packed or unpacked on a
lookup (a Check reads three entries).

Readers get the familiar entry objects (`KeyEntry`, `SubscriptionEntry`, ...) through read-only
mapping views that build one on lookup, so `decide` reads entries as before. A snapshot is changed in
place only by `KeyIndex.apply`, synchronously (no await), so a Check sees an entity either before or
after a change, never half of one; `version` moves on every change, for caches keyed on the snapshot.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Set
from types import MappingProxyType
from typing import Any

from keymgr.entries import (
    ApiEntry,
    ApplicationEntry,
    KeyEntry,
    PlanEntry,
    SubscriptionEntry,
    from_micros,
    micros,
)
from keymgr.records import (
    APPLICATION_IDS,
    DELETED,
    KEY_IDS,
    KNOWN,
    SUBSCRIPTION_IDS,
    Code,
    Interned,
    SubscriptionFields,
    application_subscriptions,
    find_subscription,
    pack_application,
    pack_key,
    unpack_key,
)
from tollway.vocabulary import BlockTarget

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (subscription id, plan id, state) by (application id, API id).
SubscriptionRecord = tuple[str, str, str]
SubscriptionKey = tuple[str, str]
# A key's current row: (application id, hash hex, expires µs, revoked µs).
KeyRecord = tuple[str, str, int | None, int | None]
# A block rule: (target, value).
RuleRecord = tuple[str, str]
# A billing gate: (reason, scope, target id, currency, refused).
GateRecord = tuple[str, str, str, str, bool]
CREDIT_EXHAUSTED = "credit_exhausted"


class _Tables:
    """The few distinct API ids, plan ids and states an application record refers to by index."""

    __slots__ = ("apis", "plans", "states")

    def __init__(self) -> None:
        self.apis = Interned()
        self.plans = Interned()
        self.states = Interned()


class _KeyView(Mapping[str, KeyEntry]):
    __slots__ = ("_records",)

    def __init__(self, records: dict[Code, bytes]) -> None:
        self._records = records

    def __getitem__(self, key_id: str) -> KeyEntry:
        application_id, key_hash, expires, revoked = unpack_key(self._records[KEY_IDS.encode(key_id)])
        return KeyEntry(key_id, application_id, key_hash.hex(), from_micros(expires), from_micros(revoked))

    def __contains__(self, key_id: object) -> bool:
        return isinstance(key_id, str) and KEY_IDS.encode(key_id) in self._records

    def __iter__(self) -> Iterator[str]:
        return map(KEY_IDS.decode, self._records)

    def __len__(self) -> int:
        return len(self._records)


class _ApplicationView(Mapping[str, ApplicationEntry]):
    """Applications the store knows (a record may exist for subscriptions alone)."""

    __slots__ = ("_snapshot",)

    def __init__(self, snapshot: KeySnapshot) -> None:
        self._snapshot = snapshot

    def __getitem__(self, application_id: str) -> ApplicationEntry:
        flags = self._snapshot.application_records[APPLICATION_IDS.encode(application_id)][0]
        if not flags & KNOWN:
            raise KeyError(application_id)
        return ApplicationEntry(id=application_id, deleted=bool(flags & DELETED))

    def __contains__(self, application_id: object) -> bool:
        if not isinstance(application_id, str):
            return False
        record = self._snapshot.application_records.get(APPLICATION_IDS.encode(application_id))
        return record is not None and bool(record[0] & KNOWN)

    def __iter__(self) -> Iterator[str]:
        for code, record in list(self._snapshot.application_records.items()):
            if record[0] & KNOWN:
                yield APPLICATION_IDS.decode(code)

    def __len__(self) -> int:
        return self._snapshot.application_count


class _SubscriptionView(Mapping[SubscriptionKey, SubscriptionEntry]):
    """Live subscriptions by (application id, API id), read from the applications' records."""

    __slots__ = ("_snapshot",)

    def __init__(self, snapshot: KeySnapshot) -> None:
        self._snapshot = snapshot

    def __getitem__(self, key: SubscriptionKey) -> SubscriptionEntry:
        application_id, api_id = key
        snapshot = self._snapshot
        record = snapshot.application_records[APPLICATION_IDS.encode(application_id)]
        api = snapshot.tables.apis.indexes[api_id]
        found = find_subscription(record, api)
        if found is None:
            raise KeyError(key)
        _, sub_code, plan, state = found
        tables = snapshot.tables
        return SubscriptionEntry(
            SUBSCRIPTION_IDS.decode(sub_code),
            application_id,
            api_id,
            tables.plans.values[plan],
            tables.states.values[state],
        )

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2 or not all(isinstance(part, str) for part in key):
            return False
        try:
            self[(key[0], key[1])]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[SubscriptionKey]:
        apis = self._snapshot.tables.apis.values
        for code, record in list(self._snapshot.application_records.items()):
            application_id = APPLICATION_IDS.decode(code)
            for api, _, _, _ in application_subscriptions(record):
                yield (application_id, apis[api])

    def __len__(self) -> int:
        return self._snapshot.subscription_count


class KeySnapshot:
    """Everything a Check needs. Built whole by a full load, then changed per entity by `KeyIndex`."""

    __slots__ = (
        "_blocked_counts",
        "_blocked_ids",
        "_networks",
        "api_entries",
        "apis",
        "application_count",
        "application_records",
        "applications",
        "blocked_api_ids",
        "blocked_application_ids",
        "blocked_key_ids",
        "blocked_networks",
        "capped",
        "credit_refused",
        "gates",
        "key_records",
        "keys",
        "loaded",
        "plan_entries",
        "plans",
        "revision",
        "rules",
        "subscription_count",
        "subscriptions",
        "tables",
        "version",
    )

    def __init__(self, *, loaded: bool = False, revision: int = -1) -> None:
        # False only for the placeholder a KeyIndex holds before its first load.
        self.loaded = loaded
        # The change-log head this snapshot's full load started from.
        self.revision = revision
        self.version = 0
        self.key_records: dict[Code, bytes] = {}
        # By application id: the application's flags (KNOWN, DELETED) and its live subscriptions (ACTIVE,
        # PENDING_APPROVAL, BLOCKED, SUSPENDED). Deleted applications stay: their keys are refused as such.
        self.application_records: dict[Code, bytes] = {}
        self.tables = _Tables()
        self.application_count = 0
        self.subscription_count = 0
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
        # billing/'s gate rows by id (reason, scope, target, currency, refused), and what they mean for a
        # Check: (application, currency) pairs whose credit is used up, and (scope, target) pairs capped.
        # A prepaid plan also refuses an application that never had credit (no row): see decide().
        self.gates: dict[str, GateRecord] = {}
        self.credit_refused: dict[tuple[str, str], bool] = {}
        self.capped: set[tuple[str, str]] = set()
        self.keys: Mapping[str, KeyEntry] = _KeyView(self.key_records)
        self.applications: Mapping[str, ApplicationEntry] = _ApplicationView(self)
        self.subscriptions: Mapping[SubscriptionKey, SubscriptionEntry] = _SubscriptionView(self)
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
            snapshot.set_key(
                key.key_id, (key.application_id, key.key_hash, micros(key.expires_at), micros(key.revoked_at))
            )
        snapshot.api_entries.update((api.id, api) for api in apis)
        snapshot.plan_entries.update((plan.id, plan) for plan in plans)
        for app in applications:
            snapshot.set_application(app.id, app.deleted)
        for sub in subscriptions:
            snapshot.set_subscription(
                sub.id, (sub.application_id, sub.api_id), (sub.id, sub.plan_id, sub.state)
            )
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
            "keys": dict(self.keys.items()),
            "applications": dict(self.applications.items()),
            "subscriptions": dict(self.subscriptions.items()),
            "apis": dict(self.api_entries),
            "plans": dict(self.plan_entries),
            "rules": dict(self.rules),
            "blocked_api_ids": set(self.blocked_api_ids),
            "blocked_application_ids": set(self.blocked_application_ids),
            "blocked_key_ids": set(self.blocked_key_ids),
            "blocked_networks": sorted(map(str, self.blocked_networks)),
            "gates": dict(self.gates),
        }

    def credit_exhausted(self, application_id: str, currency: str) -> bool:
        """True unless the application holds credit in `currency` (no account at all: no credit)."""
        return self.credit_refused.get((application_id, currency), True)

    def set_gate(self, gate_id: str, record: GateRecord | None) -> None:
        """A billing gate's current row, or None when it is gone."""
        old = self.gates.pop(gate_id, None)
        if old is not None:
            reason, scope, target, currency, _ = old
            if reason == CREDIT_EXHAUSTED:
                self.credit_refused.pop((target, currency), None)
            else:
                self.capped.discard((scope, target))
        if record is None:
            return
        reason, scope, target, currency, refused = record
        self.gates[gate_id] = record
        if reason == CREDIT_EXHAUSTED:
            self.credit_refused[(target, currency)] = refused
        elif refused:
            self.capped.add((scope, target))

    # --- changes (synchronous: callers never await between the changes of one batch) -------------------

    def set_key(self, key_id: str, record: KeyRecord | None) -> None:
        """The key's current row, or None when it is gone."""
        code = KEY_IDS.encode(key_id)
        if record is None:
            self.key_records.pop(code, None)
            return
        application_id, key_hash_hex, expires, revoked = record
        self.key_records[code] = pack_key(application_id, bytes.fromhex(key_hash_hex), expires, revoked)

    def set_application(self, application_id: str, deleted: bool | None) -> None:
        """Whether the application is deleted, or None when its row is gone."""
        code = APPLICATION_IDS.encode(application_id)
        record = self.application_records.get(code, _NO_RECORD)
        flags = 0 if deleted is None else KNOWN | (DELETED if deleted else 0)
        self.application_count += bool(flags & KNOWN) - bool(record[0] & KNOWN)
        self._store_application(code, bytes([flags]) + record[1:])

    def set_subscription(
        self, subscription_id: str, key: SubscriptionKey, record: SubscriptionRecord | None
    ) -> None:
        """The subscription's current row: `record` when it is live, None when it is not (or is gone)."""
        application_id, api_id = key
        code = APPLICATION_IDS.encode(application_id)
        current = self.application_records.get(code, _NO_RECORD)
        api = self.tables.apis.index(api_id)
        if len(current) == 1:  # no subscription yet: the common case of a full load
            if record is not None:
                self._store_application(code, pack_application(current[0], [self._fields(api, record)]))
                self.subscription_count += 1
            return
        subscriptions = list(application_subscriptions(current))
        kept = [fields for fields in subscriptions if fields[0] != api]
        if record is not None:
            kept.append(self._fields(api, record))
        elif len(kept) < len(subscriptions):
            # Another subscription may hold the pair now (cancelled, then subscribed again).
            held = next(fields for fields in subscriptions if fields[0] == api)
            if SUBSCRIPTION_IDS.decode(held[1]) != subscription_id:
                return
        self.subscription_count += len(kept) - len(subscriptions)
        self._store_application(code, pack_application(current[0], kept))

    def remove_subscription_by_id(self, subscription_id: str) -> None:
        """A subscription whose row is gone. Tollway never deletes subscription rows (they are billing
        history), so this scan is for rows removed by hand."""
        sub_code = SUBSCRIPTION_IDS.encode(subscription_id)
        for code, record in list(self.application_records.items()):
            subscriptions = list(application_subscriptions(record))
            kept = [fields for fields in subscriptions if fields[1] != sub_code]
            if len(kept) < len(subscriptions):
                self.subscription_count += len(kept) - len(subscriptions)
                self._store_application(code, pack_application(record[0], kept))

    def _fields(self, api: int, record: SubscriptionRecord) -> SubscriptionFields:
        sub_id, plan_id, state = record
        tables = self.tables
        return (api, SUBSCRIPTION_IDS.encode(sub_id), tables.plans.index(plan_id), tables.states.index(state))

    def _store_application(self, code: Code, record: bytes) -> None:
        if record == _NO_RECORD:
            # Neither a known application nor any live subscription.
            self.application_records.pop(code, None)
        else:
            self.application_records[code] = record

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


_NO_RECORD = b"\x00"

EMPTY_SNAPSHOT = KeySnapshot()
