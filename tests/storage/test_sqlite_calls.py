"""Where SQLite storage calls run (``SQLiteThread``): on the event loop when SQLite can
answer at once, on the storage thread when they would wait or may scan; checkpoints
on the thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_contract import user

from bastion.server.storage import SQLStorage, migrate, open_storage


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLStorage]:
    store = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    await migrate.upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


def where(conn: sa.Connection) -> int:
    return threading.get_ident()


async def test_lookups_and_writes_run_on_the_loop_and_scans_on_the_thread(
        store: SQLStorage) -> None:
    loop_thread = threading.get_ident()
    assert await store._lookup(where) == loop_thread
    assert await store._write(where) == loop_thread
    assert await store._read(where) != loop_thread


async def test_a_write_that_would_wait_for_the_lock_waits_on_the_thread(
        store: SQLStorage, tmp_path: Path) -> None:
    await store.create_user(user(1))
    other = sqlite3.connect(tmp_path / "calls.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        write = asyncio.ensure_future(store.create_user(user(2)))
        read = asyncio.ensure_future(store.get_user(user(1).id))
        ticks = 0
        while ticks < 20:  # the loop keeps running while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done()
        assert not read.done()  # queued behind the write: one connection, in order
    finally:
        other.execute("COMMIT")
        other.close()
    await write
    assert await read == user(1)
    assert await store.get_user(user(2).id) == user(2)
    loop_thread = threading.get_ident()
    assert await store._write(where) == loop_thread  # back on the loop once idle


async def test_a_checkpoint_runs_every_so_many_writes(
        store: SQLStorage, tmp_path: Path) -> None:
    sqlite = store._sqlite
    assert sqlite is not None
    sqlite.CHECKPOINT_EVERY = 3
    path = tmp_path / "calls.db"

    def in_database_file() -> int:
        # immutable: the database file alone, without the WAL's newer pages
        db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return int(db.execute("SELECT count(*) FROM users").fetchone()[0])
        finally:
            db.close()

    migrated = sqlite3.connect(path)
    migrated.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the schema, into the file
    migrated.close()
    await store.create_user(user(1))
    await store.create_user(user(2))
    assert in_database_file() == 0  # still in the WAL: no automatic checkpoint
    await store.create_user(user(3))
    assert sqlite._checkpoint is not None
    await sqlite._checkpoint
    assert in_database_file() == 3


@pytest.mark.parametrize("add", ["user role", "permission"])
async def test_a_role_deleted_by_another_process_cannot_slip_under_an_add(
        store: SQLStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, add: str) -> None:
    # Another process deletes the role just after the add checked it exists: the add
    # must hold the write lock by then, or its insert meets a missing role (a 500).
    from test_contract import NOW

    from bastion.server.models import Organization, Role
    from bastion.server.storage import sql_directory

    await store.create_user(user(1))
    await store.create_organization(Organization(id="o", name="o", created_at=NOW))
    await store.create_role(Role(id="r", organization_id="o", name="r", permissions=(),
                                 created_at=NOW))
    check = sql_directory._live_roles
    interleaved: list[str] = []

    def then_delete(conn: sa.Connection, *args: object, **kwargs: object) -> set[str]:
        live = check(conn, *args, **kwargs)  # type: ignore[arg-type]
        other = sqlite3.connect(tmp_path / "calls.db", isolation_level=None, timeout=0)
        try:
            other.execute("PRAGMA foreign_keys=ON")
            other.execute("DELETE FROM roles WHERE id = 'r'")
            interleaved.append("deleted")
        except sqlite3.OperationalError as exc:  # locked: it waits for the add
            interleaved.append(str(exc))
        finally:
            other.close()
        return live

    monkeypatch.setattr(sql_directory, "_live_roles", then_delete)
    if add == "user role":
        assert [r.id for r in await store.change_user_roles(user(1).id, "o", ["r"], [])] == ["r"]
    else:
        await store.change_permissions("r", ["r:x"], [])
    assert interleaved == ["database is locked"]


async def test_the_file_check_holds_after_a_chdir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.server.storage.base import Unusable

    monkeypatch.chdir(tmp_path)
    store = open_storage("sqlite+aiosqlite:///relative.db")  # as a relative data_dir gives
    try:
        await migrate.upgrade(store.engine)
        await store.ping()
        monkeypatch.chdir("/")
        await store.ping()  # the same file, wherever the process now stands
        (tmp_path / "relative.db").rename(tmp_path / "moved.db")
        with pytest.raises(Unusable, match="deleted"):
            await store.ping()
        (tmp_path / "moved.db").rename(tmp_path / "relative.db")
        await store.ping()
    finally:
        await store.close()


async def test_a_call_whose_caller_stopped_waiting_still_holds_the_connection(
        store: SQLStorage) -> None:
    # A timeout or a shutdown cancels the caller, not the thread's work: until that is
    # done, later calls must queue behind it, not use the connection on the loop.
    started, release = threading.Event(), threading.Event()

    def slow(conn: sa.Connection) -> None:
        started.set()
        release.wait()

    call = asyncio.ensure_future(store._read(slow))  # a scan: on the thread
    try:
        await asyncio.to_thread(started.wait)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        lookup = asyncio.ensure_future(store._lookup(where))
        await asyncio.sleep(0)
        assert not lookup.done()  # queued behind the call still running
    finally:
        release.set()
    assert await lookup != threading.get_ident()


async def test_the_file_check_follows_a_reconnect_to_a_new_file(tmp_path: Path) -> None:
    from bastion.server.storage.base import Unusable

    store = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'swap.db'}")
    try:
        await migrate.upgrade(store.engine)
        await store.ping()
        copy = (tmp_path / "swap.db").read_bytes()
        (tmp_path / "swap.db").unlink()
        (tmp_path / "swap.db").write_bytes(copy)  # another file at the same path
        with pytest.raises(Unusable, match="replaced"):
            await store.ping()
        sqlite = store._sqlite
        assert sqlite is not None and sqlite._conn is not None
        sqlite._conn.invalidate()  # the next call opens the file now at the path
        await store.ping()
    finally:
        await store.close()


async def test_a_writes_reads_are_under_the_write_lock(store: SQLStorage,
                                                       tmp_path: Path) -> None:
    """The driver began the transaction at the first write: a read before it (is the
    grant still live? which key is next?) was outside, and another process could commit
    in between, e.g. a refresh token stored in a grant a logout had just revoked."""
    await store.create_user(user(1))
    other = sqlite3.connect(tmp_path / "calls.db", isolation_level=None, timeout=0)
    refused: list[str] = []

    def read_then_write(conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
        try:  # another process, between this read and this call's first write
            other.execute("UPDATE users SET username = 'changed'")
        except sqlite3.OperationalError as exc:
            refused.append(str(exc))
        conn.execute(sa.text("UPDATE users SET updated_at = updated_at"))

    try:
        await store._write(read_then_write)
    finally:
        other.close()
    assert refused == ["database is locked"]
    assert (await store.get_user(user(1).id)) == user(1)
