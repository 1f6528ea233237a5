"""Password hashing with argon2id (OWASP parameters by default, see ``Settings``)."""

from __future__ import annotations

import os

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from bastion.server.offload import Offload
from bastion.server.settings import Settings

# One thread per core for hashing: argon2 is CPU- and memory-bound (19 MiB a hash), so
# more threads add only contention and memory; a flood of logins queues here instead.
_HASHING = Offload(os.cpu_count() or 2, "argon2")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
            type=Type.ID,
        )
        # Verified against when the account does not exist, so both paths cost the same.
        self._dummy = self._hasher.hash("not a password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        if len(password) > MAX_PASSWORD_LENGTH:  # longer than any that can be set
            return False
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    # argon2 releases the GIL: hashing in the pool keeps the event loop serving.
    async def ahash(self, password: str) -> str:
        return await _HASHING.run(self.hash, password)

    async def averify(self, stored: str | None, password: str) -> bool:
        return await _HASHING.run(self.verify, stored, password)
