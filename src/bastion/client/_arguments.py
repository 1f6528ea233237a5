"""The type check of the public calls' arguments.

A plausible wrong argument (``None`` for a token, a number for a scope) must raise
``ConfigurationError`` saying what was expected, not an ``AttributeError`` or
``TypeError`` from deep inside: the docs promise that only ``BastionError`` escapes.
"""

from __future__ import annotations

from collections.abc import Collection
from types import UnionType
from typing import TypeVar

from .exceptions import ConfigurationError

__all__ = ["expect", "number", "scope_text"]

T = TypeVar("T")


def expect(value: T, kinds: type | UnionType | tuple[type, ...], what: str) -> T:
    """``value``, if it is one of ``kinds``; else ``ConfigurationError``: ``what``
    (say "scope must be a string or a collection of strings") and the type given."""
    if not isinstance(value, kinds):
        raise ConfigurationError(f"{what}, not {type(value).__name__}")
    return value


def number(value: object, what: str) -> int:
    """``value`` if it is an ``int`` (``True`` is not one here); else
    ``ConfigurationError``: "``what`` must be an integer"."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{what} must be an integer, not {type(value).__name__}")
    return value


def scope_text(scope: str | Collection[str] | None) -> str | None:
    """A scope given as text or as names, as the text sent (``None`` if empty)."""
    if scope is None or isinstance(scope, str):
        return scope or None
    what = "scope must be a string or a collection of strings"
    return " ".join(expect(name, str, what) for name in expect(scope, Collection, what)) or None
