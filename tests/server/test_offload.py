"""The threads that run blocking calls for the event loop (hashing, SQLite)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bastion.server.offload import Offload


async def test_a_call_runs_on_a_thread_and_returns_its_result() -> None:
    pool = Offload(1, "t")
    try:
        name = await pool.run(lambda: threading.current_thread().name)
        assert name == "t_0"
        assert await pool.run(pow, 2, 10) == 1024
    finally:
        pool.close()


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    pool = Offload(1, "t")
    try:
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 // 0)
        assert await pool.run(lambda: "still serving") == "still serving"
    finally:
        pool.close()


async def test_calls_run_on_every_thread_at_once() -> None:
    pool = Offload(2, "t")
    both = threading.Barrier(2, timeout=10)  # passes only if two calls run together
    try:
        names = await asyncio.gather(*(pool.run(lambda: (both.wait(),
                                                         threading.current_thread().name)[1])
                                       for _ in range(2)))
        assert sorted(names) == ["t_0", "t_1"]
    finally:
        pool.close()


async def test_a_cancelled_caller_leaves_the_call_to_finish() -> None:
    pool = Offload(1, "t")
    started, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)
        done.set()

    try:
        task = asyncio.ensure_future(pool.run(slow))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await pool.run(lambda: "next") == "next"  # runs after slow() ended
        assert done.is_set()
    finally:
        pool.close()


async def test_close_finishes_queued_calls_and_a_later_call_starts_again() -> None:
    pool = Offload(1, "t")
    calls = [asyncio.ensure_future(pool.run(pow, 3, n)) for n in range(3)]
    await asyncio.sleep(0)
    await asyncio.to_thread(pool.close)
    assert [await c for c in calls] == [1, 3, 9]
    assert await pool.run(pow, 2, 3) == 8
    pool.close()


async def test_a_call_goes_to_the_thread_that_went_idle_last() -> None:
    # A hash reuses its thread's memory of the previous hash, warm only if that was the
    # latest: one call at a time must keep to one thread, not go round them in turn.
    pool = Offload(3, "t")
    try:
        names = [await pool.run(lambda: threading.current_thread().name) for _ in range(12)]
        assert len(set(names)) == 1
    finally:
        pool.close()
