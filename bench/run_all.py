"""Every benchmark of the project in one go, on one machine, summarized in one table.

Runs, one after the other, each as its own process with its own command line
(printed, and written into the table):

1. ``verify_bench.py``      SDK ``verify_token`` vs PyJWT / joserfc / raw signature
2. ``token_throughput.py``  client credentials vs node oidc-provider (wrk)
3. ``login_bench.py``       password login vs bare argon2id; refresh grant
4. ``introspect_bench.py``  RFC 7662 introspection of a user access token (wrk)
5. ``scale_bench.py``       1 vs 2 workers, SQLite and PostgreSQL (wrk + refresh chains)
6. ``db_roundtrips.py``     database statements / transactions / round trips per request
7. ``user_search.py``       user search and count at 1M users, SQLite and PostgreSQL
                            (its own seeding, ``seed_users.py``)

Each bench's figures are read back from the JSON file it writes to ``bench/results/``
(the path it prints), or from its ``--json`` output (``verify_bench.py``). The
summary table (each row: command, figure, goal, met or not) and the machine (nproc,
CPU, versions, git commit, load average at start and end) replace the text between
``<!-- summary:start -->`` and ``<!-- summary:end -->`` in ``bench/README.md``
(``--no-readme`` to leave it alone). Everything, with the detailed tables of each
bench in Markdown, also goes to ``bench/results/run_all-*.json`` / ``.md``, and each
bench's output to ``bench/results/run_all-*/NAME.log``.

The default sizes are the quick ones (about 10-12 minutes on 2 vCPUs, most of it
seeding and querying 1M users twice); ``--full`` uses each bench's own defaults
(about 25 minutes). Any size can be set (``--search-sizes``, ``--tp-runs``, ...), and
``--only``/``--skip`` choose benches. Needs ``wrk``, node + npm (the peer) and the
PostgreSQL 15 server binaries. Traffic goes to 127.0.0.1 only.

Run from the repository root:

    .venv/bin/python bench/run_all.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from login_bench import LABELS as LOGIN_LABELS

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
PY = ".venv/bin/python"  # how the commands are shown (run with sys.executable)
STEP_TIMEOUT = 40 * 60  # seconds; a bench that hangs is stopped, the others still run

NA = "\u2013"  # an en dash: no goal, or no figure
GOALS = {"client_credentials": 1.5, "login": 1.15, "verify": 1.5}


@dataclass
class Step:
    name: str
    script: str
    args: list[str]
    rc: int | None = None
    seconds: float = 0.0
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    result: dict[str, Any] | None = None
    result_path: str = ""
    log: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        if "command" in self.extra:  # a saved run's (--from-json)
            return str(self.extra["command"])
        return shlex.join([PY, f"bench/{self.script}", *self.args])


# -- the plan ---------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> list[Step]:
    def opt(flag: str, value: Any) -> list[str]:
        return [] if value is None else [flag, str(value)]

    steps = [
        Step("verify", "verify_bench.py", [*opt("--seconds", args.verify_seconds), "--json"]),
        Step("token_throughput", "token_throughput.py",
             opt("--runs", args.tp_runs) + opt("--duration", args.tp_duration)
             + opt("--warmup", args.tp_warmup) + ([] if args.tp_workers2 else ["--no-workers2"])),
        Step("login", "login_bench.py",
             opt("--rounds", args.login_rounds) + opt("--seconds", args.login_seconds)),
        Step("introspect", "introspect_bench.py",
             opt("--runs", args.introspect_runs) + opt("--duration", args.introspect_duration)
             + opt("--warmup", args.introspect_warmup)),
        Step("scale", "scale_bench.py",
             opt("--runs", args.scale_runs) + opt("--duration", args.scale_duration)
             + opt("--warmup", args.scale_warmup)),
        Step("db_roundtrips", "db_roundtrips.py", []),
        Step("user_search", "user_search.py",
             opt("--sizes", args.search_sizes) + opt("--cell-seconds", args.search_cell_seconds)
             + opt("--iterations", args.search_iterations)),
    ]
    names = [s.name for s in steps]
    for chosen in (args.only, args.skip):
        unknown = set(chosen) - set(names)
        if unknown:
            raise SystemExit(f"unknown bench(es) {sorted(unknown)}; known: {', '.join(names)}")
    return [s for s in steps if (not args.only or s.name in args.only) and s.name not in args.skip]


QUICK = {
    "verify_seconds": 1.0,
    "tp_runs": 3, "tp_duration": 5, "tp_warmup": 3,
    "login_rounds": 5, "login_seconds": 4.0,
    "introspect_runs": 5, "introspect_duration": 4, "introspect_warmup": 2,
    "scale_runs": 3, "scale_duration": 4, "scale_warmup": 2,
    "search_sizes": "1000000", "search_cell_seconds": 1.5, "search_iterations": None,
}  # fmt: skip
FULL = {  # each bench's own defaults, and the three sizes of the user search
    **{k: None for k in QUICK}, "tp_workers2": True, "search_sizes": "10000,100000,1000000",
}


# -- running ------------------------------------------------------------------------------

RESULT_LINE = re.compile(r"(?:figures written to|results in) (\S+\.json)")


def run_step(step: Step, logdir: Path) -> None:
    log = logdir / f"{step.name}.log"
    step.log = str(log.relative_to(ROOT))
    cmd = [sys.executable, str(BENCH / step.script), *step.args]
    print(f"\n=== {step.name}: {step.command}  (load {fmt_load(os.getloadavg())})", flush=True)
    step.load_start = os.getloadavg()
    step.extra["git"] = git_state()  # others may commit to src/ while the run goes on
    began = time.monotonic()
    lines: list[str] = []
    with log.open("w") as out:
        # its own session, so a hung bench can be interrupted with everything it started
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        assert proc.stdout is not None

        def overdue() -> None:
            step.error = f"stopped after {STEP_TIMEOUT} s"
            interrupt(proc)

        watchdog = threading.Timer(STEP_TIMEOUT, overdue)
        watchdog.start()
        try:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                lines.append(line)
                print(f"  | {line}", end="", flush=True)
        except KeyboardInterrupt:
            interrupt(proc)
            raise
        finally:
            watchdog.cancel()
            step.rc = proc.wait()
    step.seconds = time.monotonic() - began
    step.load_end = os.getloadavg()
    text = "".join(lines)
    try:
        if step.name == "verify":
            last = next(ln for ln in reversed(lines) if ln.startswith("{"))
            step.result = json.loads(last)
        else:
            found = RESULT_LINE.findall(text)
            if found:
                step.result_path = found[-1]
                step.result = json.loads((ROOT / found[-1]).read_text())
    except (StopIteration, OSError, ValueError) as exc:
        step.error = step.error or f"no figures: {exc!r}"
    if step.result is None and not step.error:
        step.error = f"exited {step.rc} without figures; see {step.log}"
    status = "ok" if step.result is not None else f"FAILED: {step.error}"
    print(f"=== {step.name}: {step.seconds:.0f} s, rc {step.rc}, {status}", flush=True)


def interrupt(proc: subprocess.Popen[str]) -> None:
    """SIGINT first (the benches stop their servers in ``finally``), then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # the session this script started, by its id
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- the machine --------------------------------------------------------------------------


