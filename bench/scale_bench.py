"""Client-credentials and refresh-grant throughput of ``bastion serve`` with 1 and 2
workers, on SQLite and on PostgreSQL, all in one run on one machine.

Starts four servers on 127.0.0.1 (``python -m bastion.cli serve --workers N``), each
on its own database: SQLite (a fresh ``BASTION_DATA_DIR``) and PostgreSQL (one
database per server on a throwaway cluster from ``tests/support.py``
``postgres_cluster()``: fsync off, ``synchronous_commit=off``). All share one
``BASTION_SECRET_KEY``. Each gets one confidential client (``clients create
--grant-type client_credentials --grant-type password --grant-type refresh_token``)
and one user (``users create``).

Two loads, each run against every server once per round, the server order rotating
between rounds (the machine is shared and noisy: compare ratios within a run):

- **client_credentials**: ``wrk`` with the Lua script of ``bench/token_throughput.py``
  (every non-200 answer and every socket error fails the bench);
- **refresh_token**: ``--chains`` independent refresh chains from this process, each
  on its own keep-alive connection, each request sending the refresh token the
  previous answer returned (rotation, so a chain is strictly sequential). The client is
  a minimal HTTP/1.1 writer/reader on asyncio streams, to keep the load generator's
  CPU small next to the server's on two cores; its CPU per request is reported.

For every run it records req/s, p50 and p99 latency, and the CPU time per request
of the server (all processes of its session: uvicorn's supervisor and workers), of
PostgreSQL (the postmaster and its children) and of the load generator (wrk or this
process). The table shows medians over the rounds; the JSON in ``bench/results/``
has every run.

Run from the repository root (about 5 minutes with the defaults; needs ``wrk`` and
the PostgreSQL 15 server binaries):

    .venv/bin/python bench/scale_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
HOST = "127.0.0.1"
sys.path.insert(0, str(ROOT / "tests"))

from token_throughput import LUA, BenchError, run_wrk  # noqa: E402

from support import create_database, free_port, postgres_cluster  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
USERNAME, PASSWORD = "u", "scale bench password 123"


# -- CPU accounting from /proc ------------------------------------------------------


def _stat(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_of(match: Any) -> float:
    """CPU seconds (user + system) of the live processes for which ``match(pid, fields)``
    holds; fields are /proc/PID/stat after the command name (3: ppid, 4: session)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fields = _stat(pid)
        if fields and match(int(pid), fields):
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def session_cpu(sid: int) -> float:
    return cpu_of(lambda pid, f: int(f[3]) == sid)


def children_cpu(parent: int) -> float:
    return cpu_of(lambda pid, f: pid == parent or int(f[1]) == parent)


