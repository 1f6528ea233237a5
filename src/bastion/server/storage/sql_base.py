"""What the SQLAlchemy storage mixins share: the engine, how a storage call runs its
transaction, and two small helpers."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.server.offload import Offload
from bastion.server.storage import prepared
from bastion.server.storage.base import Unusable
from bastion.server.storage.conflicts import conflict

T = TypeVar("T")
log = logging.getLogger("bastion.storage")


#: Tries of a fresh file's switch to WAL (``_wal``), 20 ms apart.
WAL_TRIES = 500


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    _wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _wal(cur: Any) -> None:
    """Switch the file to WAL. On a fresh file, connections opened at once (instances
    migrating together) may each hold a read lock and want the write lock to switch:
    SQLite answers one "database is locked" at once, without waiting (a deadlock
    otherwise). Try again; the other switch ends within milliseconds."""
    for attempt in range(WAL_TRIES):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # sqlite3's, or aiosqlite's adaptation of it
            if "locked" not in str(exc) or attempt == WAL_TRIES - 1:
                raise
            time.sleep(0.02)


class SQLiteThread:
    """A SQLite file through the standard sync driver and one connection, kept open.

    A call runs on the event loop itself when SQLite can answer at once, and on this
    storage's thread when it would have to wait:

    - On the loop, the connection's busy timeout is 0: a call that finds the write
      lock taken (by another process: a second worker, the CLI) fails at once; it is
      rolled back and run again on the thread, where the busy timeout is 30 s.
    - While the thread has work, every call queues behind it, so the connection is
      never used by two threads at once and this process's writes keep their order.
    - A write call runs in one transaction under the write lock (``BEGIN
      IMMEDIATE``), its reads included: what they saw holds until it commits, as
      PostgreSQL's row locks make it hold there.
    - Reads that may scan (``SQLBase._read``: lists, searches, counts) always run on
      the thread, and so do checkpoints (they fsync): automatic checkpoints are off on
      this connection and one runs on the thread every ``CHECKPOINT_EVERY`` writes.

    Calls on the loop are single-row reads and writes of a few rows, tens of µs of
    SQLite work with no fsync (WAL, ``synchronous=NORMAL``). Handing each one to a
    thread cost more than that: two wake-ups each way, and the cores' caches, which
    the password hash shares (a login costs about 2% less CPU; see bench/README.md).
    """

    CHECKPOINT_EVERY = 100

    def __init__(self, url: sa.URL) -> None:
        self.engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"), pool_size=1, max_overflow=0,
            hide_parameters=True, connect_args={"timeout": 0, "check_same_thread": False})
        event.listen(self.engine, "connect", sqlite_pragmas)
        event.listen(self.engine, "connect", _answer_at_once)
        self._thread = Offload(1, "sqlite")
        self._queued = 0  # calls handed to the thread and not yet done
        self._writes = 0  # since the last checkpoint
        self._checkpoint: asyncio.Task[None] | None = None
        # Kept open: checking the connection out of the pool for every call cost a fifth
        # of the call.
        self._conn: sa.Connection | None = None
        database = url.database or ""
        self._path = None if database in ("", ":memory:") or database.startswith("file:") \
            else os.path.abspath(database)
        self._file: tuple[int, int] | None = None  # (device, inode) of the file open

    def check_file(self) -> None:
        """``Unusable`` if the database file was deleted or replaced since it was opened:
        SQLite would go on with the file it has open, and all that is written would be
        lost at the next start."""
        if self._path is None or self._file is None:
            return
        try:
            found = os.stat(self._path)
        except FileNotFoundError:  # (the path itself is for the logs, not this answer)
            raise Unusable("the database file was deleted; restart the server after "
                           "restoring it") from None
        if (found.st_dev, found.st_ino) != self._file:
            raise Unusable("the database file was replaced; restart the server to use the "
                           "new one") from None

    async def run(self, fn: Callable[[sa.Connection], T], write: bool, *,
                  may_wait: bool = False) -> T:
        """Run ``fn`` in a transaction (committed if ``write``). ``may_wait``: ``fn``
        may take long (a scan), so it runs on the thread."""
        if write:
            self._count_write()
        if not self._queued and not may_wait:
            try:
                return self._call(fn, write)
            except OperationalError as exc:
                if not _busy(exc):
                    raise
        return await self._on_thread(self._call, fn, write, True)

    def _call(self, fn: Callable[[sa.Connection], T], write: bool, wait: bool = False) -> T:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = self.engine.connect()
            if self._path is not None:  # the file this connection has open
                opened = os.stat(self._path)
                self._file = (opened.st_dev, opened.st_ino)
        elif conn.in_transaction():  # a call that failed half-way (its rollback too)
            conn.rollback()
        driver = conn.connection.dbapi_connection
        assert driver is not None
        if wait:
            driver.execute("PRAGMA busy_timeout=30000")
        try:
            if write:
                with conn.begin():
                    # The write lock first: the driver would begin at the first write,
                    # leaving the reads before it outside the transaction, and another
                    # process could commit in between.
                    try:
                        driver.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError as exc:  # busy: as a statement's
                        raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
                    return fn(conn)
            try:
                return fn(conn)
            finally:
                conn.rollback()  # ends the read (the driver began no transaction)
        finally:
            if wait:
                driver.execute("PRAGMA busy_timeout=0")

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        # Counted until the thread is done with the call, not until its caller stops
        # waiting: a caller cancelled meanwhile (a timeout, a shutdown) must not let the
        # next call use the connection on the loop while the thread still has it.
        self._queued += 1
        call = asyncio.ensure_future(self._thread.run(fn, *args))
        call.add_done_callback(self._thread_done)
        return await asyncio.shield(call)

    def _thread_done(self, call: asyncio.Future[Any]) -> None:
        self._queued -= 1
        if not call.cancelled():
            call.exception()  # retrieved: its caller may have stopped waiting

    def _count_write(self) -> None:
        self._writes += 1
        if self._writes >= self.CHECKPOINT_EVERY and self._checkpoint is None:
            self._writes = 0
            self._checkpoint = asyncio.ensure_future(self._on_thread(self._run_checkpoint))
            self._checkpoint.add_done_callback(self._checkpoint_done)

    def _run_checkpoint(self) -> None:
        """Copy the WAL into the database as far as readers allow (never waits)."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.in_transaction():
            driver = conn.connection.dbapi_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)").close()

    def _checkpoint_done(self, task: asyncio.Task[None]) -> None:
        self._checkpoint = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("SQLite checkpoint failed: %s", task.exception())

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        await self._on_thread(self._disconnect)  # after the calls queued before it
        await asyncio.to_thread(self._thread.close)


