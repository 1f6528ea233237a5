"""User search and count latency (p50, p99) at 10k, 100k and 1M users, SQLite and PostgreSQL.

For each backend the bench makes a fresh database (SQLite: a temporary data dir;
PostgreSQL: a throwaway cluster from ``tests/support.py:postgres_cluster``), then for
each size, smallest first, grows the same database to that many users with
``bench/seed_users.py`` (bulk inserts through SQLAlchemy Core into the migrated
schema) and measures every query case two ways, one request at a time:

- **http**: the real API of a running ``bastion serve`` (one worker, 127.0.0.1) with
  an admin token from the client-credentials grant of a client made by
  ``bastion clients create --grant-type client_credentials --scope bastion:admin``.
  ``GET /api/v1/users`` runs ``search_users`` *and* ``count_users``;
  ``GET /api/v1/users/count`` runs ``count_users``.
- **storage**: ``SQLStorage.search_users`` / ``count_users`` called in this process
  (the query alone, no HTTP, no auth, no JSON).

Query cases: ``few`` (a 7-char substring of a few usernames, trigram path),
``many`` (``example``: the domain of ~55% of users), ``2-char`` (``an``: too short for
trigrams, LIKE scan; common), ``2-char-none`` (``qx``: LIKE scan, no match),
``page`` (no query, offset 0), ``deep`` (no query, offset 10000), ``deep cursor``
(the same page found by keyset, ``after`` the user before it; over HTTP with the
count, and without it as the SDK's ``iterate`` asks), and counts with
no query, ``few``, ``many`` and ``2-char``. Each cell: a warmup, then up to
``--iterations`` timed calls or ``--cell-seconds`` of them, whichever ends first
(at least ``--min-iterations``); ``n`` in the table says how many.

Run from the repository root:

    .venv/bin/python bench/user_search.py                         # full: 10k, 100k, 1M
    .venv/bin/python bench/user_search.py --sizes 10000,100000    # quick

Prints a Markdown table (and the seed times) and writes everything, with the
query plans when ``--explain`` is given, as JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))

import httpx2  # noqa: E402
import seed_users  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy import event  # noqa: E402

from bastion.server.api import cursors  # noqa: E402
from bastion.server.storage.sql import SQLStorage, create_engine  # noqa: E402
from support import create_database, postgres_cluster, running_server  # noqa: E402

LIMIT = 20
DEEP_OFFSET = 10_000
MANY = "example"
SHORT = "an"
SHORT_NONE = "qx"


@dataclass
class Case:
    name: str
    kind: str  # "search" or "count"
    queries: list[str | None]  # rotated through, one per call
    offset: int = 0
    after: bool = False  # start after the user at ``offset`` (a cursor), not at it
    count: bool = True  # over HTTP, count the matches too (``count=false``: the SDK's walk)


@dataclass
class Cell:
    backend: str
    size: int
    case: str
    mode: str  # "http" or "storage"
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    matches: int  # count_users for the case's (first) query


@dataclass
class Run:
    started: str
    machine: dict[str, Any]
    args: dict[str, Any]
    seeds: list[dict[str, Any]] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)


def few_queries(size: int, k: int = 5) -> list[str]:
    """Substrings of ``k`` seeded usernames: the three characters before the digits and
    the first four digits, e.g. ``ela5432`` for ``shaw.pamela54321`` (a handful of
    users match: those whose number starts with those digits and whose name ends so)."""
    out = []
    for j in range(k):
        i = size // 2 + (j * 7919) % (size // 2)
        u = seed_users.make_user(i)
        digits = str(i)
        name = u.username[: -len(digits)]
        out.append(name[-3:] + digits[:4])
    return out


def cases(size: int) -> list[Case]:
    few = few_queries(size)
    return [
        Case("search few", "search", list(few)),
        Case("search many", "search", [MANY]),
        Case("search 2-char", "search", [SHORT]),
        Case("search 2-char-none", "search", [SHORT_NONE]),
        Case("page", "search", [None]),
        Case("page deep", "search", [None], offset=min(DEEP_OFFSET, max(0, size - LIMIT))),
        Case("page deep cursor", "search", [None],
             offset=min(DEEP_OFFSET, max(0, size - LIMIT)), after=True),
        Case("page deep cursor, no count", "search", [None],
             offset=min(DEEP_OFFSET, max(0, size - LIMIT)), after=True, count=False),
        Case("count all", "count", [None]),
        Case("count few", "count", list(few)),
        Case("count many", "count", [MANY]),
        Case("count 2-char", "count", [SHORT]),
    ]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def timed(call: Callable[[int], Awaitable[Any]], args: argparse.Namespace) -> list[float]:
    """Warm up, then time ``call(i)`` up to the iteration or time budget."""
    t = time.perf_counter()
    await call(0)
    first = time.perf_counter() - t
    if first * 3 < args.cell_seconds:
        await call(1)
    samples: list[float] = []
    deadline = time.perf_counter() + args.cell_seconds
    i = 0
    while i < args.iterations and (i < args.min_iterations or time.perf_counter() < deadline):
        t = time.perf_counter()
        await call(i)
        samples.append(time.perf_counter() - t)
        i += 1
    return samples


class Bench:
    def __init__(self, args: argparse.Namespace, run: Run) -> None:
        self.args = args
        self.run = run

    async def measure(self, backend: str, size: int, url: str, server: Any) -> None:
        storage = SQLStorage(create_engine(url, pool_size=2))
        captured: list[tuple[str, Any]] = []

        @event.listens_for(storage.sync_engine, "before_cursor_execute")
        def _capture(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any,
                     _many: bool) -> None:
            captured.append((statement, parameters))
            del captured[:-2]

        token = await self.token(server) if server else ""
        http = httpx2.AsyncClient(base_url=server.url if server else "http://127.0.0.1",
                                  headers={"Authorization": f"Bearer {token}"}, timeout=120)
        try:
            for case in cases(size):
                matches = await storage.count_users(case.queries[0])
                offset, key = case.offset, None
                if case.after and offset:  # the same page, found by keyset
                    (last,) = await storage.search_users(None, 1, offset - 1)
                    offset, key = 0, (last.created_at, last.id)
                if case.kind == "search":
                    async def direct(i: int, case: Case = case, offset: int = offset,
                                     key: Any = key) -> Any:
                        q = case.queries[i % len(case.queries)]
                        return await storage.search_users(q, LIMIT, offset, after=key)
                else:
                    async def direct(i: int, case: Case = case, offset: int = offset,
                                     key: Any = key) -> Any:
                        return await storage.count_users(case.queries[i % len(case.queries)])

                async def over_http(i: int, case: Case = case, offset: int = offset,
                                    key: Any = key) -> Any:
                    q = case.queries[i % len(case.queries)]
                    params: dict[str, Any] = {}
                    if q is not None:
                        params["q"] = q
                    if key is not None:
                        params["after"] = cursors.cursor(*key)
                    if not case.count:
                        params["count"] = "false"
                    if case.kind == "search":
                        params.update(limit=LIMIT, offset=offset)
                        path = "/api/v1/users"
                    else:
                        path = "/api/v1/users/count"
                    r = await http.get(path, params=params)
                    if r.status_code != 200:
                        raise SystemExit(f"{path} {params}: {r.status_code} {r.text[:300]}")
                    return r

                for mode, call in (("http", over_http), ("storage", direct)):
                    if mode not in self.args.modes or (mode == "http" and not server):
                        continue
                    samples = await timed(call, self.args)
                    cell = Cell(backend, size, case.name, mode, len(samples),
                                pct(samples, 0.5) * 1000, pct(samples, 0.99) * 1000,
                                max(samples) * 1000, matches)
                    self.run.cells.append(cell)
                    print(f"  {backend:10} {size:>8} {case.name:20} {mode:7} n={cell.n:<4} "
                          f"p50 {cell.p50_ms:9.2f} ms  p99 {cell.p99_ms:9.2f} ms  "
                          f"(matches {matches})", file=sys.stderr, flush=True)
                if self.args.explain:
                    await direct(0)
                    await self.explain(storage, backend, size, case, captured[-1])
        finally:
            await http.aclose()
            await storage.close()

    async def explain(self, storage: SQLStorage, backend: str, size: int, case: Case,
                      last: tuple[str, Any]) -> None:
        statement, parameters = last
        prefix = "EXPLAIN QUERY PLAN " if backend == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
        async with storage.engine.connect() as conn:
            rows = (await conn.exec_driver_sql(prefix + statement, parameters)).all()
        if backend == "sqlite":
            plan = "\n".join("{0}|{1}|{3}".format(*r) for r in rows)
        else:
            plan = "\n".join(r[0] for r in rows)
        self.run.plans.append({"backend": backend, "size": size, "case": case.name,
                               "sql": statement, "params": repr(parameters), "plan": plan})
        if size == max(self.args.sizes):
            print(f"--- {backend} {size} {case.name}\n{statement}\n{parameters!r}\n{plan}",
                  file=sys.stderr)

    async def token(self, server: Any) -> str:
        async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.post("/oauth/token",
                                data={"grant_type": "client_credentials",
                                      "scope": "bastion:admin"},
                                auth=(server.admin_client_id, server.admin_client_secret))
        if r.status_code != 200:
            raise SystemExit(f"token: {r.status_code} {r.text[:300]}")
        return str(r.json()["access_token"])

    async def seed(self, backend: str, url: str, size: int) -> None:
        engine = create_engine(url, pool_size=1)
        try:
            result = await seed_users.seed(engine, size)
        finally:
            await engine.dispose()
        self.run.seeds.append({"backend": backend, "size": size, **result})

    def sizes_on(self, backend: str, url: str, data_dir: Path) -> None:
        server: Any = None
        with contextlib.ExitStack() as stack:
            for size in self.args.sizes:
                asyncio.run(self.seed(backend, url, size))
                if server is None and "http" in self.args.modes:
                    server = stack.enter_context(
                        running_server(data_dir, url, access_token_ttl="86400"))
                    client = server.create_client("--name", "bench", "--grant-type",
                                                  "client_credentials", "--scope",
                                                  "bastion:admin")
                    server.admin_client_id = str(client["client_id"])
                    server.admin_client_secret = str(client["client_secret"])
                asyncio.run(self.measure(backend, size, url, server))

    def sqlite(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="bastion-usearch-"))
        try:
            url = f"sqlite+aiosqlite:///{base / 'bastion.db'}"
            self.sizes_on("sqlite", url, base)
        finally:
            if not self.args.keep:
                shutil.rmtree(base, ignore_errors=True)
            else:
                print(f"kept {base}", file=sys.stderr)

    def postgresql(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="bastion-usearch-pg-"))
        try:
            with postgres_cluster() as admin:
                url = asyncio.run(create_database(admin, "bench"))
                self.sizes_on("postgresql", url, base)
        finally:
            shutil.rmtree(base, ignore_errors=True)


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pg = ""
    with contextlib.suppress(Exception):
        from support import _pg_bin

        pg = subprocess.run([str(_pg_bin("postgres")), "--version"], capture_output=True,
                            text=True).stdout.strip()
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release(), "sqlite": sqlite3.sqlite_version,
            "sqlalchemy": sa.__version__, "postgresql": pg,
            "git": git + ("+dirty src" if dirty else "")}


def table(run: Run) -> str:
    by = {(c.backend, c.size, c.case, c.mode): c for c in run.cells}
    keys = list(dict.fromkeys((c.backend, c.size, c.case) for c in run.cells))
    lines = ["| backend | users | case | matches | HTTP p50 | HTTP p99 | storage p50 | "
             "storage p99 | n (http/storage) |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]

    def ms(v: float) -> str:
        return f"{v:.1f}" if v >= 10 else f"{v:.2f}"

    for backend, size, case in keys:
        h, s = by.get((backend, size, case, "http")), by.get((backend, size, case, "storage"))
        matches = (h or s).matches  # type: ignore[union-attr]
        lines.append(
            f"| {backend} | {size:,} | {case} | {matches:,} | "
            f"{ms(h.p50_ms) if h else '-'} | {ms(h.p99_ms) if h else '-'} | "
            f"{ms(s.p50_ms) if s else '-'} | {ms(s.p99_ms) if s else '-'} | "
            f"{h.n if h else '-'}/{s.n if s else '-'} |")
    return "\n".join(lines)


def seeds_table(run: Run) -> str:
    lines = ["| backend | users | added | load (s) | analyze (s) |", "|---|---:|---:|---:|---:|"]
    for s in run.seeds:
        lines.append(f"| {s['backend']} | {s['to']:,} | {s['added']:,} | {s['load_s']:.1f} | "
                     f"{s['analyze_s']:.1f} |")
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(x.replace("_", "")) for x in text.split(",") if x.strip()})
    if not sizes or sizes[0] < 100:
        raise argparse.ArgumentTypeError("sizes must be >= 100")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[10_000, 100_000, 1_000_000],
                        help="comma-separated user counts (default 10000,100000,1000000)")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    parser.add_argument("--modes", default="http,storage", help="comma-separated: http, storage")
    parser.add_argument("--iterations", type=int, default=200, help="max timed calls per cell")
    parser.add_argument("--min-iterations", type=int, default=5,
                        help="min timed calls per cell")
    parser.add_argument("--cell-seconds", type=float, default=2.0,
                        help="time budget per cell (beyond --min-iterations)")
    parser.add_argument("--explain", action="store_true",
                        help="record query plans (printed for the largest size)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite data dir")
    args = parser.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",")]
    backends = [b.strip() for b in args.backends.split(",")]

    started = time.perf_counter()
    run = Run(started=datetime.now(UTC).isoformat(timespec="seconds"), machine=machine(),
              args={k: v for k, v in vars(args).items()})
    bench = Bench(args, run)
    for backend in backends:
        if backend == "sqlite":
            bench.sqlite()
        elif backend == "postgresql":
            bench.postgresql()
        else:
            raise SystemExit(f"unknown backend {backend}")
    elapsed = time.perf_counter() - started

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"user_search-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({**asdict(run), "elapsed_s": elapsed}, indent=2, default=str))
    print(f"\nmachine: {json.dumps(run.machine)}")
    print(f"\nseeding:\n\n{seeds_table(run)}\n")
    print(f"latency (ms; HTTP search = search_users + count_users + auth + JSON):\n\n"
          f"{table(run)}\n")
    print(f"total {elapsed:.0f} s; results in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
