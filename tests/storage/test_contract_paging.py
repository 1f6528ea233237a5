"""The storage contract for keyset paging of users (``search_users(after=...)``), on
SQLite and PostgreSQL: pages follow one another in (creation time, id) order, with
or without a query (on SQLite both the scan and the FTS path), and users deleted or
added between pages make no page skip or repeat anyone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_contract import NOW, user

from bastion.server.models import User
from bastion.server.storage import SQLStorage

# Three share a creation time: the id orders them.
CREATED = [NOW, NOW, NOW, NOW + timedelta(seconds=1), NOW + timedelta(seconds=2),
           NOW + timedelta(seconds=2), NOW + timedelta(seconds=3)]


async def seed(storage: SQLStorage) -> list[User]:
    made = [user(n, username=f"member{n}", email=f"member{n}@example.com", created_at=at)
            for n, at in enumerate(CREATED, start=1)]
    for u in reversed(made):  # inserted out of order
        await storage.create_user(u)
    return made


async def walk(storage: SQLStorage, query: str | None, size: int,
               between: object = None) -> list[str]:
    """Every page of ``size``, each after the last user of the one before."""
    seen: list[str] = []
    after = None
    while True:
        page = await storage.search_users(query, size, 0, after=after)
        seen += [u.id for u in page]
        if len(page) < size:
            return seen
        if callable(between):
            await between()
            between = None
        after = (page[-1].created_at, page[-1].id)


@pytest.mark.parametrize("query", [None, "member", "me", "example.com"])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
async def test_pages_follow_one_another(storage: SQLStorage, query: str | None,
                                        size: int) -> None:
    made = await seed(storage)
    assert await walk(storage, query, size) == [u.id for u in made]


async def test_changes_between_pages_neither_skip_nor_repeat(storage: SQLStorage) -> None:
    made = await seed(storage)

    async def meanwhile() -> None:  # after the first page of 3
        await storage.update_user(made[0].id, {"deleted_at": NOW})  # seen already
        await storage.create_user(user(99, username="member99", email="m99@example.com",
                                       created_at=NOW - timedelta(days=1)))  # sorts first
        await storage.create_user(user(98, username="member98", email="m98@example.com",
                                       created_at=NOW + timedelta(days=1)))  # sorts last

    seen = await walk(storage, "member", 3, meanwhile)
    assert seen == [u.id for u in made] + [user(98).id]
