"""``Page``: one page of a listing, and how many items match over all pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["Page", "awalk", "walk"]

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


def walk(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a listing that pages by cursor: ``fetch(after)`` gets one page."""
    after = None
    while True:
        page = fetch(after)
        yield from page
        if page.next_cursor is None:
            return
        after = page.next_cursor


async def awalk(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    after = None
    while True:
        page = await fetch(after)
        for item in page:
            yield item
        if page.next_cursor is None:
            return
        after = page.next_cursor
