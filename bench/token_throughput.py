"""Client-credentials throughput: Bastion against node ``oidc-provider`` 9, in one run.

Starts, on 127.0.0.1 only:

- ``bastion serve`` (one worker, and ``--workers 2`` unless ``--no-workers2``) on a
  fresh SQLite data dir with one confidential client created by
  ``bastion clients create --grant-type client_credentials --scope read --json``;
- the peer, ``bench/peer/server.mjs``: oidc-provider (version pinned in
  ``bench/peer/package.json``, installed with npm into ``bench/.peer/``), in-memory
  adapter, ES256 JWT access tokens (RFC 9068 shape) through a default resource
  indicator.

Then drives each with the same ``wrk`` command and Lua script (POST
``grant_type=client_credentials&scope=read`` with HTTP Basic auth): one warmup run
each, then ``--runs`` rounds in which every server is measured once, the order
rotating from round to round. Every response must be a 200 (the Lua ``response``
hook counts the others) and wrk must report no socket errors, or the bench fails.
Prints a table of medians and ratios and writes the figures as JSON to
``bench/results/``.

Run from the repository root (about 2.5 minutes with the defaults: 5 rounds of 8 s):

    .venv/bin/python bench/token_throughput.py

Goal: Bastion (one worker) >= 1.5x oidc-provider.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PEER_SRC = BENCH / "peer"
PEER_DIR = BENCH / ".peer"
RESULTS = BENCH / "results"
HOST = "127.0.0.1"
GOAL = 1.5

_LUA_TEMPLATE = r"""
wrk.method = "POST"
wrk.body = "__BODY__"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic __BASIC__"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  first_bad = ""
end

