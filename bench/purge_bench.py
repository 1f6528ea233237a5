"""Housekeeping: how fast a purge deletes, and what it costs the requests meanwhile.

For each backend (SQLite: a temporary file; PostgreSQL: a throwaway cluster from
``tests/support.py:postgres_cluster``) the bench migrates a fresh database and seeds
``--families`` expired token families (a grant 40 days old and its refresh token,
expired two days ago, as ``bastion.server.services.housekeeping`` finds them after an
idle month) beside as many live ones (a grant 40 days old whose refresh token still
works: a purge must look at each and keep it). Then it measures, in this process:

- **idle**: a loop of ``get_refresh_token`` on live digests (the lookup every
  refresh starts with), for ``--seconds``;
- **purging**: the same loop while ``housekeeping.purge`` runs, from its start to its
  end: the purge's wall time and rows per second, and the lookups' latency (median,
  p99, max). On SQLite a lookup that arrives while a batch runs on the storage's
  thread waits for it, so the max shows one batch;
- a second purge, which finds nothing due: what an hourly purge costs when the
  tables hold only live rows (it still pages through the old live grants).

Run from the repository root:

    .venv/bin/python bench/purge_bench.py                      # both backends, 100k + 100k
    .venv/bin/python bench/purge_bench.py --backends sqlite --families 20000

Prints a Markdown table and writes the figures as JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT / "tests"))

import sqlalchemy as sa  # noqa: E402

from bastion.server.services import housekeeping  # noqa: E402
from bastion.server.settings import Settings  # noqa: E402
from bastion.server.storage import SQLStorage, migrate, open_storage  # noqa: E402
from bastion.server.storage.tables import grants, refresh_tokens, users  # noqa: E402
from support import create_database, postgres_cluster  # noqa: E402

USER = "00000000-0000-0000-0000-000000000001"
CHUNK = 5000


def digest(kind: str, n: int) -> bytes:
    return f"{kind}{n:028d}".encode()  # 32 bytes


async def seed(store: SQLStorage, families: int) -> float:
    """``families`` expired and as many live families; the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    made = now - timedelta(days=40)
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(users), [{
            "id": USER, "username": "bench", "email": "bench@example.com",
            "password_hash": None, "is_administrator": False, "created_at": made,
            "updated_at": made}])
    for first in range(0, families, CHUNK):
        span = range(first, min(first + CHUNK, families))
        family_rows: list[dict[str, Any]] = []
        token_rows: list[dict[str, Any]] = []
        for kind, expires in (("dead", now - timedelta(days=2)),
                              ("live", now + timedelta(days=20))):
            for n in span:
                grant_id = f"{kind}-{n}"
                family_rows.append({"id": grant_id, "client_id": "app", "user_id": USER,
                                    "session_id": None, "scope": "openid", "auth_time": made,
                                    "created_at": made, "revoked_at": None,
                                    "organization_id": None})
                token_rows.append({"digest": digest(kind, n), "grant_id": grant_id,
                                   "client_id": "app", "user_id": USER, "scope": "openid",
                                   "created_at": expires - timedelta(days=30),
                                   "expires_at": expires, "used_at": None, "revoked_at": None})
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(grants), family_rows)
            await conn.execute(sa.insert(refresh_tokens), token_rows)
    return time.perf_counter() - started


async def lookups(store: SQLStorage, families: int, stop: asyncio.Event) -> list[float]:
    """Latencies (ms) of live-token lookups until ``stop``; every one must find its row."""
    taken: list[float] = []
    n = 0
    while not stop.is_set():
        started = time.perf_counter()
        found = await store.get_refresh_token(digest("live", n % families))
        taken.append((time.perf_counter() - started) * 1000)
        assert found is not None
        n += 1
        await asyncio.sleep(0)  # as a server would, between requests
    return taken


def summary(taken: list[float]) -> dict[str, float]:
    ordered = sorted(taken)
    return {"n": len(ordered), "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "max_ms": ordered[-1]}


async def measure(url: str, families: int, seconds: float) -> dict[str, Any]:
    store = open_storage(url, pool_size=5)
    try:
        await migrate.upgrade(store.engine)
        seed_seconds = await seed(store, families)
        settings = Settings(_env_file=None)

        stop = asyncio.Event()
        idle_task = asyncio.create_task(lookups(store, families, stop))
        await asyncio.sleep(seconds)
        stop.set()
        idle = await idle_task

        stop = asyncio.Event()
        busy_task = asyncio.create_task(lookups(store, families, stop))
        started = time.perf_counter()
        gone = await housekeeping.purge(store, settings)
        purge_seconds = time.perf_counter() - started
        stop.set()
        busy = await busy_task

        started = time.perf_counter()
        again = await housekeeping.purge(store, settings)
        empty_seconds = time.perf_counter() - started
        assert gone == {"grants": families, "refresh_tokens": families}, gone
        assert again == {}, again
        deleted = sum(gone.values())
        return {"families": families, "seed_s": seed_seconds, "deleted": deleted,
                "purge_s": purge_seconds, "rows_per_s": deleted / purge_seconds,
                "nothing_due_s": empty_seconds, "idle": summary(idle),
                "purging": summary(busy)}
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--families", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="of idle lookups")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                url = f"sqlite+aiosqlite:///{folder}/purge.db"
            else:
                admin = stack.enter_context(postgres_cluster())
                url = asyncio.run(create_database(admin, "purge_bench"))
            results[backend] = asyncio.run(measure(url, args.families, args.seconds))
            print(f"{backend}: {json.dumps(results[backend])}", flush=True)

    print(f"\nPython {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.families} expired and {args.families} live families; batches of "
          f"{housekeeping.BATCH}\n")
    print("| backend | purge | rows/s | nothing due | lookup idle p50 / p99 / max | "
          "lookup while purging p50 / p99 / max |")
    print("|---|---:|---:|---:|---|---|")
    for backend, r in results.items():
        idle, busy = r["idle"], r["purging"]
        print(f"| {backend} | {r['purge_s']:.2f} s | {r['rows_per_s']:,.0f} | "
              f"{r['nothing_due_s']:.2f} s | {idle['p50_ms']:.3f} / {idle['p99_ms']:.3f} / "
              f"{idle['max_ms']:.1f} ms | {busy['p50_ms']:.3f} / {busy['p99_ms']:.3f} / "
              f"{busy['max_ms']:.1f} ms |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"purge_bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"\nfigures written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
