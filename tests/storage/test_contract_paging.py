"""The storage contract for keyset paging of users (``search_users(after=...)``), on
SQLite and PostgreSQL: pages follow one another in (creation time, id) order, with
or without a query (on SQLite both the scan and the FTS path), and users deleted or
added between pages make no page skip or repeat anyone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_contract import NOW, user

from bastion.server.models import Event, User
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


def event(n: int, at_seconds: int, action: str = "login.success") -> Event:
    return Event(id=f"ev{n:02d}", at=NOW + timedelta(seconds=at_seconds), action=action,
                 actor=None, actor_type="system", target=None, client_id=None, ip=None)


async def seed_events(storage: SQLStorage) -> list[str]:
    """Seven sign-ins (three share a time: the greater id is the newer) and one event
    the filter leaves out; the sign-ins' ids, newest first."""
    for n, at in enumerate([0, 1, 1, 1, 2, 3, 3], start=1):
        await storage.add_event(event(n, at))
    await storage.add_event(event(99, 2, "user.create"))
    return ["ev07", "ev06", "ev05", "ev04", "ev03", "ev02", "ev01"]


async def walk_events(storage: SQLStorage, size: int, between: object = None) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        page, _ = await storage.list_events({"action": "login.success"}, size, 0, after=after)
        seen += [e.id for e in page]
        if len(page) < size:
            return seen
        if callable(between):
            await between()
            between = None
        after = (page[-1].at, page[-1].id)


@pytest.mark.parametrize("size", [1, 2, 3, 7])
async def test_events_page_by_cursor_newest_first(storage: SQLStorage, size: int) -> None:
    newest_first = await seed_events(storage)
    assert await walk_events(storage, size) == newest_first


async def test_new_events_between_pages_shift_nothing(storage: SQLStorage) -> None:
    newest_first = await seed_events(storage)

    async def meanwhile() -> None:
        await storage.add_event(event(50, 9))  # newer than every page: not walked into

    assert await walk_events(storage, 2, meanwhile) == newest_first
    _, total = await storage.list_events({"action": "login.success"}, 1, 0)
    assert total == 8
    page, uncounted = await storage.list_events({"action": "login.success"}, 1, 0,
                                                count=False)
    assert uncounted is None and [e.id for e in page] == ["ev50"]
