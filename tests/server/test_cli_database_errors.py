"""A database that cannot be used, or a database URL that cannot be: one line naming
what the driver said (never the URL or its password) and exit 1, no traceback."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import unicodedata
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from cli_helpers import one_line

from bastion.server.storage import migrate, open_storage
from bastion.server.storage.database_url import BadDatabaseURL
from bastion.server.storage.tables import users
from support import create_database


def test_a_file_that_is_no_database_is_named_by_the_driver(cli, tmp_path) -> None:
    """It said only "the database cannot be used: DatabaseError"."""
    (tmp_path / "bastion.db").write_bytes(b"not a database, " * 512)
    code, err = cli("migrate", "--data-dir", str(tmp_path))
    assert code == 1
    assert one_line(err) == ("error: the database cannot be used: DatabaseError: file is not "
                             "a database")


def test_asyncpgs_own_error_is_named_without_the_password(cli, pg_admin_url) -> None:
    """SQLAlchemy's asyncpg adapter wraps asyncpg's exceptions in one called Error."""
    password = secrets.token_urlsafe(16)
    url = pg_admin_url.replace("postgres@", f"postgres:{password}@").rsplit("/", 1)[0]
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    code, err = cli("migrate", "--database-url", f"{url}/{missing}")
    assert code == 1 and password not in err
    assert f'InvalidCatalogNameError: database "{missing}" does not exist' in one_line(err)
    asyncio.run(create_database(pg_admin_url, missing))
    assert cli("migrate", "--database-url", f"{url}/{missing}")[0] == 0


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql+asyncpg://u:{pw}@127.0.0.1:abc/db", "host or port that is not valid"),
    ("postgresql+asyncpg://u:{pw}@[::1/db", "host or port that is not valid"),
    ("postgresql+asyncpg://u:{pw}@127.0.0.1:99999/db", "between 1 and 65535"),
    ("postgresql+asyncpg://u:{pw}@127.0.0.1:1/db?sslmode=require", "use ssl= with the same"),
    ("postgresql+asyncpg://u:{pw}@127.0.0.1:1/db?connect_timeout=5", "take: connect_timeout"),
])
def test_a_malformed_database_url_is_one_line(cli, url, says) -> None:
    """A ValueError, an OverflowError and a TypeError from deep in SQLAlchemy or
    asyncpg came out as tracebacks."""
    password = secrets.token_urlsafe(16)
    code, err = cli("migrate", "--database-url", url.format(pw=password))
    assert code == 1 and says in one_line(err) and password not in err


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://u:{pw}@127.0.0.1:1/db", "names no driver"),
    ("postgresql+psycopg2://u:{pw}@127.0.0.1:1/db", "names the driver psycopg2"),
    ("postgresql+psycopg://u:{pw}@127.0.0.1:1/db", "names the driver psycopg"),
    ("postgres://u:{pw}@127.0.0.1:1/db", "names no driver"),
    ("postgres+asyncpg://u:{pw}@127.0.0.1:1/db", "a name SQLAlchemy does not know"),
])
def test_a_postgresql_url_without_asyncpg_names_the_scheme_to_use(cli, url, says) -> None:
    """``postgresql://`` said "module psycopg is not installed: install the server":
    installing psycopg would not have helped, asyncpg is the one Bastion uses."""
    password = secrets.token_urlsafe(16)
    code, err = cli("migrate", "--database-url", url.format(pw=password))
    line = one_line(err)
    assert code == 1 and says in line and password not in err
    assert line.endswith("begin it with postgresql+asyncpg://")


def test_a_sync_sqlite_url_names_the_scheme_to_use(cli, tmp_path) -> None:
    code, err = cli("migrate", "--database-url", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1 and one_line(err).endswith("begin it with sqlite+aiosqlite://")
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://",
                                 "sqlite+aiosqlite:///file:db?mode=memory&uri=true",
                                 "sqlite+aiosqlite:///file::memory:?uri=true",
                                 "sqlite+aiosqlite:///file::memory:?uri=1",
                                 "sqlite+aiosqlite:///file:?uri=true",  # a temporary one
                                 "sqlite+aiosqlite:///file:/x.db?uri=true&vfs=memdb",
                                 # a query in the name, as SQLAlchemy decodes it
                                 "sqlite+aiosqlite:///file:m%3Fmode%3Dmemory?uri=true",
                                 "sqlite+aiosqlite:///file:m%3Fa%3D1%26vfs%3Dmemdb?uri=1"])
@pytest.mark.parametrize("command", [["migrate"], ["keys", "rotate"], ["serve"]])
def test_an_in_memory_database_is_refused_in_one_line(cli, monkeypatch, url, command) -> None:
    """It failed with a TypeError (pool arguments StaticPool does not take); had it
    worked, a command's work would have gone with the process, and every server worker
    would have had a database of its own."""
    import bastion.cli

    monkeypatch.setattr(bastion.cli, "_uvicorn", lambda *args: pytest.fail("served"))
    code, err = cli(*command, "--database-url", url)
    assert code == 1 and "names an in-memory SQLite database" in one_line(err)
    with pytest.raises(BadDatabaseURL, match="in-memory"):
        open_storage(url)


@pytest.mark.parametrize(("change", "revision"), [
    # a newer release migrated it: Alembic's CommandError ("Can't locate revision") came
    # out as a traceback
    ("UPDATE alembic_version SET version_num = '0099'", "0099"),
    # another application's row beside ours: the check at head must not answer with
    # Alembic's own "more than one head present"
    ("INSERT INTO alembic_version VALUES ('otherapp1')", "otherapp1"),
], ids=["newer-release", "another-application"])
def test_a_revision_this_release_does_not_know_is_named_in_one_line(
        cli, tmp_path, change: str, revision: str) -> None:
    assert cli("migrate", "--data-dir", str(tmp_path))[0] == 0
    with sqlite3.connect(tmp_path / "bastion.db") as db:
        db.execute(change)
    code, err = cli("migrate", "--data-dir", str(tmp_path))
    assert code == 1
    assert f"at revision {revision}, which this release does not know" in one_line(err)
    assert "another application's migrations use this database" in one_line(err)


def test_addresses_that_migration_0005_cannot_fold_apart_are_one_line(cli, tmp_path) -> None:
    """Its RuntimeError naming both users came out at the end of a traceback."""
    async def at_0004_with_twins() -> None:
        store = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}")
        try:
            await migrate.upgrade(store.engine, "0004")
            now = datetime.now(UTC)
            async with store.engine.begin() as conn:  # one address in two Unicode forms
                await conn.execute(sa.insert(users), [
                    {"id": f"u{n}", "username": f"user{n}", "email": email,
                     "password_hash": None, "is_administrator": False, "created_at": now,
                     "updated_at": now}
                    for n, email in ((1, "ärne@example.de"),
                                     (2, unicodedata.normalize("NFD", "ärne@example.de")))])
        finally:
            await store.close()

    asyncio.run(at_0004_with_twins())
    code, err = cli("migrate", "--data-dir", str(tmp_path))
    assert code == 1 and "users u1 and u2 have email addresses" in one_line(err)


@pytest.mark.parametrize("command", [["migrate"], ["keys", "rotate"], ["serve"]])
def test_another_applications_postgresql_database_is_left_alone(
        cli, monkeypatch, pg_admin_url, command) -> None:
    """A database URL naming the wrong database (another application's, or the shared
    ``postgres``) got Bastion's tables among that database's own."""
    import asyncpg

    import bastion.cli

    monkeypatch.setattr(bastion.cli, "_uvicorn", lambda *args: pytest.fail("served"))
    url = asyncio.run(create_database(pg_admin_url, f"shop_{uuid.uuid4().hex[:8]}"))

    async def tables(create: bool = False) -> list[str]:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            if create:
                await conn.execute("CREATE TABLE orders (id int); CREATE TABLE users (id int)")
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            return sorted(row[0] for row in rows)
        finally:
            await conn.close()

    assert asyncio.run(tables(create=True)) == ["orders", "users"]
    code, err = cli(*command, "--database-url", url)
    assert code == 1
    assert one_line(err) == (
        "error: the database holds tables of something else (orders, users) and no Bastion "
        "schema: check that the database URL (--database-url, BASTION_DATABASE_URL) names "
        "Bastion's own database; Bastion needs an empty one to start from")
    assert asyncio.run(tables()) == ["orders", "users"]


def test_another_applications_sqlite_file_is_left_alone(cli, tmp_path) -> None:
    with sqlite3.connect(tmp_path / "bastion.db") as db:
        db.executescript("CREATE TABLE a (id); CREATE TABLE b (id); CREATE TABLE c (id);"
                         "CREATE TABLE d (id); CREATE TABLE e (id)")
    code, err = cli("migrate", "--data-dir", str(tmp_path))
    assert code == 1 and "of something else (a, b, c and 2 more)" in one_line(err)
    with sqlite3.connect(tmp_path / "bastion.db") as db:
        assert len(db.execute("SELECT name FROM sqlite_master").fetchall()) == 5
