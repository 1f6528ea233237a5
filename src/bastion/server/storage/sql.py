"""The SQLAlchemy (async, Core) storage backend, for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bastion.server.models import (
    OutgoingMail,
    SigningKey,
    User,
)
from bastion.server.storage import database_url
from bastion.server.storage.prepared import select_by
from bastion.server.storage.sql_base import SQLiteThread, sqlite_pragmas, values
from bastion.server.storage.sql_clients import ClientsMixin
from bastion.server.storage.sql_directory import DirectoryMixin
from bastion.server.storage.sql_grants import BY_LOGIN, GrantsMixin
from bastion.server.storage.sql_mail import MailMixin
from bastion.server.storage.sql_purge import PurgeMixin
from bastion.server.storage.tables import (
    outbox,
    signing_keys,
    users,
)
from bastion.server.text import fold

log = logging.getLogger("bastion.storage")


def private_file(path: Path) -> None:
    """Create ``path`` (and a missing directory) readable by this user only: the
    database holds password hashes, secret digests and the encrypted signing keys.
    SQLite gives its -wal and -shm files the database file's mode. An existing file
    or directory keeps the mode its operator chose."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys. Errors leave
    out the statement's parameters (``hide_parameters``), as they reach the log."""
    parsed = database_url.check(url)  # a file, for SQLite: no in-memory database
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        private_file(Path(parsed.database))
        # Storage calls use their own connection (``SQLiteThread``); this engine serves
        # migrations.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1,
                                     max_overflow=0, pool_timeout=60, hide_parameters=True)

        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    # asyncpg prepares statements; a generic plan for the trigram search ignores the search
    # text and can read every index entry, so each execution is planned for its values.
    # No pre-ping (it costs three round trips per checkout); connections are recycled
    # instead, and one broken by a database restart is discarded on its first error.
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=300,
        hide_parameters=True,  # errors are logged: no digests, logins or addresses in them
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
    )


def _user(row: Mapping[str, Any]) -> User:
    return User(**row)


