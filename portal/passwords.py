"""Password hashing: argon2id through argon2-cffi, with OWASP's recommended minimum parameters (19 MiB,
2 passes, 1 lane): 0.09-0.2 s per hash on this shared 2-core machine, where RFC 9106's 64 MiB
profile took 0.7-0.95 s (`python -c` timing of PasswordHasher.hash, same minute). Hashes run in worker
threads, at most two at once, so sign-in floods queue instead of starving the event loop; the
parameters live in each stored hash, so raising them later rehashes at the next sign-in.

Unknown accounts are "verified" against a dummy hash of the same parameters, so a wrong password and
an unknown email take the same time as well as getting the same answer."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MEMORY_KIB = 19 * 1024
TIME_COST = 2
PARALLELISM = 1
_CONCURRENT_HASHES = 2


class Passwords:
    def __init__(
        self, memory_kib: int = MEMORY_KIB, time_cost: int = TIME_COST, parallelism: int = PARALLELISM
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy_hash = self._hasher.hash("tollway portal: no such account")
        self._slots = asyncio.Semaphore(_CONCURRENT_HASHES)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no stored hash, spends the same work and says False."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            self._hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
