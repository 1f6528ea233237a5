"""Apply Alembic migrations from code (``bastion migrate``, ``bastion serve``).

Concurrent runs are safe: one instance applies, the others wait and then find
nothing to do. PostgreSQL serialises them with an advisory lock; SQLite with an
exclusive lock on a file beside the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

_LOCK_ID = 0x6261737469  # "basti"


class MigrationError(RuntimeError):
    """The schema cannot be brought to this release's; the message says what to do."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "bastion.server.storage:migrations")
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (or to ``revision``)."""

    def run(conn: Any) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        else:
            # Python's sqlite3 begins a transaction only at the first INSERT, UPDATE or
            # DELETE: the schema changes before it would each commit at once, and an
            # upgrade stopped half-way (a migration's refusal, a kill) would leave tables
            # that the revision it records does not have. SQLite changes schemas in a
            # transaction like anything else: the whole upgrade is one.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg = _config()
        cfg.attributes["connection"] = conn
        _refuse_unknown(conn, cfg)
        _refuse_foreign(conn)
        command.upgrade(cfg, revision)

    # Most runs find the schema current: a plain read says so without the lock, so
    # a CLI command does not wait behind (or block) a server's writes for nothing.
    if revision == "head" and await current_heads(engine) == (head_revision(),):
        return
    async with _sqlite_lock(engine), engine.begin() as conn:
        await conn.run_sync(run)


def _refuse_unknown(conn: Any, cfg: Config) -> None:
    """Alembic says only "Can't locate revision" when a newer release migrated the
    database (or another application keeps its migrations in the same table)."""
    known = {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}
    for revision in MigrationContext.configure(conn).get_current_heads():
        if revision not in known:
            raise MigrationError(
                f"the database is at revision {revision}, which this release does not know: "
                "a newer release migrated it (run that release, or restore the backup taken "
                "before it), or another application's migrations use this database")


def _refuse_foreign(conn: Any) -> None:
    """A database URL naming the wrong database (another application's, a shared
    ``postgres``) would otherwise get Bastion's tables among that database's own."""
    if MigrationContext.configure(conn).get_current_heads():
        return
    tables = sorted(set(sa.inspect(conn).get_table_names()) - {"alembic_version"})
    if tables:
        shown = ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
        raise MigrationError(
            f"the database holds tables of something else ({shown}) and no Bastion "
            "schema: check that the database URL (--database-url, BASTION_DATABASE_URL) "
            "names Bastion's own database; Bastion needs an empty one to start from")


@contextlib.asynccontextmanager
async def _sqlite_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    # Held across the awaits below; opening a local lock file does not block for long.
    lock = open(f"{path}.migrate-lock", "a+")  # noqa: SIM115, ASYNC230
    try:
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        lock.close()


async def current_heads(engine: AsyncEngine) -> tuple[str, ...]:
    """The revisions recorded: one, unless another application's migrations share the
    table (``_refuse_unknown`` says so)."""
    async with engine.connect() as conn:
        return tuple(await conn.run_sync(
            lambda c: MigrationContext.configure(c).get_current_heads()))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision()
        )
