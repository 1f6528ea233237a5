"""The database URL, checked before a driver sees it: a malformed one failed deep in
SQLAlchemy or asyncpg, with a traceback. Messages never repeat the URL (it may hold a
password)."""

from __future__ import annotations

import inspect
from urllib.parse import parse_qs

import sqlalchemy as sa

_ADAPTER_OWN = {"prepared_statement_cache_size"}  # SQLAlchemy's asyncpg adapter takes it


class BadDatabaseURL(ValueError):
    """The database URL (--database-url, BASTION_DATABASE_URL) cannot be used."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the database URL (--database-url, BASTION_DATABASE_URL) {why}")


def check(url: str) -> sa.URL:
    """``url`` parsed, or ``BadDatabaseURL``."""
    try:
        parsed = sa.make_url(url)
    except ValueError:  # what SQLAlchemy raises for a port that is no number
        raise BadDatabaseURL("has a host or port that is not valid") from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise BadDatabaseURL("has a port that is not between 1 and 65535")
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in _DRIVERS:
        raise BadDatabaseURL(f"names the database {backend}: Bastion runs on PostgreSQL "
                             "(postgresql+asyncpg://) or SQLite (sqlite+aiosqlite:///)")
    name, wanted = _DRIVERS[backend]
    if backend == "postgres" and driver == wanted:  # SQLAlchemy knows no "postgres"
        raise BadDatabaseURL(f"begins with postgres+{wanted}://, a name SQLAlchemy does not "
                             f"know: begin it with postgresql+{wanted}://")
    if driver != wanted:
        # Else "module psycopg is not installed", which sent operators installing it.
        scheme = "postgresql" if backend == "postgres" else backend
        named = f"the driver {driver}" if driver else "no driver"
        raise BadDatabaseURL(f"names {named}, but Bastion reaches {name} through {wanted} "
                             f"only: begin it with {scheme}+{wanted}://")
    if backend == "sqlite" and _in_memory(parsed):
        # The messages leave out the example a URL of memory would be masked in.
        raise BadDatabaseURL("names an in-memory SQLite database, which is gone when the "
                             "process ends and which no other process sees: name a file")
    if backend == "postgresql":
        _check_asyncpg(parsed)
    return parsed


#: The async driver of each database Bastion knows (``postgres`` is no SQLAlchemy name).
_DRIVERS = {"postgresql": ("PostgreSQL", "asyncpg"), "postgres": ("PostgreSQL", "asyncpg"),
            "sqlite": ("SQLite", "aiosqlite")}


def _in_memory(url: sa.URL) -> bool:
    """As SQLite tells a file from memory or a private temporary database
    (``sqlite://``, ``:memory:``, a URI with ``mode=memory``, ``vfs=memdb``, naming
    ``:memory:`` or nothing)."""
    if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
        return True
    if url.query.get("vfs") == "memdb":
        return True
    uri = url.query.get("uri")
    if not (isinstance(uri, str) and sa.util.asbool(uri)):  # as the dialect reads it
        return False
    # The name may carry a query of its own (``file:x%3Fmode%3Dmemory``, decoded).
    name, _, inner = (url.database or "").removeprefix("file:").partition("?")
    given = parse_qs(inner.partition("#")[0])
    if "memory" in given.get("mode", ()) or "memdb" in given.get("vfs", ()):
        return True
    return name in ("", ":memory:") or name.startswith(":memory:")  # empty: a temporary one


def _check_asyncpg(url: sa.URL) -> None:
    """Each query parameter becomes a keyword argument of ``asyncpg.connect``."""
    import asyncpg

    if "sslmode" in url.query:  # libpq's name, in many a copied URL
        raise BadDatabaseURL("names sslmode=, which asyncpg does not take: use ssl= with the "
                             "same value, e.g. ?ssl=require or ?ssl=verify-full")
    known = set(inspect.signature(asyncpg.connect).parameters) | _ADAPTER_OWN
    for name in url.query:
        if name not in known:
            raise BadDatabaseURL(f"has a parameter asyncpg does not take: {name}")
