"""Single-flight: one request on the wire for every caller that needs the same thing.

A refresh token is single use (rotation, RFC 9700 section 4.14.2: a reused one
revokes the whole token family), and a burst of tokens naming an unknown ``kid``
must not become a burst of JWKS requests. So such work runs as a *flight*, keyed
by what it fetches: the first caller leads (its flow sends the request), and
callers arriving before it lands follow it and get the same result, or a copy of
the same exception (see ``_own_copy``).

The core never blocks: a following flow yields ``Wait(flight)`` instead of a
request, and the shell that drives it waits on a primitive of its own kind
(``wait_in_thread``: a ``threading.Event``; ``wait_in_task``: an ``anyio.Event``)
before resuming it. No lock is held while a request is sent. A task that stops
waiting (cancelled) takes its event back, and a waiter's trouble (its loop closed)
never keeps the leader from landing or the other waiters from waking.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import threading
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from .exceptions import BastionError

__all__ = ["Flight", "Flights", "Wait", "wait_in_task", "wait_in_thread"]


class _Event(Protocol):
    def set(self) -> None: ...


E = TypeVar("E", bound=_Event)
T = TypeVar("T")


class Flight:
    """One piece of work in progress, and its outcome once it has landed."""

    __slots__ = ("_events", "_lock", "_traceback", "error", "landed", "result")

    def __init__(self) -> None:
        self.landed = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._traceback: TracebackType | None = None
        self._events: list[_Event] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Flight(landed={self.landed})"

    def event(self, make: Callable[[], E]) -> E | None:
        """A new event, set when the flight lands; ``None`` if it has landed."""
        with self._lock:
            if self.landed:
                return None
            event = make()
            self._events.append(event)
            return event

    def forget(self, event: _Event) -> None:
        """Stop waking ``event``: its waiter has gone (a cancelled task)."""
        with self._lock:
            if event in self._events:
                self._events.remove(event)

    def land(self, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            self.result, self.error, self.landed = result, error, True
            # Where the error was raised, as it is now: the leader's raise goes on to
            # add frames of its own (in front: this chain stays as it is).
            self._traceback = None if error is None else error.__traceback__
            events, self._events = self._events, []
        _wake(events)

    def outcome(self) -> Any:
        if self.error is not None:
            raise _own_copy(self.error, self._traceback)
        return self.result


def _wake(events: list[_Event]) -> None:
    """Set every event, even when setting one fails: one waiter's trouble must not
    leave the others waiting forever. The first failure is raised once all are set."""
    failures: list[Exception] = []
    for event in events:
        try:
            event.set()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def _own_copy(error: BaseException, traceback: TracebackType | None) -> BaseException:
    """``error`` for one more caller: a copy of a ``BastionError`` (its own notes and
    headers, the same chained exceptions) that starts from ``traceback``, the frames
    where the leader's error was raised; raising it adds only this caller's frames.
    One shared object raised by every caller grew one traceback with all their
    frames, mixed other threads' frames into each one's log, and kept them alive.
    Another exception is shared: nothing says how to copy it faithfully."""
    if not isinstance(error, BastionError):
        return error
    return copy.copy(error).with_traceback(traceback)


class Wait:
    """Yielded by a flow instead of a request: resume me once ``flight`` has landed."""

    __slots__ = ("flight",)

    def __init__(self, flight: Flight) -> None:
        self.flight = flight

    def __repr__(self) -> str:
        return f"Wait({self.flight!r})"


class Flights:
    """The flights in progress, by key. The lock guards the map only, never I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: Hashable, settled: Callable[[], Any] = lambda: None) -> tuple[Flight, bool]:
        """``(flight, lead)``: the flight in progress for ``key`` to follow; else,
        if ``settled()`` has an answer (not ``None``; an exception is raised to the
        caller), a landed flight holding it; else a new flight that the caller
        leads and must ``land``."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            answer = settled()
            flight = Flight()
            if isinstance(answer, BaseException):
                flight.land(error=answer)
                return flight, False
            if answer is not None:
                flight.land(answer)
                return flight, False
            self._flights[key] = flight
            return flight, True

    def land(
        self,
        key: Hashable,
        flight: Flight,
        result: Any = None,
        error: BaseException | None = None,
        keep: Callable[[], object] | None = None,
    ) -> None:
        """End ``flight`` and wake its followers. ``keep`` (storing the outcome
        where ``join``'s ``settled`` will find it) runs under the same lock as
        ``settled``, before the flight leaves the map: no caller slips between."""
        with self._lock:
            if keep is not None:
                keep()
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.land(result, error)

    def locked(self, fn: Callable[[], T]) -> T:
        """``fn()`` under the lock ``settled`` and ``keep`` run under."""
        with self._lock:
            return fn()


def wait_in_thread(wait: Wait) -> None:
    """Block this thread until the flight has landed (``Client``)."""
    event = wait.flight.event(threading.Event)
    if event is not None:
        event.wait()


class _TaskEvent:
    """An ``anyio.Event`` that may be set from another thread: a flight led by a sync
    client (its auth serves an async httpx2 client too) lands in the leader's thread,
    and an event loop is not thread-safe, so the event is then set through the loop."""

    __slots__ = ("_call_soon", "_thread", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self._thread = threading.get_ident()
        self._call_soon = _hand_over()

    def set(self) -> None:
        if threading.get_ident() == self._thread:
            self.event.set()
        else:
            self._call_soon(self.event.set)


def _hand_over() -> Callable[[Callable[[], None]], None]:
    """How another thread runs a function in this event loop's thread. Once the loop
    has closed (an ``asyncio.run`` that ended), it does nothing: no task of that loop
    waits any more, and the thread landing a flight must not fail for it."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: anyio's (blocking) hand-over to the loop
        return functools.partial(_run_in_loop, anyio.lowlevel.current_token())
    return functools.partial(_call_soon, loop)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        if not loop.is_closed():
            raise


def _run_in_loop(token: anyio.lowlevel.EventLoopToken, fn: Callable[[], None]) -> None:
    with contextlib.suppress(anyio.RunFinishedError):
        anyio.from_thread.run_sync(fn, token=token)


async def wait_in_task(wait: Wait) -> None:
    """Suspend this task until the flight has landed (``AsyncClient``)."""
    waiting = wait.flight.event(_TaskEvent)
    if waiting is not None:
        try:
            await waiting.event.wait()
        finally:  # cancelled: not to be woken, its loop may be closed by then
            wait.flight.forget(waiting)