class SQLStorage(ClientsMixin, GrantsMixin, DirectoryMixin, MailMixin, PurgeMixin):
    """``Storage`` on an ``AsyncEngine``. Every method is one short transaction; on a
    SQLite file it runs through ``SQLiteThread`` (on the event loop when SQLite can
    answer at once, else on the storage's thread)."""

    #: Seconds ``close`` waits for the database (a hung one held a shutdown for ever).
    close_within = 5.0

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._drivers: weakref.WeakSet[Any] = weakref.WeakSet()  # what close may drop
        event.listen(engine.sync_engine, "connect", self._opened)
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._sqlite = SQLiteThread(engine.url)

    # users

    async def create_user(self, user: User) -> None:
        await self._insert(users, values(user))

    async def get_user(self, user_id: str) -> User | None:
        row = await self._one(select_by(users, "id"), {"id": user_id})
        return _user(row) if row else None

    async def get_user_by_login(self, login: str) -> User | None:
        row = await self._one(BY_LOGIN, {"login": fold(login)})
        return _user(row) if row else None

    # signing keys

    async def rotate_signing_key(self, key: SigningKey) -> str:
        # A concurrent rotation trips the one-active or one-next index; the retry
        # then rotates once more past the keys it committed.
        def rotate(conn: sa.Connection) -> str:
            _lock_keys(conn)
            return _rotate(conn, key)

        for attempt in range(10):
            try:
                return await self._write(rotate)
            except IntegrityError:
                if attempt == 9:
                    raise
        raise AssertionError("unreachable")

    async def publish_signing_key(self, key: SigningKey) -> bool:
        def publish(conn: sa.Connection) -> None:
            _lock_keys(conn)
            conn.execute(signing_keys.insert(), {**values(key), "activated_at": None})
        try:
            await self._write(publish)
        except IntegrityError:
            return False
        return True

    async def withdraw_signing_key(self, kid: str, replacement: SigningKey) -> bool:
        def withdraw(conn: sa.Connection) -> bool:
            _lock_keys(conn)  # decided on the keys as they are: no rotation in between
            key = conn.execute(sa.select(signing_keys.c.retired_at, signing_keys.c.activated_at)
                               .where(signing_keys.c.kid == kid)).first()
            if key is None:
                return False
            waits = key.retired_at is None and key.activated_at is None
            if key.retired_at is None and key.activated_at is not None:  # it signs
                _rotate(conn, replacement)
            conn.execute(signing_keys.delete().where(signing_keys.c.kid == kid))
            if waits:  # the next key: another waits in its place
                conn.execute(signing_keys.insert(), {**values(replacement), "activated_at": None})
            return True
        return await self._write(withdraw)

    async def replace_next_signing_key(self, kid: str, replacement: SigningKey) -> bool:
        def replace(conn: sa.Connection) -> bool:
            _lock_keys(conn)
            if not conn.execute(signing_keys.delete().where(
                    signing_keys.c.kid == kid, _NEXT)).rowcount:
                return False
            conn.execute(signing_keys.insert(), {**values(replacement), "activated_at": None})
            return True
        return await self._write(replace)

    async def signing_keys(self) -> list[SigningKey]:
        query = sa.select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.kid)
        return await self._read(lambda conn: [
            SigningKey(**row) for row in conn.execute(query).mappings()])

    async def reencrypt(self, key: Callable[[SigningKey], bytes],
                        mail: Callable[[OutgoingMail], tuple[str, str]]) -> tuple[int, int]:
        queued = sa.select(outbox).where(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))

        def reencrypt(conn: sa.Connection) -> tuple[int, int]:
            _lock_keys(conn)
            keys = 0
            for row in conn.execute(sa.select(signing_keys)).mappings().all():
                stored = SigningKey(**row)
                if (new := key(stored)) != stored.private_key_enc:
                    conn.execute(signing_keys.update().where(signing_keys.c.kid == stored.kid)
                                 .values(private_key_enc=new))
                    keys += 1
            mails = 0
            # (locked: a worker's claim or settling waits for this transaction)
            for row in conn.execute(queued.with_for_update()).mappings().all():
                found = OutgoingMail(**row)
                text, html = mail(found)
                if (text, html) != (found.text, found.html):
                    conn.execute(outbox.update().where(outbox.c.id == found.id)
                                 .values(text=text, html=html))
                    mails += 1
            return keys, mails
        return await self._write(reencrypt, may_wait=True)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute(sa.text("SELECT 1")))
        if self._sqlite is not None:
            self._sqlite.check_file()

    async def close(self) -> None:
        """Close the connections. A database that leaves that unanswered for
        ``close_within`` seconds (it hangs) has them dropped instead, so that a shutdown
        ends."""
        if self._sqlite is not None:
            await self._sqlite.close()
        closing = asyncio.ensure_future(self.engine.dispose())
        try:
            await asyncio.wait_for(asyncio.shield(closing), self.close_within)
        except TimeoutError:
            log.warning("the database did not answer within %g s: its connections are "
                        "dropped, not closed", self.close_within)
            # Dropped, the connection being closed ends its wait quietly (asyncpg); a
            # cancelled one would have SQLAlchemy log a traceback.
            for connection in list(self._drivers):
                connection.terminate()
            with contextlib.suppress(TimeoutError):  # else it is cancelled
                await asyncio.wait_for(closing, self.close_within)

    def _opened(self, dbapi_connection: Any, _record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if hasattr(driver, "terminate"):  # asyncpg's, not SQLite's
            self._drivers.add(driver)


def open_storage(url: str, *, pool_size: int = 10) -> SQLStorage:
    return SQLStorage(create_engine(url, pool_size=pool_size))


_KEYS_LOCK = 0x6B657973  # "keys"
_NEXT = sa.and_(signing_keys.c.activated_at.is_(None), signing_keys.c.retired_at.is_(None))


def _rotate(conn: sa.Connection, key: SigningKey) -> str:
    """For ``key``'s use: retire the active key, activate the next one (``key`` itself
    if there is none) and insert ``key`` as the next key; the kid that now signs."""
    at = key.created_at
    same_use = signing_keys.c.use == key.use
    conn.execute(signing_keys.update().where(
        same_use, signing_keys.c.retired_at.is_(None),
        signing_keys.c.activated_at.is_not(None)).values(retired_at=at))
    # no UPDATE ... RETURNING: SQLite has it only since 3.35 (RHEL 9 ships 3.34)
    activated = conn.execute(sa.select(signing_keys.c.kid).where(same_use, _NEXT)).scalar()
    if activated is not None:
        conn.execute(signing_keys.update().where(signing_keys.c.kid == activated)
                     .values(activated_at=at))
    conn.execute(signing_keys.insert(), {**values(key), "activated_at": None if activated else at})
    return activated or key.kid


def _lock_keys(conn: sa.Connection) -> None:
    """Rotations and publications, rare as they are, run one at a time on PostgreSQL:
    two of them updating and inserting the same use's rows could deadlock. (SQLite
    runs one write at a time anyway.)"""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _KEYS_LOCK})
