"""A fresh SQLite file's switch to WAL when several connections open it at once.

Instances migrating a new database together each opened it with a read lock and
wanted the write lock to switch: SQLite refuses one of them at once with "database
is locked" (no busy wait, as both waiting would deadlock), and an instance failed to
start (seen once in CI as ``test_concurrent_migrations_apply_once[sqlite]``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bastion.server.storage import sql_base


class Refusing:
    """A cursor of a real connection that is first refused ``times`` times."""

    def __init__(self, conn: sqlite3.Connection, times: int, error: str) -> None:
        self._cur, self.left, self._error, self.calls = conn.cursor(), times, error, 0

    def execute(self, sql: str) -> Any:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise sqlite3.OperationalError(self._error)
        return self._cur.execute(sql)


def test_a_switch_refused_as_locked_is_tried_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sql_base.time, "sleep", lambda _s: None)
    conn = sqlite3.connect(tmp_path / "fresh.db")
    cursor = Refusing(conn, 3, "database is locked")
    sql_base._wal(cursor)
    assert cursor.calls == 4
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_other_errors_and_a_lock_that_stays_are_raised(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sql_base.time, "sleep", lambda _s: None)
    conn = sqlite3.connect(tmp_path / "fresh.db")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        sql_base._wal(Refusing(conn, 1, "disk I/O error"))
    stays = Refusing(conn, sql_base.WAL_TRIES, "database is locked")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sql_base._wal(stays)
    assert stays.calls == sql_base.WAL_TRIES
