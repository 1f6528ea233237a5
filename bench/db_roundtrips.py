"""Database round trips per request, for each grant and token endpoint, counted in process.

Builds the real app (``create_app(settings, ctx)``) over ``httpx2.ASGITransport`` on a
fresh database, once on SQLite and once on PostgreSQL (a throwaway cluster from
``tests/support.py``), and counts for every request:

- **statements**: SQLAlchemy ``before_cursor_execute`` events on the engine that runs
  the storage's statements (``SQLStorage.sync_engine``: on SQLite the engine of the
  storage's own thread) (SELECT, INSERT, UPDATE, DELETE; transaction control is not a
  cursor execute);
- **transactions**: ``begin`` events (explicit ``engine.begin()`` and the autobegin of
  ``engine.connect()``), with their ``commit`` and ``rollback`` ends;
- **checkouts**: pool ``checkout`` events (one per storage call: each runs one
  ``connect()`` or ``begin()``; connections are not pre-pinged);
- **PostgreSQL wire round trips**: the engine connects through a small TCP proxy in
  this process that counts the frontend messages which wait for the server's
  ``ReadyForQuery``: ``Sync`` (extended protocol: prepare, or bind+execute) and
  ``Query`` (simple protocol: ``BEGIN``, ``COMMIT``, ``ROLLBACK``, the ping ``;``).
  That is exactly the number of times the request waits on the database.

Each case runs once to warm up (prepared statements cached, pool connection open),
then ``--requests`` times; the figure is the mean per request (the bench says so if a
case is not the same on every request). Inputs (codes, fresh tokens) are made outside
the counted request. ``--verbose`` prints the statements of one request per case.

The outbox worker (``ctx.start()``) is not started: it polls the database every few
seconds and would pollute the counts; the signing keys are loaded as ``start`` does.
Warm cases run with ``cache_ttl=300`` (clients and signing keys served from memory);
the cold client-credentials case uses a second app with ``cache_ttl=0`` (what every
request costs once the cache has expired, i.e. once per ``cache_ttl`` per worker).

Run from the repository root (about 15 s; PostgreSQL 15 server binaries needed for
the PostgreSQL half, ``--backends sqlite`` otherwise):

    .venv/bin/python bench/db_roundtrips.py [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import struct
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bastion.oauth import pkce  # noqa: E402
from bastion.server.app import create_app  # noqa: E402
from bastion.server.context import Context  # noqa: E402
from bastion.server.services import rbac  # noqa: E402
from bastion.server.services.clients import create_client  # noqa: E402
from bastion.server.services.users import create_user  # noqa: E402
from bastion.server.settings import Settings  # noqa: E402
from bastion.server.storage import migrate  # noqa: E402
from support import (  # noqa: E402
    ISSUER,
    callback_params,
    create_database,
    postgres_cluster,
    sign_in,
)

RESULTS = ROOT / "bench" / "results"
REDIRECT = "https://app.example/callback"
USERNAME, PASSWORD = "alice", "correct horse battery staple"
SECRET_KEY = "db-roundtrips-bench-secret-key-0123456789"


# -- counting ------------------------------------------------------------------------


@dataclass
class Counts:
    statements: int = 0
    begins: int = 0
    commits: int = 0
    rollbacks: int = 0
    checkouts: int = 0
    wire: int = 0  # PostgreSQL: Sync + Query messages sent
    texts: list[str] = field(default_factory=list)


class EngineCounter:
    """SQLAlchemy events of one engine (and the wire proxy's count, if any)."""

    def __init__(self, sync: Any, proxy: WireProxy | None) -> None:
        self.c = Counts()
        self.proxy = proxy

        @event.listens_for(sync, "before_cursor_execute")
        def _stmt(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
            self.c.statements += 1
            self.c.texts.append(_short(statement))

        @event.listens_for(sync, "begin")
        def _begin(conn: Any) -> None:
            self.c.begins += 1
            self.c.texts.append("BEGIN")

        @event.listens_for(sync, "commit")
        def _commit(conn: Any) -> None:
            self.c.commits += 1
            self.c.texts.append("COMMIT")

        @event.listens_for(sync, "rollback")
        def _rollback(conn: Any) -> None:
            self.c.rollbacks += 1
            self.c.texts.append("ROLLBACK")

        @event.listens_for(sync.pool, "checkout")
        def _checkout(*a: Any) -> None:
            self.c.checkouts += 1
            self.c.texts.append("(pool checkout)")

    def reset(self) -> None:
        self.c = Counts()
        if self.proxy:
            self.proxy.messages = 0

    def take(self) -> Counts:
        out = self.c
        out.wire = self.proxy.messages if self.proxy else 0
        self.reset()
        return out


def _short(sql: str) -> str:
    """The statement's verb and main table, e.g. ``SELECT users`` or ``UPDATE grants``."""
    flat = " ".join(sql.split())
    verb = flat.split(" ", 1)[0].upper()
    pattern = {"SELECT": r"\bFROM (\w+)", "INSERT": r"\bINTO (\w+)", "UPDATE": r"^UPDATE (\w+)",
               "DELETE": r"\bFROM (\w+)"}.get(verb)
    m = re.search(pattern, flat, re.I) if pattern else None
    extra = " FOR UPDATE" if flat.upper().endswith("FOR UPDATE") else ""
    if verb == "SELECT" and " UNION ALL " in flat.upper():
        extra += " (UNION ALL " + ",".join(re.findall(r"\bFROM (\w+)", flat)[1:]) + ")"
    return f"{verb} {m.group(1) if m else ''}{extra}".strip()


class WireProxy:
    """A loopback TCP proxy in front of PostgreSQL counting the frontend messages that
    end a request cycle (``S`` Sync, ``Q`` Query): one per database round trip."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.messages = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for t in self.tasks:
            t.cancel()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        for coro in (self._frontend(reader, up_w), self._pipe(up_r, writer)):
            task = asyncio.create_task(coro)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _frontend(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:  # startup phase: untyped messages (SSLRequest, StartupMessage)
                head = await r.readexactly(8)
                length, code = struct.unpack("!ii", head)
                w.write(head + await r.readexactly(length - 8))
                await w.drain()
                if code != 80877103:  # not an SSLRequest: the StartupMessage
                    break
            while True:
                head = await r.readexactly(5)
                kind, length = head[:1], struct.unpack("!i", head[1:])[0]
                if kind in (b"S", b"Q"):
                    self.messages += 1
                w.write(head + await r.readexactly(length - 4))
                if kind in (b"S", b"Q", b"H", b"X"):
                    await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    @staticmethod
    async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()


# -- the cases ----------------------------------------------------------------------


@dataclass
class Env:
    http: httpx2.AsyncClient  # warm app (cache_ttl=300)
    cold: httpx2.AsyncClient  # cold app (cache_ttl=0)
    client_id: str
    secret: str
    org_id: str


def authorize_url(client_id: str, verifier: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "scope": "openid profile email", "state": "s", "nonce": "n",
              "code_challenge": pkce.challenge(verifier), "code_challenge_method": "S256"}
    return "/oauth/authorize?" + urlencode(params)


def ok(r: httpx2.Response, status: int = 200) -> httpx2.Response:
    if r.status_code != status:
        raise SystemExit(f"{r.request.method} {r.request.url.path} answered {r.status_code}: "
                         f"{r.text[:300]}")
    return r


async def password_tokens(e: Env, org: bool = False, scope: str = "openid read") -> dict[str, Any]:
    data = {"grant_type": "password", "username": USERNAME, "password": PASSWORD,
            "scope": scope}
    if org:
        data["organization"] = e.org_id
    return dict(ok(await e.http.post("/oauth/token", data=data,
                                     auth=(e.client_id, e.secret))).json())


Prepare = Callable[[Env], Awaitable[Any]]
Request = Callable[[Env, Any], Awaitable[Any]]


def cases() -> list[tuple[str, str, Prepare, Request]]:
    """(name, app, prepare inputs (not counted), the counted request)."""

    async def nothing(e: Env) -> None:
        return None

    async def cc(e: Env, _: Any) -> None:
        ok(await e.http.post("/oauth/token", data={"grant_type": "client_credentials",
                                                   "scope": "read"}, auth=(e.client_id, e.secret)))

    async def cc_cold(e: Env, _: Any) -> None:
        ok(await e.cold.post("/oauth/token", data={"grant_type": "client_credentials",
                                                   "scope": "read"}, auth=(e.client_id, e.secret)))

    async def new_verifier(e: Env) -> str:
        return pkce.new_verifier()

    async def authorize(e: Env, verifier: str) -> None:
        callback_params(await e.http.get(authorize_url(e.client_id, verifier)))

    async def new_code(e: Env) -> tuple[str, str]:
        verifier = pkce.new_verifier()
        params = callback_params(await e.http.get(authorize_url(e.client_id, verifier)))
        return params["code"], verifier

    async def exchange(e: Env, code_verifier: tuple[str, str]) -> None:
        code, verifier = code_verifier
        ok(await e.http.post("/oauth/token", auth=(e.client_id, e.secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier}))

    async def login_form(e: Env) -> str:
        e.http.cookies.clear()  # so the authorize request shows the form
        page = ok(await e.http.get(authorize_url(e.client_id, pkce.new_verifier())))
        return page.text

    async def login_post(e: Env, page: str) -> None:
        from support import hidden_fields

        ok(await e.http.post("/login", data={**hidden_fields(page), "login": USERNAME,
                                             "password": PASSWORD}), 303)

    def refresh_of(org: bool) -> Prepare:
        async def prep(e: Env) -> str:
            return str((await password_tokens(e, org))["refresh_token"])
        return prep

    async def refresh(e: Env, token: str) -> None:
        ok(await e.http.post("/oauth/token", auth=(e.client_id, e.secret), data={
            "grant_type": "refresh_token", "refresh_token": token}))

    def password(org: bool) -> Request:
        async def req(e: Env, _: Any) -> None:
            await password_tokens(e, org)
        return req

    async def access(e: Env) -> str:
        return str((await password_tokens(e))["access_token"])

    async def refresh_token(e: Env) -> str:
        return str((await password_tokens(e))["refresh_token"])

    def form_call(path: str) -> Request:
        async def req(e: Env, token: str) -> None:
            ok(await e.http.post(path, data={"token": token}, auth=(e.client_id, e.secret)))
        return req

    async def userinfo(e: Env, token: str) -> None:
        ok(await e.http.get("/oauth/userinfo", headers={"Authorization": f"Bearer {token}"}))

    return [
        ("client_credentials (warm cache)", "warm", nothing, cc),
        ("client_credentials (cold cache)", "cold", nothing, cc_cold),
        ("password", "warm", nothing, password(False)),
        ("password + organization", "warm", nothing, password(True)),
        ("refresh_token", "warm", refresh_of(False), refresh),
        ("refresh_token (organization grant)", "warm", refresh_of(True), refresh),
        ("POST /login (sign-in form)", "warm", login_form, login_post),
        ("GET /oauth/authorize (signed in)", "warm", new_verifier, authorize),
        ("authorization_code", "warm", new_code, exchange),
        ("introspect access token", "warm", access, form_call("/oauth/introspect")),
        ("introspect refresh token", "warm", refresh_token, form_call("/oauth/introspect")),
        ("revoke access token", "warm", access, form_call("/oauth/revoke")),
        ("revoke refresh token", "warm", refresh_token, form_call("/oauth/revoke")),
        ("userinfo", "warm", access, userinfo),
    ]


# -- one backend ----------------------------------------------------------------------


def settings_for(data_dir: Path, url: str, cache_ttl: float) -> Settings:
    return Settings(data_dir=data_dir, issuer=ISSUER, secret_key=SECRET_KEY, database_url=url,
                    cache_ttl=cache_ttl, password_hash_memory_kib=8192,
                    password_hash_time_cost=1)


async def run_backend(name: str, url: str, data_dir: Path, requests: int,
                      verbose: bool) -> list[dict[str, Any]]:
    async with AsyncExitStack() as stack:
        proxy = None
        if url.startswith("postgresql"):
            parts = urlsplit(url)
            proxy = WireProxy(int(parts.port or 5432))
            await proxy.start()
            stack.push_async_callback(proxy.close)
            url = url.replace(f":{parts.port}/", f":{proxy.port}/")
        warm_ctx = Context.open(settings_for(data_dir, url, 300))
        stack.push_async_callback(warm_ctx.close)
        await migrate.upgrade(warm_ctx.storage.engine)  # type: ignore[attr-defined]
        cold_ctx = Context.open(settings_for(data_dir, url, 0))
        stack.push_async_callback(cold_ctx.close)
        for ctx in (warm_ctx, cold_ctx):
            await ctx.keys.ensure()  # what ctx.start() does, without the outbox poller

        new = await create_client(
            warm_ctx.storage, name="Bench", redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token", "password",
                         "client_credentials"], scopes=["openid", "profile", "email", "read"])
        assert new.client_secret
        user = await create_user(warm_ctx.storage, warm_ctx.passwords, username=USERNAME,
                                 email="alice@example.com", password=PASSWORD)
        org = await rbac.create_organization(warm_ctx.storage, "acme")
        role = await rbac.create_role(warm_ctx.storage, org.id, "admin", ["docs:read"])
        await rbac.change_user_roles(warm_ctx.storage, user.id, org.id, add=[role.id])

        http = await stack.enter_async_context(httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=create_app(warm_ctx.settings, warm_ctx)),
            base_url=ISSUER))
        cold = await stack.enter_async_context(httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=create_app(cold_ctx.settings, cold_ctx)),
            base_url=ISSUER))
        env = Env(http, cold, new.client.client_id, new.client_secret, org.id)
        # a login session for the authorization-code cases
        callback_params(await sign_in(http, authorize_url(env.client_id, pkce.new_verifier()),
                                      USERNAME, PASSWORD))

        counters = {"warm": EngineCounter(warm_ctx.storage.sync_engine, proxy),  # type: ignore[attr-defined]
                    "cold": EngineCounter(cold_ctx.storage.sync_engine, proxy)}  # type: ignore[attr-defined]
        rows = []
        for case, app, prepare, request in cases():
            needs_session = case.startswith("GET /oauth/authorize") or case == "authorization_code"
            if needs_session and "bastion_session" not in http.cookies:
                callback_params(await sign_in(
                    http, authorize_url(env.client_id, pkce.new_verifier()), USERNAME,
                    PASSWORD))
            counter = counters[app]
            seen: list[Counts] = []
            for i in range(requests + 1):
                given = await prepare(env)
                for c in counters.values():
                    c.reset()
                await request(env, given)
                got = counter.take()
                if i:  # the first is the warmup
                    seen.append(got)
            keys = ("statements", "begins", "commits", "rollbacks", "checkouts", "wire")
            mean = {k: sum(getattr(s, k) for s in seen) / len(seen) for k in keys}
            varies = {k for k in keys if len({getattr(s, k) for s in seen}) > 1}
            rows.append({"backend": name, "case": case, **mean, "varies": sorted(varies),
                         "sequence": seen[-1].texts})
            if verbose:
                print(f"  [{name}] {case}: " + " | ".join(seen[-1].texts), flush=True)
        return rows


def fmt(x: float) -> str:
    return f"{x:.0f}" if x == int(x) else f"{x:.2f}"


def print_table(rows: list[dict[str, Any]], backends: list[str]) -> None:
    by = {(r["backend"], r["case"]): r for r in rows}
    names = list(dict.fromkeys(r["case"] for r in rows))
    pg = "postgresql" in backends
    head = "| request | statements | transactions (commit/rollback) | checkouts |"
    line = "|---|---:|---:|---:|"
    if pg:
        head += " PostgreSQL round trips |"
        line += "---:|"
    print(head)
    print(line)
    ref = backends[0]
    for case in names:
        r = by[(ref, case)]
        tx = f"{fmt(r['begins'])} ({fmt(r['commits'])}/{fmt(r['rollbacks'])})"
        cells = f"| {case} | {fmt(r['statements'])} | {tx} | {fmt(r['checkouts'])} |"
        if pg:
            p = by.get(("postgresql", case))
            cells += f" {fmt(p['wire']) if p else '-'} |"
        print(cells)
    # the same code on both backends: say so, or show where they differ
    if len(backends) > 1:
        diffs = [(c, b) for c in names for b in backends[1:]
                 if any(by[(b, c)][k] != by[(ref, c)][k]
                        for k in ("statements", "begins", "commits", "rollbacks", "checkouts"))]
        if diffs:
            print("\nthe backends differ on:")
            for c, b in diffs:
                r = by[(b, c)]
                print(f"  {b} {c}: statements {fmt(r['statements'])}, begins "
                      f"{fmt(r['begins'])}, checkouts {fmt(r['checkouts'])}")
        else:
            print(f"\n(statements, transactions and checkouts are the same on "
                  f"{' and '.join(backends)})")
    varying = [(r["backend"], r["case"], r["varies"]) for r in rows if r["varies"]]
    for b, c, v in varying:
        print(f"note: {b} {c}: {', '.join(v)} differed between requests (mean shown)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10, help="counted requests per case")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--verbose", action="store_true", help="print each case's statements")
    args = parser.parse_args()
    if not 1 <= args.requests <= 200:
        parser.error("keep --requests in 1..200")
    backends = [b for b in args.backends.split(",") if b]
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bastion-rt-")))
        for b in backends:
            if b == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp / 'sqlite' / 'bastion.db'}"
            elif b == "postgresql":
                admin = stack.enter_context(postgres_cluster())
                url = asyncio.run(create_database(admin, "roundtrips"))
            else:
                parser.error(f"unknown backend {b}")
            (tmp / b).mkdir(exist_ok=True)
            rows += asyncio.run(run_backend(b, url, tmp / b, args.requests, args.verbose))
    print(f"\nper request, mean of {args.requests} after one warmup:\n")
    print_table(rows, backends)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"db_roundtrips-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"requests": args.requests, "rows": rows,
                               "counts": dict(Counter(r["backend"] for r in rows))}, indent=2))
    print(f"figures written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
