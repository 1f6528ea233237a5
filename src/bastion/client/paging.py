"""``Page``: one page of a listing, and how many items match over all pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TypeVar

from .exceptions import ProtocolError

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


def _walk(fetch: Callable[[str | None], Page[T]], size: int) -> Iterator[T]:
    """Every item of a listing that pages by cursor: ``fetch(after)`` gets one page of
    ``size``. ``ProtocolError`` if a full page brings no cursor (a server that does not
    page by cursor would end the walk early, unseen) or a cursor comes back."""
    after: str | None = None
    seen: set[str] = set()
    while True:
        page = fetch(after)
        yield from page
        after = _next(page, size, seen)
        if after is None:
            return


async def _awalk(fetch: Callable[[str | None], Awaitable[Page[T]]],
                size: int) -> AsyncIterator[T]:
    after: str | None = None
    seen: set[str] = set()
    while True:
        page = await fetch(after)
        for item in page:
            yield item
        after = _next(page, size, seen)
        if after is None:
            return


def _next(page: Page[T], size: int, seen: set[str]) -> str | None:
    """The cursor of the page after ``page``; ``None`` when it was the last."""
    cursor = page.next_cursor
    if cursor is None:
        if len(page) >= size:
            raise ProtocolError("The API's full page has no cursor for the next one: it "
                                "does not page by cursor (a Bastion before this SDK?).")
        return None
    if cursor in seen:
        raise ProtocolError("The API gave a cursor twice: the walk would not end.")
    seen.add(cursor)
    return cursor
