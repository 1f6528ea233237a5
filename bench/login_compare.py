"""Password-login CPU of several versions of the server, interleaved in one run.

The login goal (``login_bench.py``: a login costs at most 1.15x the bare argon2id
hash) sits within the noise of this shared VM, where the figure of one version
drifts by a few percent from one run to the next. To tell whether a change helps,
this starts one ``bastion serve`` per version (a checkout's ``src`` directory put
first on ``PYTHONPATH``, e.g. a ``git worktree`` of an older commit; ``.`` for this
tree) and measures them round by round on the same load: each round the bare hash
(as ``login_bench.py`` does), then every version's logins, in alternating order.

``--cheap-hash`` swaps each bench user's stored hash for an argon2id hash of the
smallest cost (8 KiB, one pass) right in the database: the server then spends on a
login everything but the hash, which varies by about 3% between runs instead of the
hash's 5%. That figure drove the storage changes of the login path.

Run from the repository root, e.g. (about 30 s a round):

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/login_compare.py before=/tmp/before/src now=.
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
from login_bench import PASSWORD, Server, bare_hash, login


def start(name: str, src: str, data_dir: Path, cheap_hash: bool, users: int) -> Server:
    saved = dict(os.environ)
    if src != ".":
        os.environ["PYTHONPATH"] = str(Path(src).resolve())
    try:
        server = Server(data_dir, users=users)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if cheap_hash:
        cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
        db = sqlite3.connect(data_dir / "bastion.db", timeout=30)
        with db:
            db.execute("UPDATE users SET password_hash = ?", (cheap.hash(PASSWORD),))
        db.close()
    print(f"{name}: {server.url} ({src})", flush=True)
    return server


async def compare(servers: dict[str, Server], rounds: int, seconds: float, concurrency: int,
                  cheap_hash: bool) -> None:
    figures: dict[str, list[float]] = {name: [] for name in servers}
    hashes: list[float] = []
    clients = {name: httpx2.AsyncClient(base_url=s.url, timeout=30) for name, s in servers.items()}
    try:
        for name, server in servers.items():  # warm up
            await login(server, clients[name], concurrency, 2.0)
        for r in range(rounds):
            if not cheap_hash:
                hashes.append(bare_hash(concurrency, seconds)["cpu_ms"])
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                done = await login(servers[name], clients[name], concurrency, seconds)
                figures[name].append(done["cpu_ms"])
            row = {name: round(f[-1], 3) for name, f in figures.items()}
            print(f"round {r + 1}: CPU ms per login {row}"
                  + (f", bare hash {hashes[-1]:.2f}" if hashes else ""), flush=True)
    finally:
        for client in clients.values():
            await client.aclose()
    print()
    for name, f in figures.items():
        line = f"{name}: median {statistics.median(f) * 1000:.0f} µs of server CPU per login"
        if hashes:
            ratios = [a / b for a, b in zip(f, hashes, strict=True)]
            line = (f"{name}: {statistics.median(ratios):.3f}x the bare hash, the median of "
                    f"the rounds ({', '.join(f'{x:.3f}' for x in ratios)})")
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="+", metavar="NAME=SRC",
                        help="a name and the src directory of a checkout ('.' for this tree)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--cheap-hash", action="store_true",
                        help="measure everything but the hash (see above)")
    args = parser.parse_args()
    versions = dict(v.split("=", 1) for v in args.versions)
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for name, src in versions.items():
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            servers[name] = start(name, src, data_dir, args.cheap_hash, args.concurrency)
            stack.callback(servers[name].stop)
        asyncio.run(compare(servers, args.rounds, args.seconds, args.concurrency,
                            args.cheap_hash))


if __name__ == "__main__":
    main()
