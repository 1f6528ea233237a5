"""``prepared`` gives what ``Connection.execute`` gives, on SQLite (where it runs the
statement on the driver) and on PostgreSQL (where it is ``Connection.execute``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from test_contract import NOW, grant, sign_in, user

from bastion.server.storage import SQLStorage, prepared
from bastion.server.storage.sql_base import values
from bastion.server.storage.tables import events, grants, one_time_tokens, users

LABELLED = sa.select(grants.c.id.label("g_id"), users.c.id.label("u_id"),
                     users.c.is_administrator, grants.c.auth_time).select_from(
    grants.join(users, users.c.id == grants.c.user_id)).where(
    grants.c.id == sa.bindparam("id"))
EVERY_TYPE = prepared.select_by(one_time_tokens, "digest")
ONE_EVENT = prepared.select_by(events, "id")


def core(conn: sa.Connection, stmt: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(stmt, params).mappings()]


async def test_rows_match_core_for_every_column_type(storage: SQLStorage) -> None:
    from bastion.server.models import OneTimeToken

    await storage.create_user(user(is_administrator=True))
    await storage.create_grant(grant(revoked_at=NOW), None,
                               replace(sign_in(1), target=None, detail={"n": [1, None]}))
    await storage.create_one_time_token(OneTimeToken(
        digest=b"\x00\xff" * 16, purpose="sign_in", email="a@example.com", user_id=None,
        client_id=None, payload={"k": "v"}, created_at=NOW, expires_at=NOW))

    for stmt, params in ((LABELLED, {"id": "g1"}), (EVERY_TYPE, {"digest": b"\x00\xff" * 16}),
                         (ONE_EVENT, {"id": "e1"}), (LABELLED, {"id": "missing"})):
        def both(conn: sa.Connection, stmt: Any = stmt, params: Any = params) -> tuple[Any, Any]:
            return prepared.rows(conn, stmt, params), core(conn, stmt, params)
        fast, slow = await storage._read(both)
        assert fast == slow
    row = (await storage._read(lambda conn: prepared.rows(conn, LABELLED, {"id": "g1"})))[0]
    assert row == {"g_id": "g1", "u_id": user().id, "is_administrator": True, "auth_time": NOW}
    assert row["auth_time"].tzinfo is not None


async def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(storage: SQLStorage) -> None:
    await storage.create_user(user())
    with pytest.raises(IntegrityError):
        await storage._write(lambda conn: prepared.insert(conn, users, values(user())))


async def test_columns_left_out_get_their_defaults(storage: SQLStorage) -> None:
    row = values(user())
    del row["is_administrator"]  # default=False, applied by SQLAlchemy
    await storage._write(lambda conn: prepared.insert(conn, users, row))
    assert await storage.get_user(user().id) == user()


async def test_statements_are_seen_by_cursor_events(storage: SQLStorage) -> None:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(storage.sync_engine, "before_cursor_execute", count)
    try:
        await storage._write(lambda conn: prepared.insert(conn, users, values(user())))
        await storage.get_user(user().id)
    finally:
        event.remove(storage.sync_engine, "before_cursor_execute", count)
    assert seen == ["INSERT", "SELECT"]


def test_expanding_parameters_are_refused() -> None:
    stmt = sa.select(users).where(users.c.id.in_(sa.bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="expanding"):
        prepared.Compiled(stmt, sa.create_engine("sqlite://").dialect)
