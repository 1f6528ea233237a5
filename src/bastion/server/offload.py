"""Threads that run blocking calls (password hashing, SQLite) for the event loop.

``loop.run_in_executor`` chains a ``concurrent.futures.Future`` to an asyncio one and
costs about 80 µs of CPU a call on a 2-core VM; this is one lock handed over and one
``call_soon_threadsafe`` back, about half that. A password login makes one such call
(the hash); SQLite calls go through one only when they would wait or may scan.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class _Worker:
    """One thread's hand-over slot: ``wake`` is held until a call is put in ``job``."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.wake = threading.Lock()
        self.wake.acquire()

    def take(self) -> _Job | None:
        self.wake.acquire()
        job, self.job = self.job, None
        return job


class Offload:
    """``threads`` threads running calls, started on first use.

    A call goes to the thread that went idle last. argon2 takes its 19 MiB from the
    allocator of the thread that hashes, so a hash reuses the memory of that thread's
    previous hash, still in cache if that hash was the latest. Handing calls round
    the threads in turn (a shared queue's order) made each hash at low load start on
    the memory idle longest: 7-9% more CPU a hash (``bench/README.md``, Refresh
    and password login). Calls that find every thread busy wait in order.

    A call whose caller is cancelled still runs to its end (a transaction commits or
    not as a whole); its result is dropped.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._size, self._name = threads, name
        self._lock = threading.Lock()
        self._waiting: collections.deque[_Job | None] = collections.deque()
        self._idle: list[_Worker] = []  # a stack: the last to go idle is taken first
        self._threads: list[threading.Thread] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._threads:
            self._start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._submit((fn, args, future))
        return await future

    def close(self) -> None:
        """Stop the threads once the calls already waiting are done."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._submit(None)
        for t in threads:
            if t is not threading.current_thread():
                t.join()

    def _submit(self, job: _Job | None) -> None:
        with self._lock:
            if not self._idle:
                self._waiting.append(job)
                return
            worker = self._idle.pop()
        worker.job = job
        worker.wake.release()

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self._size:
                worker = _Worker()
                self._idle.append(worker)  # idle from the start: the first call is handed over
                t = threading.Thread(target=self._work, args=(worker,), daemon=True,
                                     name=f"{self._name}_{len(self._threads)}")
                t.start()
                self._threads.append(t)

    def _work(self, me: _Worker) -> None:
        job = me.take()
        while job is not None:
            fn, args, future = job
            try:
                settle = functools.partial(_settle, future, _succeed, fn(*args))
            except BaseException as exc:  # handed to the caller, raised there
                settle = functools.partial(_settle, future, _fail, exc)
            job = self._next(me, settle)

    def _next(self, me: _Worker, settle: Callable[[], None]) -> _Job | None:
        """Settle the call just run, then take a waiting call or wait for one. Going idle
        before settling lets the caller's next call, made as soon as it has this
        result, come back to this thread."""
        with self._lock:
            queued = bool(self._waiting)
            job = self._waiting.popleft() if queued else None
            if not queued:
                self._idle.append(me)
        settle()
        return job if queued else me.take()


def _settle(future: asyncio.Future[Any], how: Callable[[asyncio.Future[Any], Any], None],
            value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
        future.get_loop().call_soon_threadsafe(how, future, value)


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
