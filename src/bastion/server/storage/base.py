"""The storage protocol every backend implements.

One contract test suite (``tests/storage``) runs it on SQLite and PostgreSQL.
Methods are small and single-purpose; anything that must be atomic is one method.
"""

from __future__ import annotations

from typing import Protocol

from bastion.server.models import Client, SigningKey, User


class Conflict(Exception):
    """A unique value is taken; ``field`` names which (e.g. 'username')."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} already exists")
        self.field = field


class Storage(Protocol):
    async def create_user(self, user: User) -> None:
        """Insert a user; raises ``Conflict('username' | 'email')``."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def get_user_by_login(self, login: str) -> User | None:
        """The user whose username or email equals ``login``, case-insensitively."""

    async def create_client(self, client: Client) -> None:
        """Insert a client; raises ``Conflict('client_id')``."""

    async def get_client(self, client_id: str) -> Client | None: ...

    async def rotate_signing_key(self, key: SigningKey) -> None:
        """Insert ``key`` and, in the same transaction, retire the active keys of its use."""

    async def signing_keys(self) -> list[SigningKey]:
        """Every key, active and retired, oldest first."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""

    async def close(self) -> None: ...
