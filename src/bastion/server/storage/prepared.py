"""Hot statements compiled once and run straight on the SQLite driver.

Running a compiled Core statement through ``Connection.execute`` builds an execution
context and a result object every time: on SQLite that costs more CPU than SQLite
needs to run the statement, and a login runs five of them. ``rows`` and ``run`` keep
what SQLAlchemy would do (the dialect's bind and result processors, wrapped driver
errors, the ``before/after_cursor_execute`` events) and skip the rest. On other
backends they are ``Connection.execute``.

Only for statements built once (module constants, ``functools.cache``): the compiled
form is kept per statement object.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from bastion.server.storage.tables import login_sessions, users

Row = dict[str, Any]
Statement = sa.Select[Any] | sa.CompoundSelect[Any] | sa.Insert | sa.Update | sa.Delete
_Processor = Callable[[Any], Any] | None


class Compiled:
    """A statement's SQL, its parameters in order, and its result columns."""

    def __init__(self, stmt: Statement, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        if compiled.post_compile_params:
            raise ValueError("expanding parameters are rewritten per call: use Core")
        self.sql = str(compiled)
        binds = compiled.binds
        self.params = [(name, binds[name].value, _bind_processor(binds[name].type, dialect))
                       for name in compiled.positiontup or ()]
        columns = getattr(stmt, "selected_columns", None)
        self.keys = list(columns.keys()) if columns is not None else []
        self.results = [_result_processor(c.type, dialect) for c in columns or ()]

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for name, default, process in self.params:
            value = values.get(name, default)
            out.append(process(value) if process is not None and value is not None else value)
        return tuple(out)

    def row(self, raw: tuple[Any, ...]) -> Row:
        return {key: (process(value) if process is not None else value)
                for key, process, value in zip(self.keys, self.results, raw, strict=True)}


def _bind_processor(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> _Processor:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _result_processor(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> _Processor:
    return type_.dialect_impl(dialect).result_processor(dialect, None)


@functools.lru_cache(maxsize=256)
def _compiled(stmt: Statement, dialect: Dialect) -> Compiled:
    return Compiled(stmt, dialect)


def rows(conn: sa.Connection, stmt: Statement, values: Mapping[str, Any] | None = None,
         ) -> list[Row]:
    """The rows ``stmt`` selects, as dicts keyed like ``Result.mappings()``."""
    if conn.dialect.name != "sqlite":
        return [dict(r) for r in conn.execute(stmt, dict(values or {})).mappings()]
    compiled = _compiled(stmt, conn.dialect)
    cursor = _execute(conn, compiled, values or {})
    try:
        return [compiled.row(raw) for raw in cursor.fetchall()]
    finally:
        cursor.close()


def run(conn: sa.Connection, stmt: Statement, values: Mapping[str, Any] | None = None,
        ) -> int:
    """Run an INSERT, UPDATE or DELETE; the number of rows it matched."""
    if conn.dialect.name != "sqlite":
        return int(conn.execute(stmt, dict(values or {})).rowcount)
    cursor = _execute(conn, _compiled(stmt, conn.dialect), values or {})
    cursor.close()
    return int(cursor.rowcount)


@functools.cache
def select_by(table: sa.Table, *columns: str) -> sa.Select[Any]:
    """``SELECT * FROM table WHERE column = :column AND ...``, built once."""
    return sa.select(table).where(*(table.c[c] == sa.bindparam(c) for c in columns))


@functools.cache
def _insert(table: sa.Table) -> tuple[sa.Insert, frozenset[str]]:
    return table.insert(), frozenset(table.c.keys())


def insert(conn: sa.Connection, table: sa.Table, values: Mapping[str, Any]) -> None:
    """Insert one row of ``table``."""
    stmt, columns = _insert(table)
    if columns <= values.keys():
        run(conn, stmt, values)
    else:  # Core fills in the defaults of the columns left out
        conn.execute(stmt, dict(values))


@functools.cache
def _insert_if(table: sa.Table, columns: tuple[str, ...], check: str) -> sa.Insert:
    """``INSERT INTO table (columns) SELECT :columns FROM <the row checked> WHERE ...``:
    the user's row (``check`` "user", or "password" to compare its hash too) or the
    login session's ("session"), held FOR SHARE on PostgreSQL."""
    binds = {c: sa.bindparam(c, type_=table.c[c].type) for c in columns}
    where: list[sa.ColumnElement[bool]]
    if check == "session":
        source = login_sessions
        where = [login_sessions.c.id == binds["session_id"],
                 login_sessions.c.revoked_at.is_(None),
                 login_sessions.c.expires_at > binds["created_at"]]
    else:
        source = users
        where = [users.c.id == binds["user_id"], users.c.deleted_at.is_(None)]
        if check == "password":
            # "": the user had none (a sign-in by link); one set since is a change
            where.append(sa.func.coalesce(users.c.password_hash, "")
                         == sa.bindparam("checked_hash", type_=sa.String))
    row = sa.select(*binds.values()).select_from(source).where(*where)
    return table.insert().from_select(columns, row.with_for_update(read=True))


def insert_for_user(conn: sa.Connection, table: sa.Table, values: Mapping[str, Any],
                    password_hash: str | None = None) -> bool:
    """Insert one row of ``table`` (the columns ``values`` names) if the user its
    ``user_id`` names exists and is not deleted, and, given ``password_hash`` (the hash a
    sign-in checked the password against), still has that password; whether it did.

    On PostgreSQL the user's row is held FOR SHARE until the transaction ends: a deletion,
    an erasure or a new password under way (they hold the row for update) is waited for,
    and the row as they left it decides; one that comes after waits for this transaction
    and then sees what it inserted. On SQLite, as the first statement of a write, it runs
    under the write lock."""
    stmt = _insert_if(table, tuple(values), "user" if password_hash is None else "password")
    return run(conn, stmt, {**values, "checked_hash": password_hash}) == 1


def insert_in_session(conn: sa.Connection, table: sa.Table, values: Mapping[str, Any],
                      ) -> bool:
    """``insert_for_user``, for a row made in the login session its ``session_id`` names:
    only while that session is not ended (a sign-out, a new password, a deletion) and
    has not expired by the row's ``created_at``."""
    return run(conn, _insert_if(table, tuple(values), "session"), values) == 1


def _execute(conn: sa.Connection, compiled: Compiled, values: Mapping[str, Any]) -> Any:
    sql, params = compiled.sql, compiled.bind(values)
    driver = conn.connection.dbapi_connection
    assert driver is not None  # a checked-out connection has one
    cursor = driver.cursor()
    dispatch = conn.dispatch
    if dispatch.before_cursor_execute:  # the benches count statements
        dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)
    dbapi = conn.dialect.loaded_dbapi
    try:
        cursor.execute(sql, params)
    except dbapi.Error as exc:
        cursor.close()
        raise sa.exc.DBAPIError.instance(sql, params, exc, dbapi.Error,
                                         hide_parameters=conn.engine.hide_parameters,
                                         dialect=conn.dialect) from exc
    if dispatch.after_cursor_execute:
        dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)
    return cursor
