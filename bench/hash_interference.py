"""How much dearer the argon2id hash gets when other work shares the cores with it.

No server, no database, no HTTP: one process, the server's default argon2id
parameters, two hashing threads. Three measurements per round, in CPU time per
hash read with ``time.thread_time()`` in the hashing threads:

- **bare**: two plain threads hashing back to back (what ``login_bench.py`` calls the
  bare hash);
- **pool**: the server's hashing pool (``bastion.server.offload.Offload``, two
  threads) fed by two asyncio workers that do nothing else;
- **pool + Python work**: the same, each worker doing ``--work-ms`` of plain Python
  (JSON encoding and sorting of small dicts) around every hash, which is about what
  the server does for a login besides the hash.

It shows that part of the gap between a login and the bare hash is the hash itself
running slower once anything else runs on the same cores, whatever that work is.

Run from the repository root (about 40 s):

    .venv/bin/python bench/hash_interference.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time

from argon2 import PasswordHasher, Type

from bastion.server.offload import Offload
from bastion.server.settings import Settings

_DEFAULTS = Settings()
HASHER = PasswordHasher(time_cost=_DEFAULTS.password_hash_time_cost,
                        memory_cost=_DEFAULTS.password_hash_memory_kib,
                        parallelism=_DEFAULTS.password_hash_parallelism, type=Type.ID)
STORED = HASHER.hash("bench password")
BLOB = [{f"k{i}": list(range(20)), "s": "x" * 50} for i in range(300)]


class Tally:
    def __init__(self) -> None:
        self.cpu, self.count, self.lock = 0.0, 0, threading.Lock()

    def verify(self) -> None:
        start = time.thread_time()
        HASHER.verify(STORED, "bench password")
        spent = time.thread_time() - start
        with self.lock:
            self.cpu += spent
            self.count += 1

    def ms_per_hash(self) -> float:
        return self.cpu / self.count * 1e3


def python_work(ms: float) -> None:
    end = time.thread_time() + ms / 1e3
    while time.thread_time() < end:
        json.dumps(BLOB[:200])
        sorted(BLOB, key=lambda d: d["s"])


def bare(seconds: float) -> float:
    tally = Tally()
    deadline = time.perf_counter() + seconds

    def hash_on() -> None:
        while time.perf_counter() < deadline:
            tally.verify()

    threads = [threading.Thread(target=hash_on) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally.ms_per_hash()


async def pooled(seconds: float, work_ms: float) -> float:
    tally, pool = Tally(), Offload(2, "argon2")
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            python_work(work_ms / 2)
            await pool.run(tally.verify)
            python_work(work_ms / 2)

    await asyncio.gather(worker(), worker())
    pool.close()
    return tally.ms_per_hash()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--work-ms", type=float, default=2.0,
                        help="Python work around each hash, per worker")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {"bare": [], "pool": [], "pool + Python work": []}
    for n in range(args.rounds):
        rows["bare"].append(bare(args.seconds))
        rows["pool"].append(asyncio.run(pooled(args.seconds, 0.0)))
        rows["pool + Python work"].append(asyncio.run(pooled(args.seconds, args.work_ms)))
        print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in rows.items()),
              flush=True)
    base = statistics.median(rows["bare"])
    print(f"\nargon2id m={_DEFAULTS.password_hash_memory_kib} KiB "
          f"t={_DEFAULTS.password_hash_time_cost}; 2 hashing threads; "
          f"{args.work_ms:g} ms of Python work per hash; medians of {args.rounds} rounds\n")
    print("| hashing | CPU ms per hash | vs bare |")
    print("|---|---:|---:|")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {med / base:.3f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
