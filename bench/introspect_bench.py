"""Token introspection throughput (RFC 7662) of ``bastion serve`` on SQLite.

Starts ``python -m bastion.cli serve`` (one worker unless ``--workers``) on 127.0.0.1
with a fresh SQLite data dir (``BASTION_DATA_DIR``), one confidential client
(``clients create --grant-type client_credentials --grant-type password
--grant-type refresh_token --scope read --scope openid``, the setup of
``bench/scale_bench.py``) and one user. One user access token is obtained with the
password grant (``scope=openid read``), checked once by hand (``"active": true``,
``sub`` = the user), then ``wrk`` POSTs ``token=<that access token>`` to
``/oauth/introspect`` with the client's HTTP Basic authentication, back to back.

Every answer must be a 200 whose body says ``"active": true`` (the Lua ``response``
hook counts the others) and wrk must report no socket errors, or the bench fails.
A user token is the server's full path: the JWT signature and claims, one query for
revocation of the token or its grant, and one for the user (deleted?).

One warmup, then ``--runs`` runs of ``--duration`` seconds; the figure is the median
req/s, with each run's p50/p99 latency (wrk's) and the server's CPU time per request
(read from /proc for the server's process session). Writes the figures as JSON to
``bench/results/introspect_bench-*.json``. Loopback only.

Run from the repository root (about 40 s with the defaults; needs ``wrk``):

    .venv/bin/python bench/introspect_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
HOST = "127.0.0.1"
sys.path.insert(0, str(BENCH))

from scale_bench import PASSWORD, USERNAME, Server, machine_info  # noqa: E402
from token_throughput import BenchError, lua_script, run_wrk  # noqa: E402

# The same wrk script as the client-credentials bench; an answer also counts as bad
# unless it says "active": true.
LUA = lua_script("token=__TOKEN__",
                 "status ~= 200 or not string.find(body or \"\", '\"active\"%s*:%s*true')")


def user_access_token(server: Server) -> tuple[str, str]:
    """A user access token from the password grant, and the user's id (its ``sub``)."""
    form = {"grant_type": "password", "username": USERNAME, "password": PASSWORD,
            "scope": "openid read"}
    r = httpx2.post(server.url + "/oauth/token", data=form, auth=server.auth, timeout=60)
    if r.status_code != 200:
        raise BenchError(f"password grant answered {r.status_code}: {r.text[:300]}")
    token = str(r.json()["access_token"])
    check = httpx2.post(server.url + "/oauth/introspect", data={"token": token},
                        auth=server.auth, timeout=30)
    body = check.json() if check.status_code == 200 else {}
    if body.get("active") is not True or not body.get("sub") or not body.get("gid"):
        raise BenchError(f"introspection of a fresh user token answered {check.status_code}: "
                         f"{check.text[:300]}")
    return token, str(body["sub"])


def measure(server: Server, args: argparse.Namespace, script: Path, seconds: int
            ) -> dict[str, Any]:
    target = SimpleNamespace(name=server.name, url=server.url + "/oauth/introspect")
    cpu0 = server.cpu()
    res = run_wrk(target, args, script, seconds)  # type: ignore[arg-type]
    res["server_cpu_ms"] = (server.cpu() - cpu0) / res["requests"] * 1e3
    return {k: res[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "server_cpu_ms")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warmup (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="bastion serve --workers")
    args = parser.parse_args()
    if not (1 <= args.runs <= 20 and 1 <= args.duration <= 60 and 0 <= args.warmup <= 30
            and 1 <= args.connections <= 256 and 1 <= args.threads <= 8
            and 1 <= args.workers <= 8):
        parser.error("keep --runs 1..20, --duration 1..60, --warmup 0..30, "
                     "--connections 1..256, --threads 1..8, --workers 1..8")
    if shutil.which("wrk") is None:
        parser.error("wrk not found: apt-get install -y wrk")

    info = machine_info()
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bastion-introspect-") as tmp_s:
        tmp = Path(tmp_s)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        env.update(BASTION_DATA_DIR=str(tmp / "data"), BASTION_SECRET_KEY=secrets.token_urlsafe(32),
                   BASTION_ACCESS_TOKEN_TTL="3600")  # outlives the bench
        server = Server(f"sqlite w{args.workers}", "sqlite", args.workers, env)
        server.prepare()
        server.start(tmp)
        try:
            server.wait_ready()
            token, sub = user_access_token(server)
            script = tmp / "introspect.lua"
            script.write_text(LUA.replace("__BASIC__", server.basic).replace("__TOKEN__", token))
            print(f"{info['nproc']} cpu(s), {info['cpu']}, load {info['loadavg_start']}; "
                  f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s "
                  f"POST /oauth/introspect (user access token, sub {sub})", flush=True)
            if args.warmup:
                w = measure(server, args, script, args.warmup)
                print(f"  warmup {w['rps']:>9.0f} req/s", flush=True)
            for r in range(args.runs):
                res = measure(server, args, script, args.duration)
                runs.append(res)
                print(f"  run {r + 1}/{args.runs} {res['rps']:>9.0f} req/s  p50 "
                      f"{res['p50_ms']:.1f} ms  p99 {res['p99_ms']:.1f} ms  server CPU "
                      f"{res['server_cpu_ms']:.3f} ms/req", flush=True)
        finally:
            server.stop()
    elapsed = time.monotonic() - began

    med = {k: statistics.median(r[k] for r in runs)
           for k in ("rps", "p50_ms", "p99_ms", "server_cpu_ms")}
    print(f"\nintrospection, {args.workers} worker(s), SQLite: median {med['rps']:,.0f} req/s, "
          f"p50 {med['p50_ms']:.1f} ms, p99 {med['p99_ms']:.1f} ms, server CPU "
          f"{med['server_cpu_ms']:.3f} ms/req (runs: "
          + " ".join(f"{r['rps']:.0f}" for r in runs) + ")")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"introspect_bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"machine": info, "args": vars(args), "elapsed_s": elapsed,
                               "loadavg_end": os.getloadavg(), "medians": med, "runs": runs},
                              indent=2))
    print(f"figures written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
