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

Then, one hash at a time (a lightly loaded server), in CPU time per hash:

- **one thread**: one plain thread hashing back to back;
- **two threads in turn**: two plain threads taking the hashes alternately, which is
  what a pool handing calls round its threads in order does;
- **pool, one call at a time**: the server's pool of two threads, fed by one worker.

argon2 takes its memory (19 MiB) from the allocator of the thread that hashes, and
the next hash on that thread gets the same memory back, still in cache if it was
used last. Taking turns makes every hash start on the memory idle longest;
``Offload`` hands a call to the thread that went idle last, so its figure should be
the one thread's.

Run from the repository root (about 75 s):

    .venv/bin/python bench/hash_interference.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from typing import Any

from argon2 import PasswordHasher, Type

from bastion.server.offload import Offload
from bastion.server.settings import Settings

_DEFAULTS = Settings()
HASHER = PasswordHasher(time_cost=_DEFAULTS.password_hash_time_cost,
                        memory_cost=_DEFAULTS.password_hash_memory_kib,
                        parallelism=_DEFAULTS.password_hash_parallelism, type=Type.ID)
STORED = HASHER.hash("bench password")
BLOB: list[dict[str, Any]] = [{f"k{i}": list(range(20)), "s": "x" * 50} for i in range(300)]


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


async def pooled(seconds: float, work_ms: float, callers: int = 2) -> float:
    tally, pool = Tally(), Offload(2, "argon2")
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            python_work(work_ms / 2)
            await pool.run(tally.verify)
            python_work(work_ms / 2)

    await asyncio.gather(*(worker() for _ in range(callers)))
    pool.close()
    return tally.ms_per_hash()


def in_turn(seconds: float, threads: int) -> float:
    """One hash at a time, on ``threads`` plain threads taking turns."""
    tally = Tally()
    deadline = time.perf_counter() + seconds
    turns = [threading.Semaphore(0) for _ in range(threads)]

    def hash_on(i: int) -> None:
        while True:
            turns[i].acquire()
            if time.perf_counter() >= deadline:
                turns[(i + 1) % threads].release()  # pass the end on, so every thread stops
                return
            tally.verify()
            turns[(i + 1) % threads].release()

    workers = [threading.Thread(target=hash_on, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    turns[0].release()
    for t in workers:
        t.join()
    return tally.ms_per_hash()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--work-ms", type=float, default=2.0,
                        help="Python work around each hash, per worker")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {"bare": [], "pool": [], "pool + Python work": []}
    alone: dict[str, list[float]] = {"one thread": [], "two threads in turn": [],
                                     "pool, one call at a time": []}
    for n in range(args.rounds):
        rows["bare"].append(bare(args.seconds))
        rows["pool"].append(asyncio.run(pooled(args.seconds, 0.0)))
        rows["pool + Python work"].append(asyncio.run(pooled(args.seconds, args.work_ms)))
        alone["one thread"].append(in_turn(args.seconds, 1))
        alone["two threads in turn"].append(in_turn(args.seconds, 2))
        alone["pool, one call at a time"].append(asyncio.run(pooled(args.seconds, 0.0, 1)))
        print(f"round {n + 1}: " + ", ".join(
            f"{k} {v[-1]:.2f} ms" for k, v in (rows | alone).items()), flush=True)
    print(f"\nargon2id m={_DEFAULTS.password_hash_memory_kib} KiB "
          f"t={_DEFAULTS.password_hash_time_cost}; 2 hashing threads; "
          f"{args.work_ms:g} ms of Python work per hash; medians of {args.rounds} rounds")
    for title, table, base in (("two hashes at a time", rows, "bare"),
                               ("one hash at a time", alone, "one thread")):
        print(f"\n{title}\n\n| hashing | CPU ms per hash | vs {base} |\n|---|---:|---:|")
        ref = statistics.median(table[base])
        for name, values in table.items():
            med = statistics.median(values)
            print(f"| {name} | {med:.2f} | {med / ref:.3f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
