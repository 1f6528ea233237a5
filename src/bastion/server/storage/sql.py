"""The SQLAlchemy (async, Core) storage backend, for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bastion.server.models import Client, SigningKey, User
from bastion.server.storage.base import Conflict
from bastion.server.storage.tables import clients, signing_keys, users

# Unique index name -> the field a Conflict reports.
_UNIQUE_FIELDS = {
    "uq_users_username": "username",
    "uq_users_email": "email",
    "users.id": "id",
    "users_pkey": "id",
    "clients.client_id": "client_id",
    "clients_pkey": "client_id",
}


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _conflict(exc: IntegrityError) -> Conflict:
    text = str(exc.orig)
    for marker, field in _UNIQUE_FIELDS.items():
        if marker in text:
            return Conflict(field)
    return Conflict("unknown")


def _user(row: Mapping[str, Any]) -> User:
    return User(**row)


def _client(row: Mapping[str, Any]) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        is_public=row["is_public"],
        secret_digest=row["secret_digest"],
        redirect_uris=tuple(row["redirect_uris"]),
        grant_types=tuple(row["grant_types"]),
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
    )


class SQLStorage:
    """``Storage`` on an ``AsyncEngine``. Every method is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _insert(self, table: sa.Table, values: dict[str, Any]) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(table.insert().values(**values))
        except IntegrityError as exc:
            raise _conflict(exc) from None

    async def _one(self, query: sa.Select[Any]) -> Mapping[str, Any] | None:
        async with self.engine.connect() as conn:
            row: Mapping[str, Any] | None = (await conn.execute(query)).mappings().first()
        return row

    # users

    async def create_user(self, user: User) -> None:
        await self._insert(users, {f: getattr(user, f) for f in User.__dataclass_fields__})

    async def get_user(self, user_id: str) -> User | None:
        row = await self._one(sa.select(users).where(users.c.id == user_id))
        return _user(row) if row else None

    async def get_user_by_login(self, login: str) -> User | None:
        key = login.lower()
        row = await self._one(
            sa.select(users).where(
                sa.or_(sa.func.lower(users.c.username) == key, sa.func.lower(users.c.email) == key)
            )
        )
        return _user(row) if row else None

    # clients

    async def create_client(self, client: Client) -> None:
        values = {f: getattr(client, f) for f in Client.__dataclass_fields__}
        for f in ("redirect_uris", "grant_types", "scopes"):
            values[f] = list(values[f])
        values["created_at"] = client.created_at or datetime.now(UTC)
        await self._insert(clients, values)

    async def get_client(self, client_id: str) -> Client | None:
        row = await self._one(sa.select(clients).where(clients.c.client_id == client_id))
        return _client(row) if row else None

    # signing keys

    async def rotate_signing_key(self, key: SigningKey) -> None:
        values = {f: getattr(key, f) for f in SigningKey.__dataclass_fields__}
        # A concurrent rotation trips the one-active-key index; the retry then
        # retires the key it committed.
        for attempt in range(10):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        signing_keys.update()
                        .where(signing_keys.c.use == key.use, signing_keys.c.retired_at.is_(None))
                        .values(retired_at=key.created_at)
                    )
                    await conn.execute(signing_keys.insert().values(values))
                return
            except IntegrityError:
                if attempt == 9:
                    raise

    async def signing_keys(self) -> list[SigningKey]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.kid)
                )
            ).mappings()
            return [SigningKey(**row) for row in rows]

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def open_storage(url: str, *, pool_size: int = 10) -> SQLStorage:
    return SQLStorage(create_engine(url, pool_size=pool_size))
