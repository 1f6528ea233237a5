"""``Page``: one page of a listing, and how many items match over all pages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

__all__ = ["Page"]

T = TypeVar("T")


class Page(list[T]):
    """The items of one page (it *is* a list) with ``total``, the count over all
    pages, so ``len(page) < page.total`` means there are more to fetch."""

    total: int

    def __init__(self, items: Iterable[T] = (), total: int | None = None) -> None:
        super().__init__(items)
        self.total = len(self) if total is None else total

    def __repr__(self) -> str:
        return f"Page({list.__repr__(self)}, total={self.total})"
