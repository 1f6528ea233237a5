"""Seed a Bastion database with many users, fast, for the user search benchmark.

Applies the migrations (``bastion.server.storage.migrate.upgrade``) and then
bulk-inserts users with SQLAlchemy Core, in the migrated schema, until the table
holds ``--count`` users (it appends; run it again with a larger count to grow the
same database). Users are deterministic: user number ``i`` always gets the same id,
username, email and ``created_at`` (one second after user ``i - 1``), so every run
seeds the same data. ``password_hash`` is NULL (nobody can sign in as them).

Usernames are ``first.last<i>``-like (four shapes, ~120 first names, ~120 last
names), emails ``<username>@<domain>`` with about 40% on ``example.com`` and the
rest spread over a few other domains.

Secondary search structures are rebuilt, not maintained row by row:

- SQLite: the ``users_fts`` insert trigger is dropped during the load, the FTS5
  table is rebuilt with ``INSERT INTO users_fts(users_fts) VALUES('rebuild')`` and
  the trigger recreated exactly as the migration wrote it (its SQL is read back
  from ``sqlite_master``), all in one transaction.
- PostgreSQL: the pg_trgm GIN indexes are dropped during the load and recreated
  from their own ``pg_indexes.indexdef``; then ``VACUUM ANALYZE users`` (what
  autovacuum would soon do on a real server). SQLite gets no ``ANALYZE`` unless
  ``--sqlite-analyze``: Bastion never runs it, so a real database has no statistics.

``--keep-triggers`` / ``--keep-indexes`` insert through the live trigger / indexes
instead (slower; for comparison).

Usage (from the repository root):

    .venv/bin/python bench/seed_users.py --count 100000 \
        --database-url sqlite+aiosqlite:////tmp/users.db
    .venv/bin/python bench/seed_users.py --count 1000000 \
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bastion.server.storage.migrate import upgrade
from bastion.server.storage.sql import create_engine
from bastion.server.storage.tables import users


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _words(
    "james mary john patricia robert jennifer michael linda william elizabeth david barbara "
    "richard susan joseph jessica thomas sarah charles karen christopher lisa daniel nancy "
    "matthew betty anthony margaret mark sandra donald ashley steven kimberly paul emily "
    "andrew donna joshua michelle kenneth carol kevin amanda brian dorothy george melissa "
    "timothy deborah ronald stephanie edward rebecca jason sharon jeffrey laura ryan cynthia "
    "jacob kathleen gary amy nicholas angela eric shirley jonathan anna stephen brenda larry "
    "pamela justin emma scott nicole brandon helen benjamin samantha samuel katherine gregory "
    "christine alexander debra frank rachel patrick carolyn raymond janet jack catherine "
    "dennis maria jerry heather tyler diane aaron ruth jose julie adam olivia nathan joyce "
    "henry virginia douglas victoria zachary kelly peter lauren kyle christina noah joan "
    "ethan evelyn jeremy judith walter megan christian andrea keith cheryl roger hannah terry "
    "jacqueline austin martha sean gloria gerald teresa carl ann harold sara dylan madison "
    "arthur frances lawrence kathryn jordan janice jesse jean bryan abigail"
)
LAST = _words(
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez "
    "lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson "
    "white harris sanchez clark ramirez lewis robinson walker young allen king wright scott "
    "torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter "
    "roberts gomez phillips evans turner diaz parker cruz edwards collins reyes stewart "
    "morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed "
    "kelly howard ramos kim cox ward richardson watson brooks chavez wood james bennett gray "
    "mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster jimenez "
    "powell jenkins perry russell sullivan bell coleman butler henderson barnes gonzales "
    "fisher vasquez simmons romero jordan patterson alexander hamilton graham reynolds "
    "griffin wallace moreno west cole hayes bryant herrera gibson ellis tran medina aguilar "
    "stevens murray ford castro marshall owens harrison fernandez mcdonald woods washington "
    "kennedy wells vargas henry chen freeman webb tucker guzman burns crawford olson simpson "
    "porter hunter gordon mendez silva shaw snyder mason dixon munoz hunt hicks holmes palmer "
    "wagner black robertson boyd rose stone salazar fox warren mills meyer rice schmidt garza "
    "daniels ferguson nichols stephens soto weaver ryan gardner payne grant dunn kelley "
    "spencer hawkins arnold pierce vazquez hansen peters santos hart bradley knight elliott "
    "cunningham duncan armstrong hudson carroll lane riley andrews alvarado ray delgado berry "
    "perkins hoffman johnston matthews pena richards contreras willis carpenter lawrence "
    "sandoval"
)
# (domain, share in percent); example.com is the "matches many" domain of the bench.
DOMAINS = (("example.com", 40), ("mail.test", 20), ("corp.example.org", 15),
           ("inbox.test", 10), ("university.edu.test", 8), ("fastmail.test", 7))
_DOMAIN_BY_PERCENT = [d for d, share in DOMAINS for _ in range(share)]
assert len(_DOMAIN_BY_PERCENT) == 100

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
BATCH = 5000


def _mix(i: int) -> int:
    """A cheap, well-spread 64-bit hash of ``i`` (splitmix64 finalizer)."""
    z = (i * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


@dataclass(frozen=True)
class SeedUser:
    index: int
    id: str
    first: str
    last: str
    username: str
    email: str
    created_at: datetime


def make_user(i: int) -> SeedUser:
    """User number ``i`` (0-based); the trailing digits ``i`` make names unique."""
    h = _mix(i)
    first = FIRST[h % len(FIRST)]
    last = LAST[(h >> 12) % len(LAST)]
    shape = (h >> 24) % 4
    if shape == 0:
        username = f"{first}.{last}{i}"
    elif shape == 1:
        username = f"{first[0]}{last}{i}"
    elif shape == 2:
        username = f"{first}_{last[0]}{i}"
    else:
        username = f"{last}.{first}{i}"
    domain = _DOMAIN_BY_PERCENT[(h >> 32) % 100]
    h2 = _mix(i ^ 0x5DEECE66D)
    uid = str(uuid.UUID(int=(h << 64) | h2, version=4))
    return SeedUser(i, uid, first, last, username, f"{username}@{domain}",
                    EPOCH + timedelta(seconds=i))


def rows(start: int, stop: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for i in range(start, stop):
        u = make_user(i)
        batch.append({"id": u.id, "username": u.username, "email": u.email,
                      "password_hash": None, "is_administrator": False,
                      "created_at": u.created_at, "updated_at": u.created_at,
                      "deleted_at": None})
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _seeded(conn: AsyncConnection) -> int:
    """How many users of the seed sequence are present (the highest index + 1)."""
    last = (await conn.execute(sa.select(sa.func.max(users.c.created_at)).where(
        users.c.password_hash.is_(None), users.c.created_at >= EPOCH))).scalar_one()
    if last is None:
        return 0
    return int((last - EPOCH).total_seconds()) + 1


async def _insert(conn: AsyncConnection, start: int, stop: int) -> None:
    stmt = users.insert()
    for batch in rows(start, stop):
        await conn.execute(stmt, batch)


async def _load_sqlite(conn: AsyncConnection, start: int, stop: int, keep: bool) -> None:
    if keep:
        await _insert(conn, start, stop)
        return
    trigger = (await conn.execute(sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'users_fts_insert'"
    ))).scalar_one_or_none()
    if trigger is None:
        raise SystemExit("users_fts_insert trigger not found: schema changed? use --keep-triggers")
    await conn.execute(sa.text("DROP TRIGGER users_fts_insert"))
    await _insert(conn, start, stop)
    await conn.execute(sa.text("INSERT INTO users_fts(users_fts) VALUES('rebuild')"))
    await conn.execute(sa.text(trigger))


async def _load_postgres(conn: AsyncConnection, start: int, stop: int, keep: bool) -> None:
    defs: list[tuple[str, str]] = []
    if not keep:
        defs = [(name, sql) for name, sql in await conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'users' "
            "AND indexdef ILIKE '%gin_trgm_ops%'"))]
        for name, _ in defs:
            await conn.execute(sa.text(f'DROP INDEX "{name}"'))
    await _insert(conn, start, stop)
    if defs:
        await conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
        for _, sql in defs:
            await conn.execute(sa.text(sql))


async def seed(engine: AsyncEngine, count: int, *, keep: bool = False,
               sqlite_analyze: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Migrate, then add seed users until ``count`` are present. Returns timings."""
    t0 = time.perf_counter()
    await upgrade(engine)
    async with engine.connect() as conn:
        start = await _seeded(conn)
    added = max(0, count - start)
    t1 = time.perf_counter()
    if added:
        async with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                await _load_sqlite(conn, start, count, keep)
            elif engine.dialect.name == "postgresql":
                await _load_postgres(conn, start, count, keep)
            else:
                await _insert(conn, start, count)
    t2 = time.perf_counter()
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE users"))
    elif engine.dialect.name == "sqlite" and sqlite_analyze:
        async with engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE"))
    t3 = time.perf_counter()
    result = {"from": start, "to": max(start, count), "added": added,
              "migrate_s": t1 - t0, "load_s": t2 - t1, "analyze_s": t3 - t2,
              "total_s": t3 - t0}
    if not quiet:
        print(f"seeded users {start}..{max(start, count)} ({added} added): load "
              f"{result['load_s']:.1f}s, analyze {result['analyze_s']:.1f}s, "
              f"total {result['total_s']:.1f}s", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True,
                        help="SQLAlchemy async URL (sqlite+aiosqlite:///... or "
                             "postgresql+asyncpg://...)")
    parser.add_argument("--count", type=int, required=True, help="users wanted in total")
    parser.add_argument("--keep-triggers", "--keep-indexes", dest="keep", action="store_true",
                        help="insert through the live FTS trigger / trigram indexes")
    parser.add_argument("--sqlite-analyze", action="store_true",
                        help="run ANALYZE on SQLite too (the server never does; off by default)")
    args = parser.parse_args()

    async def run() -> None:
        engine = create_engine(args.database_url, pool_size=1)
        try:
            await seed(engine, args.count, keep=args.keep, sqlite_analyze=args.sqlite_analyze)
        finally:
            await engine.dispose()

    asyncio.run(run())


if __name__ == "__main__":
    main()
