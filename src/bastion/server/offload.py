"""Threads that run blocking calls (password hashing, SQLite) for the event loop.

``loop.run_in_executor`` chains a ``concurrent.futures.Future`` to an asyncio one and
costs about 80 µs of CPU a call on a 2-core VM; this is one queue put and one
``call_soon_threadsafe`` back, about half that. A password login makes one such call
(the hash); SQLite calls go through one only when they would wait or may scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class Offload:
    """``threads`` threads taking calls from one queue, started on first use.

    A call whose caller is cancelled still runs to its end (a transaction commits or
    not as a whole); its result is dropped.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._size, self._name = threads, name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._threads:
            self._start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((fn, args, future))
        return await future

    def close(self) -> None:
        """Stop the threads once the calls already queued are done."""
        with self._lock:
            threads, self._threads = self._threads, []
            for _ in threads:
                self._queue.put(None)
        for t in threads:
            if t is not threading.current_thread():
                t.join()

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self._size:
                t = threading.Thread(target=self._work, daemon=True,
                                     name=f"{self._name}_{len(self._threads)}")
                t.start()
                self._threads.append(t)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            fn, args, future = job
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the caller, raised there
                _settle(future, _fail, exc)
            else:
                _settle(future, _succeed, result)


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
