"""The app's callbacks, which may be plain functions or ``async def`` ones.

Where the SDK can await (an async shell), an awaitable answer is awaited. Where it
cannot (a sync shell, a plain protocol method), an awaitable answer is refused:
left alone, its coroutine would never run, and what it was to do (store the
rotated tokens, claim a state) silently would not happen.
"""

from __future__ import annotations

import inspect

from .exceptions import ConfigurationError

__all__ = ["awaited", "not_awaitable"]


async def awaited(answer: object) -> object:
    """``answer``, awaited if it is an awaitable."""
    if inspect.isawaitable(answer):
        return await answer
    return answer


def not_awaitable(answer: object, what: str, advice: str) -> object:
    """``answer``, which ``what`` returned; ``ConfigurationError`` (saying ``advice``)
    if it is an awaitable, closed first: no "never awaited" warning follows."""
    if inspect.isawaitable(answer):
        close = getattr(answer, "close", None)
        if callable(close):
            close()
        raise ConfigurationError(
            f"{what} returned an awaitable: the SDK calls it and does not await it ({advice})")
    return answer
