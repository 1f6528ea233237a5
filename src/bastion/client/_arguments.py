"""The type check of the public calls' arguments.

A plausible wrong argument (``None`` for a token, a number for a scope) must raise
``ConfigurationError`` saying what was expected, not an ``AttributeError`` or
``TypeError`` from deep inside: the docs promise that only ``BastionError`` escapes.
"""

from __future__ import annotations

from types import UnionType
from typing import TypeVar

from .exceptions import ConfigurationError

__all__ = ["expect"]

T = TypeVar("T")


def expect(value: T, kinds: type | UnionType | tuple[type, ...], what: str) -> T:
    """``value``, if it is one of ``kinds``; else ``ConfigurationError``: ``what``
    (say "scope must be a string or a collection of strings") and the type given."""
    if not isinstance(value, kinds):
        raise ConfigurationError(f"{what}, not {type(value).__name__}")
    return value