def wrk_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# -- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    backend: str
    workers: int
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    basic: str = ""
    auth: tuple[str, str] = ("", "")
    chains: list[str] = field(default_factory=list)
    runs: dict[str, list[dict[str, float]]] = field(
        default_factory=lambda: {"client_credentials": [], "refresh_token": []})

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cli(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "bastion.cli", *args], env=self.env,
                              input=stdin, capture_output=True, text=True, timeout=120,
                              check=False)
        if done.returncode:
            raise BenchError(f"{self.name}: bastion {' '.join(args)} failed: {done.stderr}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def prepare(self) -> None:
        client = self.cli("clients", "create", "--name", "bench", "--grant-type",
                          "client_credentials", "--grant-type", "password", "--grant-type",
                          "refresh_token", "--scope", "read", "--scope", "openid", "--json")
        self.auth = (str(client["client_id"]), str(client["client_secret"]))
        self.basic = base64.b64encode(":".join(self.auth).encode()).decode()
        self.cli("users", "create", "--username", USERNAME, "--email", "u@example.com",
                 "--password-stdin", "--json", stdin=PASSWORD)

    def start(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / f"{self.name.replace(' ', '_')}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bastion.cli", "serve", "--host", HOST, "--port",
                 str(self.port), "--workers", str(self.workers)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None and self.log is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx2.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.2)
        raise BenchError(f"{self.name} not ready after {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the session this script started
        try:
            self.proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def cpu(self) -> float:
        assert self.proc is not None
        return session_cpu(self.proc.pid)


# -- the refresh load: a minimal keep-alive HTTP/1.1 client ------------------------------


class Conn:
    """One keep-alive connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 port: int, basic: str) -> None:
        self.r, self.w = reader, writer
        self.head = (f"POST /oauth/token HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                     f"Authorization: Basic {basic}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n").encode()

    @classmethod
    async def open(cls, port: int, basic: str) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer, port, basic)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        self.w.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.r.readexactly(length)

    def close(self) -> None:
        self.w.close()


async def refresh_load(server: Server, seconds: float) -> dict[str, Any]:
    conns = [await Conn.open(server.port, server.basic) for _ in server.chains]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def chain(i: int) -> None:
        conn = conns[i]
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status, body = await conn.post(b"grant_type=refresh_token&refresh_token="
                                           + server.chains[i].encode())
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise BenchError(f"{server.name}: refresh answered {status}: {body[:300]!r}")
            server.chains[i] = json.loads(body)["refresh_token"]

    start = time.perf_counter()
    try:
        await asyncio.gather(*(chain(i) for i in range(len(conns))))
    finally:
        for c in conns:
            c.close()
    elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {"requests": n, "rps": n / elapsed, "p50_ms": latencies[n // 2] * 1e3,
            "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1e3}


async def login_chains(server: Server, chains: int) -> None:
    form = {"grant_type": "password", "username": USERNAME, "password": PASSWORD,
            "scope": "openid read"}
    async with httpx2.AsyncClient(base_url=server.url, timeout=60) as http:
        for _ in range(chains):  # one at a time: each is an argon2 verify
            r = await http.post("/oauth/token", data=form, auth=server.auth)
            if r.status_code != 200:
                raise BenchError(f"{server.name}: password grant answered {r.status_code}: "
                                 f"{r.text[:300]}")
            server.chains.append(r.json()["refresh_token"])


# -- measuring -------------------------------------------------------------------------


class Meter:
    def __init__(self, server: Server, pg_pid: int | None) -> None:
        self.server, self.pg_pid = server, pg_pid

    def __enter__(self) -> Meter:
        self.s0, self.l0, self.w0 = self.server.cpu(), time.process_time(), wrk_cpu()
        self.p0 = children_cpu(self.pg_pid) if self.pg_pid else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.server_s = self.server.cpu() - self.s0
        self.load_s = (time.process_time() - self.l0) + (wrk_cpu() - self.w0)
        # clamped: an autovacuum worker that exits takes its CPU time with it
        self.pg_s = max(0.0, children_cpu(self.pg_pid) - self.p0) if self.pg_pid else 0.0

    def per_request(self, res: dict[str, Any]) -> dict[str, Any]:
        n = res["requests"]
        res.update(server_cpu_ms=self.server_s / n * 1e3, load_cpu_ms=self.load_s / n * 1e3,
                   pg_cpu_ms=self.pg_s / n * 1e3 if self.pg_pid else None)
        return res


def measure(server: Server, grant: str, seconds: int, args: argparse.Namespace,
            script: Path, pg_pid: int | None) -> dict[str, Any]:
    pg = pg_pid if server.backend == "postgresql" else None
    if grant == "client_credentials":
        script.write_text(LUA.replace("__BASIC__", server.basic))
        target = SimpleNamespace(name=server.name, url=server.url + "/oauth/token")
        wrk_args = SimpleNamespace(threads=1, connections=args.connections)
        with Meter(server, pg) as m:
            res = run_wrk(target, wrk_args, script, seconds)  # type: ignore[arg-type]
        keep = {k: res[k] for k in ("requests", "rps", "p50_ms", "p99_ms")}
        return m.per_request(keep)
    with Meter(server, pg) as m:
        res = asyncio.run(refresh_load(server, seconds))
    return m.per_request(res)


def postmaster_pid(admin_url: str) -> int:
    import asyncpg

    async def data_dir() -> str:
        conn = await asyncpg.connect(admin_url.replace("+asyncpg", ""))
        try:
            return str(await conn.fetchval("SHOW data_directory"))
        finally:
            await conn.close()

    return int((Path(asyncio.run(data_dir())) / "postmaster.pid").read_text().split()[0])


def machine_info() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), "?")

    def run(*cmd: str) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "?"
        return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
            else "?"

    pg = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "loadavg_start": os.getloadavg(),
        "git_head": run("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        "src_uncommitted": bool(subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True, text=True, check=False).stdout.strip()),
        "postgres": run(str(pg[-1]), "--version") if pg else "?",
        "sqlite": __import__("sqlite3").sqlite_version,
        "wrk": run("wrk", "-v"),
        **{p: version(p) for p in ("uvicorn", "uvloop", "SQLAlchemy", "asyncpg", "aiosqlite")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warmup per load")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--chains", type=int, default=32,
                        help="parallel refresh chains (default 32)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    if not (1 <= args.runs <= 20 and 1 <= args.duration <= 30 and 0 <= args.warmup <= 10
            and 1 <= args.chains <= 256 and 1 <= args.connections <= 256):
        parser.error("keep --runs 1..20, --duration 1..30, --warmup 0..10, --chains and "
                     "--connections 1..256")
    if shutil.which("wrk") is None:
        parser.error("wrk not found: apt-get install -y wrk")
    backends = args.backends.split(",")
    workers = [int(w) for w in args.workers.split(",")]
    info = machine_info()
    began = time.monotonic()
    secret = secrets.token_urlsafe(32)
    servers: list[Server] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bastion-scale-")))
        admin = stack.enter_context(postgres_cluster()) if "postgresql" in backends else None
        pg_pid = postmaster_pid(admin) if admin else None
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        for backend in backends:
            for n in workers:
                name = f"{backend} w{n}"
                env = {**base_env, "BASTION_SECRET_KEY": secret,
                       "BASTION_DATA_DIR": str(tmp / name.replace(" ", "_"))}
                if backend == "postgresql":
                    assert admin is not None
                    env["BASTION_DATABASE_URL"] = asyncio.run(
                        create_database(admin, f"scale_w{n}"))
                servers.append(Server(name, backend, n, env))
        try:
            for s in servers:
                s.prepare()
                s.start(tmp)
                s.wait_ready()
                asyncio.run(login_chains(s, args.chains))
            script = tmp / "client_credentials.lua"
            print(f"{info['nproc']} cpu(s), {info['cpu']}, load {info['loadavg_start']}; "
                  f"wrk -t1 -c{args.connections} -d{args.duration}s; {args.chains} refresh "
                  f"chains; {args.runs} rounds", flush=True)
            for s in servers:
                for grant in ("client_credentials", "refresh_token"):
                    if args.warmup:
                        w = measure(s, grant, args.warmup, args, script, pg_pid)
                        print(f"  warmup {s.name:<15} {grant:<19} {w['rps']:>7.0f} req/s",
                              flush=True)
            for r in range(args.runs):
                shift = r % len(servers)
                for s in servers[shift:] + servers[:shift]:
                    for grant in ("client_credentials", "refresh_token"):
                        res = measure(s, grant, args.duration, args, script, pg_pid)
                        s.runs[grant].append(res)
                        pgc = f" pg {res['pg_cpu_ms']:.2f}" if res["pg_cpu_ms"] is not None else ""
                        print(f"  run {r + 1}/{args.runs} {s.name:<15} {grant:<19} "
                              f"{res['rps']:>7.0f} req/s  p50 {res['p50_ms']:5.1f} ms  "
                              f"p99 {res['p99_ms']:6.1f} ms  cpu ms/req: server "
                              f"{res['server_cpu_ms']:.2f}{pgc} load {res['load_cpu_ms']:.2f}",
                              flush=True)
        finally:
            for s in servers:
                s.stop()
    elapsed = time.monotonic() - began

    def med(runs: list[dict[str, Any]], key: str) -> float | None:
        vals = [r[key] for r in runs if r[key] is not None]
        return statistics.median(vals) if vals else None

    summary = []
    print(f"\nmedians of {args.runs} runs of {args.duration} s ({elapsed:.0f} s in all)\n")
    print("| grant | backend | workers | req/s | vs 1 worker | runs (req/s) | p50 ms | p99 ms "
          "| CPU ms/req: server | PostgreSQL | load generator |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for grant in ("client_credentials", "refresh_token"):
        for s in servers:
            runs = s.runs[grant]
            one = next(x for x in servers if x.backend == s.backend and x.workers == workers[0])
            rps = med(runs, "rps")
            base = med(one.runs[grant], "rps")
            assert rps is not None and base is not None
            # the per-round ratio (same round, adjacent in time) is steadier than the
            # ratio of medians on a noisy machine
            ratios = [a["rps"] / b["rps"] for a, b in zip(runs, one.runs[grant], strict=True)]
            row = {"grant": grant, "server": s.name, "backend": s.backend, "workers": s.workers,
                   "median_rps": rps, "ratio_of_medians": rps / base,
                   "median_round_ratio": statistics.median(ratios),
                   **{k: med(runs, k) for k in ("p50_ms", "p99_ms", "server_cpu_ms",
                                                 "pg_cpu_ms", "load_cpu_ms")},
                   "runs": runs}
            summary.append(row)
            pgc = f"{row['pg_cpu_ms']:.2f}" if row["pg_cpu_ms"] is not None else "-"
            print(f"| {grant} | {s.backend} | {s.workers} | {rps:,.0f} | "
                  f"{row['median_round_ratio']:.2f}x | "
                  + " ".join(f"{r['rps']:.0f}" for r in runs)
                  + f" | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                  f"{row['server_cpu_ms']:.2f} | {pgc} | {row['load_cpu_ms']:.2f} |")
    print("\n'vs 1 worker' is the median over rounds of (this run / the same backend's "
          "1-worker run of the same round).")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale_bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"machine": info, "args": vars(args), "elapsed_s": elapsed,
                               "loadavg_end": os.getloadavg(), "results": summary}, indent=2))
    print(f"figures written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
