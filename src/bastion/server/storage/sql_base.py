"""What the SQLAlchemy storage mixins share: the engine, how a storage call runs its
transaction, and two small helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.server.offload import Offload
from bastion.server.storage import prepared
from bastion.server.storage.conflicts import conflict

T = TypeVar("T")


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class SQLiteThread:
    """A SQLite file through the standard sync driver, on one thread of its own.

    A storage call is one hand-off to this thread, its whole transaction run there.
    Through aiosqlite each statement costs four or five hand-offs (cursor, execute,
    fetch, close, commit), and a hand-off costs about 0.1 ms of CPU: that was most of
    what a login spent outside the password hash. One thread and one connection also
    keep this process's transactions in order: SQLite has one write lock, and writers
    that find it taken sleep and retry rather than queue (p99 of refreshes with a pool
    of connections: 1 s; with one: 0.2 s).

    (Reads by a unique key were also tried on the event loop with a second connection:
    no gain for a login, and refreshes cost 10% more, as every write on one connection
    drops the other's page cache.)
    """

    def __init__(self, url: sa.URL) -> None:
        self.engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"), pool_size=1, max_overflow=0,
            connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(self.engine, "connect", sqlite_pragmas)
        self._thread = Offload(1, "sqlite")
        # Kept open: checking the connection out of the pool for every call cost a fifth
        # of the call.
        self._conn: sa.Connection | None = None  # used on the thread only

    def _call(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = self.engine.connect()
        elif conn.in_transaction():  # a call that failed half-way (its rollback too)
            conn.rollback()
        if write:
            with conn.begin():
                return fn(conn)
        try:
            return fn(conn)
        finally:
            conn.rollback()  # ends the read (the driver began no transaction: nothing sent)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()

    async def run(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
        return await self._thread.run(self._call, fn, write)

    async def close(self) -> None:
        await self._thread.run(self._disconnect)  # after the calls queued before it
        await asyncio.to_thread(self._thread.close)


class SQLBase:
    engine: AsyncEngine
    _sqlite: SQLiteThread | None = None

    @property
    def sync_engine(self) -> sa.Engine:
        """The engine whose events see every statement of this storage (for counting)."""
        return self._sqlite.engine if self._sqlite is not None else self.engine.sync_engine

    async def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` with a connection (no transaction is committed)."""
        if self._sqlite is not None:
            return await self._sqlite.run(fn, write=False)
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn)

    async def _lookup(self, fn: Callable[[sa.Connection], T]) -> T:
        """``_read`` for reads by a unique key: on PostgreSQL without a transaction, so
        a lookup is one round trip instead of three (``BEGIN``, the statement,
        ``ROLLBACK``)."""
        if self._sqlite is not None:
            return await self._read(fn)
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await conn.run_sync(fn)

    async def _write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` in a transaction, committed if it returns."""
        if self._sqlite is not None:
            return await self._sqlite.run(fn, write=True)
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn)

    async def _insert(self, table: sa.Table, values: dict[str, Any]) -> None:
        try:
            await self._write(lambda conn: prepared.insert(conn, table, values))
        except IntegrityError as exc:
            raise conflict(exc) from None

    async def _one(self, query: sa.Select[Any], params: dict[str, Any]) -> dict[str, Any] | None:
        """The row a unique key selects, or None. ``query`` is built once (see
        ``prepared``), its values are bound from ``params``."""
        def one(conn: sa.Connection) -> dict[str, Any] | None:
            found = prepared.rows(conn, query, params)
            return found[0] if found else None
        return await self._lookup(one)


def values(record: Any) -> dict[str, Any]:
    """A dataclass record as column values."""
    return {f: getattr(record, f) for f in record.__dataclass_fields__}