function response(status, headers, body)
  if __BAD_IF__ then
    if non200 == 0 then
      first_bad = string.gsub(status .. " " .. string.sub(body or "", 1, 200), '[%c"\\]', " ")
    end
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local bad, sample = 0, ""
  for _, t in ipairs(threads) do
    local n = t:get("non200")
    if n > 0 and sample == "" then sample = t:get("first_bad") end
    bad = bad + n
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non200": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"p50_ms": %.3f, "p99_ms": %.3f, "first_bad": "%s"}\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000, sample))
end
"""


def lua_script(body: str, bad_if: str = "status ~= 200") -> str:
    """The wrk script: POST ``body`` with Basic auth (``__BASIC__`` filled in later),
    count every answer for which the Lua condition ``bad_if`` holds, and print one
    BENCH_JSON line that ``run_wrk`` parses (and fails on when anything was bad)."""
    return _LUA_TEMPLATE.replace("__BODY__", body).replace("__BAD_IF__", bad_if)


LUA = lua_script("grant_type=client_credentials&scope=read")


class BenchError(RuntimeError):
    pass


@dataclass
class Target:
    name: str
    url: str  # token endpoint
    basic: str  # base64(client_id:client_secret)
    proc: subprocess.Popen[bytes]
    log: Path
    rps: list[float] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http(url: str, data: bytes | None = None, basic: str | None = None) -> tuple[int, bytes]:
    assert url.startswith(f"http://{HOST}:"), url  # loopback only
    req = urllib.request.Request(url, data=data)  # noqa: S310 (http://127.0.0.1 only, asserted)
    if basic:
        req.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(
    cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # the session this script started, by its id
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def wait_ready(
    base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"server exited with {proc.returncode}; log:\n{log.read_text()[-3000:]}"
            )
        try:
            status, body = http(f"{base}/.well-known/openid-configuration")
            if status == 200:
                return dict(json.loads(body))
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{base} not ready after {timeout}s; log:\n{log.read_text()[-3000:]}")


def check_token(target: Target) -> None:
    """One request by hand: a 200 with an ES256 ``at+jwt`` access token."""
    status, body = http(target.url, b"grant_type=client_credentials&scope=read", target.basic)
    if status != 200:
        raise BenchError(f"{target.name}: token request answered {status}: {body[:300]!r}")
    payload = json.loads(body)
    header = json.loads(base64.urlsafe_b64decode(payload["access_token"].split(".")[0] + "=="))
    if header.get("alg") != "ES256" or header.get("typ") != "at+jwt":
        raise BenchError(f"{target.name}: unexpected access token header {header}")


def run_wrk(
    target: Target, args: argparse.Namespace, script: Path, duration: int
) -> dict[str, Any]:
    cmd = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s",
        "--timeout", "5s", "-s", str(script), target.url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed on {target.name} ({out.returncode}):\n{out.stdout}\n{out.stderr}"
        )
    res: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    errors = {k: res[k] for k in ("connect", "read", "write", "status", "timeout") if res[k]}
    if res["non200"] or errors or not res["requests"]:
        raise BenchError(
            f"{target.name}: {res['non200']} non-200 responses of {res['requests']}, "
            f"socket errors {errors}; first bad: {res['first_bad']!r}"
        )
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    return res


def ensure_peer() -> str:
    """Install the pinned oidc-provider into bench/.peer (once) and return its version."""
    wanted = json.loads((PEER_SRC / "package.json").read_text())["dependencies"]["oidc-provider"]
    PEER_DIR.mkdir(exist_ok=True)
    for name in ("package.json", "server.mjs"):
        shutil.copyfile(PEER_SRC / name, PEER_DIR / name)
    installed = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != wanted:
        print(f"installing oidc-provider {wanted} into {PEER_DIR} ...", flush=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"],
            cwd=PEER_DIR, check=True, timeout=300,
        )  # fmt: skip
    return str(json.loads(installed.read_text())["version"])


def cmd_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def machine(peer_version: str) -> dict[str, Any]:
    cpu = "?"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    def git(*cmd: str) -> str:
        out = subprocess.run(
            ["git", *cmd], cwd=BENCH.parent, capture_output=True, text=True, check=False, timeout=10
        )
        return out.stdout.strip() if out.returncode == 0 else "?"

    spec = importlib.util.find_spec("bastion")
    return {
        "git_head": git("rev-parse", "--short", "HEAD"),
        "src_uncommitted_changes": bool(git("status", "--porcelain", "--", "src")),
        "bastion_imported_from": str(Path(spec.origin).parent) if spec and spec.origin else "?",
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "bastion": pkg("bastion"),
        "uvicorn": pkg("uvicorn"),
        "uvloop": pkg("uvloop"),
        "httptools": pkg("httptools"),
        "fastapi": pkg("fastapi"),
        "node": cmd_version(["node", "--version"]),
        "oidc-provider": peer_version,
        "wrk": cmd_version(["wrk", "-v"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default 8)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="seconds of warmup per server (default 5)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--no-workers2", action="store_true", help="skip bastion serve --workers 2")
    args = parser.parse_args()
    if not (1 <= args.runs <= 20 and 1 <= args.duration <= 60 and 0 <= args.warmup <= 30):
        parser.error("keep --runs in 1..20, --duration in 1..60, --warmup in 0..30")
    if shutil.which("wrk") is None:
        parser.error("wrk not found: apt-get install -y wrk")
    bastion_bin = Path(sys.executable).parent / "bastion"
    if not bastion_bin.exists():
        parser.error(f"{bastion_bin} not found: run with the venv's python (.venv/bin/python)")

    peer_version = ensure_peer()
    info = machine(peer_version)
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp_s:
        tmp = Path(tmp_s)
        try:
            data = tmp / "data"
            created = subprocess.run(
                [str(bastion_bin), "clients", "create", "--name", "bench", "--grant-type",
                 "client_credentials", "--scope", "read", "--json", "--data-dir", str(data)],
                cwd=tmp, capture_output=True, text=True, check=True, timeout=60,
            )  # fmt: skip
            client = json.loads(created.stdout.strip().splitlines()[-1])
            bastion_basic = base64.b64encode(
                f"{client['client_id']}:{client['client_secret']}".encode()
            ).decode()

            servers: list[tuple[str, int, list[str], dict[str, str] | None]] = []
            for workers in (1,) if args.no_workers2 else (1, 2):
                port = free_port()
                cmd = [
                    str(bastion_bin),
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data),
                ]
                if workers > 1:
                    cmd += ["--workers", str(workers)]
                servers.append(
                    (f"bastion --workers {workers}" if workers > 1 else "bastion", port, cmd, None)
                )
            peer_port = free_port()
            peer_secret = secrets.token_urlsafe(32)
            peer_cmd = ["node", str(PEER_DIR / "server.mjs"), str(peer_port), "bench", peer_secret]
            servers.append(
                ("oidc-provider", peer_port, peer_cmd, {**os.environ, "NODE_ENV": "production"})
            )
            peer_basic = base64.b64encode(f"bench:{peer_secret}".encode()).decode()

            for name, port, cmd, env in servers:  # one at a time: a cold start shares the CPU
                log = tmp / f"{name.replace(' ', '_')}.log"
                proc = start(cmd, tmp, log, env)
                base = f"http://{HOST}:{port}"
                targets.append(
                    Target(
                        name,
                        "",
                        peer_basic if name == "oidc-provider" else bastion_basic,
                        proc,
                        log,
                    )
                )
                meta = wait_ready(base, proc, log)
                token_url = str(meta["token_endpoint"])
                if not token_url.startswith(f"{base}/"):
                    raise BenchError(f"{name}: token endpoint {token_url} is not on {base}")
                targets[-1].url = token_url
                check_token(targets[-1])

            script = tmp / "client_credentials.lua"
            cmd_line = (
                f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --timeout 5s "
                "-s client_credentials.lua TOKEN_ENDPOINT"
            )
            print(f"{info['nproc']} cpu(s), {info['cpu']}; {cmd_line}", flush=True)
            for t in targets:
                script.write_text(LUA.replace("__BASIC__", t.basic))
                if args.warmup:
                    w = run_wrk(t, args, script, args.warmup)
                    print(f"  warmup  {t.name:<20} {w['rps']:>9.0f} req/s", flush=True)
            for r in range(args.runs):
                shift = r % len(targets)
                for t in targets[shift:] + targets[:shift]:
                    script.write_text(LUA.replace("__BASIC__", t.basic))
                    res = run_wrk(t, args, script, args.duration)
                    t.runs.append(res)
                    t.rps.append(res["rps"])
                    print(
                        f"  run {r + 1}/{args.runs} {t.name:<20} {res['rps']:>9.0f} req/s  "
                        f"p50 {res['p50_ms']:.1f} ms  p99 {res['p99_ms']:.1f} ms",
                        flush=True,
                    )
        finally:
            for t in targets:
                stop(t.proc)

    peer = next(t for t in targets if t.name == "oidc-provider")
    peer_med = statistics.median(peer.rps)
    rows: list[dict[str, Any]] = []
    print()
    print(f"{'server':<20} {'median req/s':>12} {'vs oidc-provider':>17}   runs")
    for t in targets:
        med = statistics.median(t.rps)
        ratio = med / peer_med
        rows.append({"server": t.name, "median_rps": round(med, 1), "ratio": round(ratio, 3),
                     "rps": [round(x, 1) for x in t.rps], "runs": t.runs})  # fmt: skip
        print(f"{t.name:<20} {med:>12.0f} {ratio:>16.2f}x   " + " ".join(f"{x:.0f}" for x in t.rps))
    bastion_ratio = statistics.median(targets[0].rps) / peer_med
    verdict = "meets" if bastion_ratio >= GOAL else "MISSES"
    print(
        f"\nbastion (1 worker) / oidc-provider = {bastion_ratio:.2f}x: {verdict} the {GOAL}x goal"
    )

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"token_throughput-{stamp}.json"
    wrk_params = {
        "threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "runs": args.runs,
    }
    report = {
        "when": stamp,
        "machine": info,
        "goal_ratio": GOAL,
        "wrk": wrk_params,
        "results": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {out.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
