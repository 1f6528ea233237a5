"""Where a password login's CPU goes besides the hash: the event loop, with the hash
real, cheap, or cheap after an idle wait as long as the real hash.

One login at a time, three ``bastion serve`` processes measured in turn each round:

- **real**: the default argon2id parameters, as ``login_bench.py``;
- **cheap**: the bench user's stored hash swapped for one of the smallest cost
  (8 KiB, one pass), so logins run back to back and the server is never idle;
- **idle**: the cheap hash, but the hashing thread first sleeps as long as the real
  hash takes (``time.sleep`` patched into argon2-cffi's verify by a ``sitecustomize``
  on the server's ``PYTHONPATH``): the same pauses as **real**, without argon2's
  19 MiB going through the caches.

For each it reads the CPU time of the server's main thread (the event loop: HTTP,
client authentication, storage, token signing) and of its other threads (the
hashing and SQLite threads) from ``/proc/<pid>/task``. The event loop does the same
work in all three; what it costs in **idle** over **cheap** is what the pauses cost,
whatever the code does (on the VMs measured, the core comes back from an idle spell
with cold caches). Prints medians over the rounds.

Run from the repository root (about 80 s with the defaults):

    .venv/bin/python bench/login_breakdown.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import tempfile
from pathlib import Path

import httpx2
from argon2 import PasswordHasher, Type
from login_bench import PASSWORD, TICKS, Server, bare_hash, login

SITECUSTOMIZE = '''\
import os, time
import argon2
_verify = argon2.PasswordHasher.verify
_pause = float(os.environ["BENCH_IDLE_SECONDS"])
def verify(self, hash, password):
    time.sleep(_pause)
    return _verify(self, hash, password)
argon2.PasswordHasher.verify = verify
'''


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def start(data_dir: Path, mode: str, pause: float) -> Server:
    saved = dict(os.environ)
    if mode == "idle":
        (data_dir / "patch").mkdir()
        (data_dir / "patch" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(data_dir / "patch"), os.environ.get("PYTHONPATH")]))
        os.environ["BENCH_IDLE_SECONDS"] = str(pause)
    try:
        server = Server(data_dir, users=1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if mode != "real":
        cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
        db = sqlite3.connect(data_dir / "bastion.db", timeout=30)
        with db:
            db.execute("UPDATE users SET password_hash = ?", (cheap.hash(PASSWORD),))
        db.close()
    return server


async def measure(servers: dict[str, Server], rounds: int, seconds: float,
                  ) -> tuple[dict[str, list[tuple[float, float, float]]], list[float]]:
    """Per mode and round: logins per second, event-loop and other-thread CPU ms a
    login; and each round's bare hash, CPU ms."""
    figures: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in servers}
    hashes: list[float] = []
    clients = {m: httpx2.AsyncClient(base_url=s.url, timeout=30) for m, s in servers.items()}
    try:
        for mode, server in servers.items():
            await login(server, clients[mode], 1, 2.0)  # warm up
        for r in range(rounds):
            hashes.append(bare_hash(1, seconds)["cpu_ms"])
            for mode in (list(servers) if r % 2 == 0 else list(reversed(servers))):
                pid = servers[mode].proc.pid
                before = thread_cpu(pid)
                done = await login(servers[mode], clients[mode], 1, seconds)
                after = thread_cpu(pid)
                n = done["per_second"] * seconds
                loop = (after[pid] - before.get(pid, 0.0)) / n * 1e3
                rest = sum(v - before.get(t, 0.0) for t, v in after.items() if t != pid) / n * 1e3
                figures[mode].append((done["per_second"], loop, rest))
            print(f"round {r + 1}: bare hash {hashes[-1]:.2f} ms, " + ", ".join(
                f"{m} loop {f[-1][1]:.2f} ms" for m, f in figures.items()), flush=True)
    finally:
        for client in clients.values():
            await client.aclose()
    return figures, hashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args()
    hashed = bare_hash(1, 3.0)
    pause = 1 / hashed["per_second"]  # the real hash's wall time, one at a time
    print(f"bare hash: {hashed['cpu_ms']:.2f} ms CPU, {pause * 1e3:.2f} ms wall", flush=True)
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for mode in ("real", "cheap", "idle"):
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            servers[mode] = start(data_dir, mode, pause)
            stack.callback(servers[mode].stop)
        figures, hashes = asyncio.run(measure(servers, args.rounds, args.seconds))
    print(f"\nbare argon2id verify, one at a time: {statistics.median(hashes):.2f} ms CPU "
          f"(median of the rounds)\n")
    print("| hash | logins per second | event loop, CPU ms a login | other threads |")
    print("|---|---:|---:|---:|")
    for mode, rows in figures.items():
        rate, loop, rest = (statistics.median(col) for col in zip(*rows, strict=True))
        print(f"| {mode} | {rate:,.1f} | {loop:.2f} | {rest:.2f} |")


if __name__ == "__main__":
    main()