def sh(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), "?")
    pg = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    peer = BENCH / ".peer" / "node_modules" / "oidc-provider" / "package.json"
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "postgresql": sh(str(pg[-1]), "--version").removeprefix("postgres (PostgreSQL) ")
        if pg else "-",
        "node": sh("node", "--version"),
        "oidc-provider": json.loads(peer.read_text())["version"] if peer.exists() else "-",
        "wrk": sh("wrk", "-v").split(" [")[0].removeprefix("wrk "),
        **{p: pkg(p) for p in ("uvicorn", "uvloop", "SQLAlchemy", "aiosqlite", "asyncpg",
                               "cryptography", "PyJWT", "joserfc", "argon2-cffi")},
    }


def git_state() -> dict[str, Any]:
    head = sh("git", "-C", str(ROOT), "log", "-1", "--format=%h %cI %s")
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True, check=False).stdout.split("\n")
    return {"head": head.split(" ", 1)[0], "head_line": head,
            "src_uncommitted": [ln[3:] for ln in dirty if ln.strip()]}


def fmt_load(load: tuple[float, ...] | list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


# -- the summary ----------------------------------------------------------------------------


def n0(x: float) -> str:
    return f"{x:,.0f}"


def ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


Row = tuple[str, str, str, str, str]  # benchmark, command, figure, goal, met


def rows_token(step: Step) -> list[Row]:
    res = {r["server"]: r for r in step.result["results"]}  # type: ignore[index]
    b, p = res["bastion"], res["oidc-provider"]
    p50 = sorted(r["p50_ms"] for r in b["runs"])[len(b["runs"]) // 2]
    p99 = sorted(r["p99_ms"] for r in b["runs"])[len(b["runs"]) // 2]
    fig = (f"{n0(b['median_rps'])} req/s (p50 {ms(p50)} / p99 {ms(p99)} ms) vs oidc-provider "
           f"{step.result['machine']['oidc-provider']} {n0(p['median_rps'])} req/s: "  # type: ignore[index]
           f"**{b['ratio']:.2f}x**")
    if "bastion --workers 2" in res:
        fig += f"; `--workers 2` {n0(res['bastion --workers 2']['median_rps'])} req/s"
    goal = GOALS["client_credentials"]
    return [("client credentials (1 worker, SQLite)", step.command, fig,
             f"≥ {goal}x oidc-provider", verdict(b["ratio"] >= goal))]


def rows_login(step: Step) -> list[Row]:
    r = step.result
    assert r is not None
    med = r["medians"]
    ratio = r["login_vs_hash_cpu"]
    goal = GOALS["login"]
    a = r["args"]
    # Results written before git 2c5ab24 judged the ratio of the two medians.
    how = "median of the rounds" if "login_vs_hash_cpu_rounds" in r else "ratio of the medians"
    one = [] if "login_1" not in med else [
        ("password login vs bare argon2id verify, one at a time", step.command,
         f"login {med['login_1']['cpu_ms']:.1f} ms CPU vs hash {med['hash_1']['cpu_ms']:.1f} ms: "
         f"**{r['login_vs_hash_cpu_1']:.2f}x** in CPU time ({how})",
         f"≤ {goal}x the hash", verdict(r["login_vs_hash_cpu_1"] <= goal))]
    return [
        ("refresh grant (1 worker, SQLite)", step.command,
         f"{n0(med['refresh']['per_second'])} req/s ({a['chains']} chains), "
         f"{med['refresh']['cpu_ms']:.2f} ms server CPU each", "none set", NA),
        ("password login vs bare argon2id verify", step.command,
         f"login {med['login']['cpu_ms']:.1f} ms CPU ({med['login']['per_second']:.1f}/s) vs "
         f"hash {med['hash']['cpu_ms']:.1f} ms ({med['hash']['per_second']:.1f}/s): "
         f"**{ratio:.2f}x** in CPU time, {how} ({r['login_vs_hash_rate']:.2f}x by rate)",
         f"≤ {goal}x the hash", verdict(ratio <= goal)),
        *one,
    ]


def rows_introspect(step: Step) -> list[Row]:
    r = step.result
    assert r is not None
    m = r["medians"]
    return [("introspection of a user access token (1 worker, SQLite)", step.command,
             f"{n0(m['rps'])} req/s (p50 {ms(m['p50_ms'])} / p99 {ms(m['p99_ms'])} ms), "
             f"{m['server_cpu_ms']:.2f} ms server CPU each", "none set", NA)]


def rows_verify(step: Step) -> list[Row]:
    out: list[Row] = []
    goal = GOALS["verify"]
    for alg, row in step.result.items():  # type: ignore[union-attr]
        floor = row["cryptography (floor)"]
        sdk = row["bastion verify_token"]
        cost = floor / sdk
        fig = (f"bastion {n0(sdk)}/s (**{cost:.2f}x** floor), PyJWT {n0(row['PyJWT decode'])}/s "
               f"({floor / row['PyJWT decode']:.2f}x), joserfc "
               f"{n0(row['joserfc decode+validate'])}/s "
               f"({floor / row['joserfc decode+validate']:.2f}x), raw floor {n0(floor)}/s")
        out.append((f"SDK `verify_token`, {alg}", step.command, fig, f"≤ {goal}x the raw floor",
                    verdict(cost <= goal)))
    return out


SEARCH_CASES = (("search few", "few"), ("search many", "many"), ("search 2-char", "2-char"),
                ("search 2-char-none", "none"), ("page", "page"), ("page deep", "deep"))
COUNT_CASES = (("count all", "all"), ("count few", "few"), ("count many", "many"),
               ("count 2-char", "2-char"))


def rows_search(step: Step) -> list[Row]:
    r = step.result
    assert r is not None
    size = max(c["size"] for c in r["cells"])
    cells = {(c["backend"], c["case"], c["mode"]): c for c in r["cells"] if c["size"] == size}
    backends = list(dict.fromkeys(c["backend"] for c in r["cells"]))
    out: list[Row] = []
    for backend in backends:
        for kind, cases in (("search", SEARCH_CASES), ("count", COUNT_CASES)):
            parts = []
            for case, label in cases:
                c = cells.get((backend, case, "http")) or cells.get((backend, case, "storage"))
                if c:
                    parts.append(f"{label} {ms(c['p50_ms'])}/{ms(c['p99_ms'])}")
            slowest = max((cells[k]["p50_ms"] for k in cells
                           if k[0] == backend and k[1] in dict(cases) and k[2] == "http"),
                          default=0.0)
            out.append((f"user {kind} at {size:,} users, {backend} (HTTP p50/p99 ms)",
                        step.command, " · ".join(parts),
                        "\"fast at 1M\" (no figure set)",
                        f"slowest p50 {ms(slowest)} ms"))
    return out


def rows_scale(step: Step) -> list[Row]:
    r = step.result
    assert r is not None
    out: list[Row] = []
    for grant in ("client_credentials", "refresh_token"):
        for backend in ("sqlite", "postgresql"):
            rows = {x["workers"]: x for x in r["results"]
                    if x["grant"] == grant and x["backend"] == backend}
            if 1 not in rows or 2 not in rows:
                continue
            one, two = rows[1], rows[2]
            out.append((f"{grant.replace('_', ' ')}, workers 1 vs 2, {backend}", step.command,
                        f"{n0(one['median_rps'])} → {n0(two['median_rps'])} req/s: "
                        f"**{two['median_round_ratio']:.2f}x** (p99 {ms(one['p99_ms'])} → "
                        f"{ms(two['p99_ms'])} ms)", "none set (2 vCPUs shared with the load)",
                        NA))
    return out


def rows_roundtrips(step: Step) -> list[Row]:
    r = step.result
    assert r is not None
    by = {(x["backend"], x["case"]): x for x in r["rows"]}
    backend = "postgresql" if any(b == "postgresql" for b, _ in by) else "sqlite"
    parts = []
    for case in ("password", "refresh_token", "introspect access token", "userinfo",
                 "client_credentials (cold cache)"):
        x = by.get((backend, case))
        if x:
            wire = f", {x['wire']:g} round trips" if backend == "postgresql" else ""
            parts.append(f"{case}: {x['statements']:g} statements, {x['begins']:g} "
                         f"transactions{wire}")
    return [(f"database work per request ({backend})", step.command, "; ".join(parts),
             "fewer is better (none set)", NA)]


ROWS: dict[str, Callable[[Step], list[Row]]] = {
    "token_throughput": rows_token, "login": rows_login, "introspect": rows_introspect,
    "verify": rows_verify, "user_search": rows_search, "scale": rows_scale,
    "db_roundtrips": rows_roundtrips,
}
ORDER = ("token_throughput", "login", "introspect", "verify", "user_search", "scale",
         "db_roundtrips")


def summary(steps: list[Step], info: dict[str, Any], began: datetime, elapsed: float,
            load: tuple[Any, Any], git: tuple[dict[str, Any], dict[str, Any]]) -> str:
    by = {s.name: s for s in steps}
    rows: list[Row] = []
    for name in ORDER:
        s = by.get(name)
        if s is None:
            continue
        if s.result is None:
            rows.append((name, s.command, f"FAILED: {s.error} (log: `{s.log}`)", "", NA))
            continue
        try:
            rows += ROWS[name](s)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            rows.append((name, s.command, f"figures unreadable: {exc!r}", "", NA))
    g0, g1 = git
    src = ("src clean" if not g0["src_uncommitted"] else
           "plus uncommitted changes in " + ", ".join(f"`{p}`" for p in g0["src_uncommitted"]))
    if g1["head"] != g0["head"] or g1["src_uncommitted"] != g0["src_uncommitted"]:
        per_step = [f"{s.name} `{s.extra['git']['head']}`"
                    + ("+uncommitted src" if s.extra["git"]["src_uncommitted"] else "")
                    for s in steps if "git" in s.extra]
        src += ("; the tree changed during the run"
                + (", each bench started on: " + ", ".join(per_step) if per_step else "")
                + f"; at the end `{g1['head']}`"
                + ("+uncommitted src" if g1["src_uncommitted"] else ""))
    m = info
    lines = [
        START,
        "## Summary: every benchmark, one run, one machine",
        "",
        f"Produced by `{PY} bench/run_all.py` on {began:%Y-%m-%d} (started {began:%H:%M} UTC, "
        f"{elapsed / 60:.1f} minutes in all); each row's command is what it ran, from the "
        "repository root. Bastion at git "
        f"`{g0['head']}` ({src}). Machine: `nproc` {m['nproc']}, \"{m['cpu']}\", kernel "
        f"{m['kernel']}, Python {m['python']}, uvicorn {m['uvicorn']} + uvloop {m['uvloop']}, "
        f"SQLAlchemy {m['SQLAlchemy']}, SQLite {m['sqlite']}, PostgreSQL {m['postgresql']}, "
        f"aiosqlite {m['aiosqlite']}, asyncpg {m['asyncpg']}, cryptography {m['cryptography']}, "
        f"PyJWT {m['PyJWT']}, joserfc {m['joserfc']}, argon2-cffi {m['argon2-cffi']}, node "
        f"{m['node']}, oidc-provider {m['oidc-provider']}, wrk {m['wrk']}. Load average "
        f"(1/5/15 min) {fmt_load(load[0])} at the start and {fmt_load(load[1])} at the end: "
        "the VM is shared, so compare ratios within a run, not absolute figures across runs.",
        "",
        "| benchmark | command | figure (medians) | goal | met? |",
        "|---|---|---|---|---|",
    ]
    for bench, cmd, fig, goal, met in rows:
        lines.append(f"| {bench} | `{cmd}` | {fig} | {goal} | {met} |")
    lines += [
        "",
        "Per bench, wall time and load average (1 min) at its start → end: "
        + "; ".join(f"{s.name} {s.seconds:.0f} s, {s.load_start[0]:.1f} → {s.load_end[0]:.1f}"
                    for s in steps) + ".",
        "Goals come from the issues: client credentials ≥ 1.5x oidc-provider 9 (issue 2), "
        "SDK verification ≤ 1.5x the raw `cryptography` check (issue 3), login within 15% "
        "of the bare hash (issue 4), search and count \"fast at 1M users\" (issue 5, no "
        "figure). The sections below explain each bench; their tables carry this run's "
        "figures where the run re-measured them.",
        END,
    ]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    old = README.read_text()
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + text + rest.split(END, 1)[1]
    else:  # first time: after the title line
        title, _, body = old.partition("\n")
        new = f"{title}\n\n{text}\n{body}"
    README.write_text(new)


def details(steps: list[Step]) -> str:
    """Each bench's detailed table in Markdown, for the sections of the README."""
    out: list[str] = []
    by = {s.name: s for s in steps if s.result is not None}
    if "verify" in by:
        out += ["### verify", "", "| token | contender | ops/s | cost vs floor |",
                "|---|---|---:|---:|"]
        for alg, row in by["verify"].result.items():  # type: ignore[union-attr]
            floor = row["cryptography (floor)"]
            for name, ops in row.items():
                out.append(f"| {alg} | {name} | {n0(ops)} | {floor / ops:.2f}x |")
        out.append("")
    if "token_throughput" in by:
        out += ["### token_throughput", "", "| server | median req/s | vs oidc-provider | "
                "runs (req/s) | p50 / p99 (ms, median) |", "|---|---:|---:|---|---|"]
        for r in by["token_throughput"].result["results"]:  # type: ignore[index]
            p50 = sorted(x["p50_ms"] for x in r["runs"])[len(r["runs"]) // 2]
            p99 = sorted(x["p99_ms"] for x in r["runs"])[len(r["runs"]) // 2]
            out.append(f"| {r['server']} | {n0(r['median_rps'])} | {r['ratio']:.2f}x | "
                       + " ".join(f"{x:.0f}" for x in r["rps"]) + f" | {ms(p50)} / {ms(p99)} |")
        out.append("")
    if "login" in by:
        med = by["login"].result["medians"]  # type: ignore[index]
        out += ["### login", "", "| measurement | per second | CPU ms per operation |",
                "|---|---:|---:|"]
        for key, label in LOGIN_LABELS.items():
            if key in med:
                out.append(f"| {label} | {med[key]['per_second']:,.1f} | "
                           f"{med[key]['cpu_ms']:.2f} |")
        out.append("")
    if "introspect" in by:
        r = by["introspect"].result
        assert r is not None
        out += ["### introspect", "", "| run | req/s | p50 ms | p99 ms | server CPU ms/req |",
                "|---|---:|---:|---:|---:|"]
        for i, x in enumerate(r["runs"], 1):
            out.append(f"| {i} | {n0(x['rps'])} | {ms(x['p50_ms'])} | {ms(x['p99_ms'])} | "
                       f"{x['server_cpu_ms']:.2f} |")
        m = r["medians"]
        out += [f"| median | {n0(m['rps'])} | {ms(m['p50_ms'])} | {ms(m['p99_ms'])} | "
                f"{m['server_cpu_ms']:.2f} |", ""]
    if "scale" in by:
        out += ["### scale", "", "| grant | backend | workers | req/s | vs 1 worker | runs (req/s) "
                "| p50 ms | p99 ms | server CPU ms/req | PostgreSQL CPU ms/req |",
                "|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        for x in by["scale"].result["results"]:  # type: ignore[index]
            pg = f"{x['pg_cpu_ms']:.2f}" if x["pg_cpu_ms"] is not None else NA
            out.append(f"| {x['grant']} | {x['backend']} | {x['workers']} | "
                       f"{n0(x['median_rps'])} | {x['median_round_ratio']:.2f}x | "
                       + " ".join(f"{r['rps']:.0f}" for r in x["runs"])
                       + f" | {ms(x['p50_ms'])} | {ms(x['p99_ms'])} | "
                       f"{x['server_cpu_ms']:.2f} | {pg} |")
        out.append("")
    if "db_roundtrips" in by:
        rows = by["db_roundtrips"].result["rows"]  # type: ignore[index]
        on_pg = {x["case"]: x for x in rows if x["backend"] == "postgresql"}
        ref = [x for x in rows if x["backend"] == rows[0]["backend"]]
        out += ["### db_roundtrips", "", "| request | statements | transactions "
                "(commit/rollback) | pool checkouts | PostgreSQL round trips |",
                "|---|---:|---:|---:|---:|"]
        for x in ref:
            wire = on_pg[x["case"]]["wire"] if x["case"] in on_pg else None
            out.append(f"| {x['case']} | {x['statements']:g} | {x['begins']:g} "
                       f"({x['commits']:g}/{x['rollbacks']:g}) | {x['checkouts']:g} | "
                       f"{NA if wire is None else f'{wire:g}'} |")
        out.append("")
    if "user_search" in by:
        sys.path.insert(0, str(BENCH))
        import user_search  # only when there is something to print

        r = by["user_search"].result
        assert r is not None
        run = user_search.Run(started=r["started"], machine=r["machine"], args=r["args"],
                              seeds=r["seeds"],
                              cells=[user_search.Cell(**c) for c in r["cells"]])
        out += ["### user_search", "", user_search.seeds_table(run), "",
                user_search.table(run), ""]
    return "\n".join(out)


def rerender(args: argparse.Namespace) -> int:
    saved = json.loads(args.from_json.read_text())
    steps = []
    for x in saved["steps"]:
        step = Step(x["name"], "", [], rc=x["rc"], seconds=x["seconds"],
                    load_start=tuple(x["load_start"]), load_end=tuple(x["load_end"]),
                    result=x["result"], result_path=x["result_path"], log=x["log"],
                    error=x["error"])
        step.extra["command"] = x["command"]
        if x.get("git"):
            step.extra["git"] = x["git"]
        steps.append(step)
    text = summary(steps, saved["machine"], datetime.fromisoformat(saved["started"]),
                   saved["elapsed_s"], (saved["loadavg_start"], saved["loadavg_end"]),
                   (saved["git_start"], saved["git_end"]))
    print(text + "\n\n" + details(steps))
    if not args.no_readme:
        write_readme(text)
        print(f"summary written to {README.relative_to(ROOT)}")
    return 0


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="each bench's own default sizes (about 25 min) instead of quick ones")
    parser.add_argument("--only", default="", help="comma-separated bench names to run")
    parser.add_argument("--skip", default="", help="comma-separated bench names to skip")
    parser.add_argument("--no-readme", action="store_true", help="leave bench/README.md alone")
    parser.add_argument("--from-json", type=Path, metavar="RUN_ALL_JSON",
                        help="run nothing: summarize a saved bench/results/run_all-*.json again")
    sizes = parser.add_argument_group("sizes (default: quick; see --full)")
    sizes.add_argument("--verify-seconds", type=float)
    sizes.add_argument("--tp-runs", type=int)
    sizes.add_argument("--tp-duration", type=int)
    sizes.add_argument("--tp-warmup", type=int)
    sizes.add_argument("--tp-workers2", action="store_true", default=None,
                       help="also bastion --workers 2 in token_throughput")
    sizes.add_argument("--login-rounds", type=int)
    sizes.add_argument("--login-seconds", type=float)
    sizes.add_argument("--introspect-runs", type=int)
    sizes.add_argument("--introspect-duration", type=int)
    sizes.add_argument("--introspect-warmup", type=int)
    sizes.add_argument("--scale-runs", type=int)
    sizes.add_argument("--scale-duration", type=int)
    sizes.add_argument("--scale-warmup", type=int)
    sizes.add_argument("--search-sizes", help="e.g. 1000000 or 10000,100000,1000000")
    sizes.add_argument("--search-cell-seconds", type=float)
    sizes.add_argument("--search-iterations", type=int)
    args = parser.parse_args()
    for key, value in (FULL if args.full else QUICK).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.only = {x for x in args.only.split(",") if x}
    args.skip = {x for x in args.skip.split(",") if x}
    if args.from_json:
        return rerender(args)
    steps = plan(args)

    began = datetime.now(UTC)
    stamp = f"{began:%Y%m%dT%H%M%SZ}"
    logdir = RESULTS / f"run_all-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    git0 = git_state()
    load0 = os.getloadavg()
    t0 = time.monotonic()
    print(f"run_all {stamp}: {len(steps)} benches, git {git0['head']}, load {fmt_load(load0)}",
          flush=True)
    try:
        for step in steps:
            run_step(step, logdir)
    except KeyboardInterrupt:
        print("interrupted; summarizing what ran", file=sys.stderr)
    elapsed = time.monotonic() - t0
    load1 = os.getloadavg()
    info = machine()
    git1 = git_state()
    done = [s for s in steps if s.rc is not None]
    text = summary(done, info, began, elapsed, (load0, load1), (git0, git1))
    detail = details(done)
    (RESULTS / f"run_all-{stamp}.md").write_text(text + "\n\n" + detail + "\n")
    (RESULTS / f"run_all-{stamp}.json").write_text(json.dumps({
        "started": began.isoformat(timespec="seconds"), "elapsed_s": elapsed,
        "loadavg_start": load0, "loadavg_end": load1, "machine": info, "git_start": git0,
        "git_end": git1, "args": {k: (sorted(v) if isinstance(v, set) else v)
                                  for k, v in vars(args).items()},
        "steps": [{"name": s.name, "command": s.command, "rc": s.rc, "seconds": s.seconds,
                   "git": s.extra.get("git"),
                   "load_start": s.load_start, "load_end": s.load_end, "log": s.log,
                   "result_path": s.result_path, "error": s.error, "result": s.result}
                  for s in done]}, indent=2, default=str))
    print("\n" + text + "\n\n" + detail)
    if not args.no_readme:
        write_readme(text)
        print(f"summary written to {README.relative_to(ROOT)}")
    print(f"all figures in bench/results/run_all-{stamp}.json and .md; logs in "
          f"{logdir.relative_to(ROOT)}/")
    return 0 if all(s.result is not None for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