def _answer_at_once(dbapi_conn: Any, _record: Any) -> None:
    # Calls on the event loop must not wait for a lock; see SQLiteThread.
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _busy(exc: OperationalError) -> bool:
    """SQLITE_BUSY (and its extended codes): the lock is taken, try again later."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_BUSY


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
            return await self._sqlite.run(fn, write=False, may_wait=True)
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn)

    async def _lookup(self, fn: Callable[[sa.Connection], T]) -> T:
        """``_read`` for reads by a unique key: on SQLite on the event loop when it can
        (see ``SQLiteThread``); on PostgreSQL without a transaction, so a lookup is one
        round trip instead of three (``BEGIN``, the statement, ``ROLLBACK``)."""
        if self._sqlite is not None:
            return await self._sqlite.run(fn, write=False)
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await conn.run_sync(fn)

    async def _write(self, fn: Callable[[sa.Connection], T], *, may_wait: bool = False) -> T:
        """Run ``fn`` in a transaction, committed if it returns. ``may_wait``: it may
        take long (a batch), so on SQLite it runs on the storage's thread."""
        if self._sqlite is not None:
            return await self._sqlite.run(fn, write=True, may_wait=may_wait)
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn)

    async def _write_unless(self, fn: Callable[[sa.Connection], bool]) -> bool:
        """``_write(fn)``, rolled back when ``fn`` answers ``False``."""
        def run(conn: sa.Connection) -> bool:
            if not fn(conn):
                raise _Refused
            return True
        try:
            return await self._write(run)
        except _Refused:
            return False

    async def _insert(self, table: sa.Table, values: dict[str, Any], *,
                      for_user: bool = False) -> bool:
        """Insert one row; whether it was. With ``for_user``, only if its ``user_id`` is
        None or names a live user (``prepared.insert_for_user``)."""
        def insert(conn: sa.Connection) -> bool:
            if for_user and values["user_id"] is not None:
                return prepared.insert_for_user(conn, table, values)
            prepared.insert(conn, table, values)
            return True
        try:
            return await self._write(insert)
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


class _Refused(Exception):
    """Raised inside a write to roll it back (see ``_write_unless``)."""
