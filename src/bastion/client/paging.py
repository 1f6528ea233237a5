"""``Page``: one page of a listing, and how many items match over all pages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

__all__ = ["Page"]

T = TypeVar("T")


class Page(list[T]):
    """The items of one page (it *is* a list) with ``total``, the count over all
    pages, so ``len(page) < page.total`` means there are more to fetch, and, for
    listings that page by cursor, ``next_cursor``: what to pass as ``after`` for the
    next page (``None`` on a page that is not full)."""

    total: int
    next_cursor: str | None

    def __init__(self, items: Iterable[T] = (), total: int | None = None,
                 next_cursor: str | None = None) -> None:
        super().__init__(items)
        self.total = len(self) if total is None else total
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        cursor = f", next_cursor={self.next_cursor!r}" if self.next_cursor else ""
        return f"Page({list.__repr__(self)}, total={self.total}{cursor})"
