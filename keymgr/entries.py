"""The entries a Check reads, as `decide` sees them: built on lookup by the snapshot's read-only views
(keymgr/snapshot.py) from its packed records, and held by nothing else. Times are aware UTC
datetimes, packed as microseconds since the epoch (`micros`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    # Admitted only while the application holds credit in `currency` (billing's credit gate).
    prepaid: bool = False
    currency: str = ""


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


def micros(value: datetime | None) -> int | None:
    """Microseconds since the epoch of an aware datetime (exact, one small int per time)."""
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def from_micros(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)
