"""Copying and pickling the dataclasses bound to a client (``TokenSet``, the models).

A copy keeps the client it was made from: its calls go where the original's do. A
pickle leaves the client out (sessions and caches pickle their values) and keeps
the fields by name, so one pickled by an earlier release, before a field was added,
still loads: the new field takes its default.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

__all__ = ["BoundCopy"]


class BoundCopy:
    """Mixed into a dataclass with a ``client`` field (a frozen one with slots also
    needs ``__getstate__ = BoundCopy.__getstate__``, and the same for ``__setstate__``,
    in its own body: the dataclass would write its own, with the client)."""

    __slots__ = ()

    def __copy__(self) -> Any:
        return dataclasses.replace(self)  # type: ignore[type-var]

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return dataclasses.replace(self, **{  # type: ignore[type-var]
            f.name: copy.deepcopy(getattr(self, f.name), memo)
            for f in dataclasses.fields(self) if f.init and f.name != "client"})  # type: ignore[arg-type]

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name)
                for f in dataclasses.fields(self) if f.name != "client"}  # type: ignore[arg-type]

    def __setstate__(self, state: dict[str, Any] | list[Any]) -> None:
        known = dataclasses.fields(self)  # type: ignore[arg-type]
        # A list: the positional state of releases before this one.
        given = dict(zip((f.name for f in known), state, strict=False)) \
            if isinstance(state, list) else state
        for f in known:
            if f.name != "client" and f.name in given:
                value = given[f.name]
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = None
            object.__setattr__(self, f.name, value)
