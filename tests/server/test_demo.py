"""``bastion serve --demo`` on instances that start together on a fresh database."""

from __future__ import annotations

import secrets
from typing import Any

from bastion.server.context import Context
from bastion.server.demo import ensure_demo
from bastion.server.services.clients import delete_client
from bastion.server.services.passwords import Passwords
from bastion.server.services.users import create_user

CLIENT_EXISTS = "demo client 'demo' exists (its secret was shown when created)"
USER_EXISTS = "demo user 'demo' exists (its password was shown when created)"


class RacedStore:
    """The store as an instance saw it that lost the race: its first look found no demo
    client or user, which another instance inserted before it could."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage
        self._looked: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    async def get_client(self, client_id: str) -> Any:
        return await self._late("client", self._storage.get_client, client_id)

    async def get_user_by_login(self, login: str) -> Any:
        return await self._late("user", self._storage.get_user_by_login, login)

    async def _late(self, what: str, look: Any, key: str) -> Any:
        if what not in self._looked:
            self._looked.add(what)
            return None
        return await look(key)


async def test_the_instance_that_loses_the_race_says_they_exist(ctx: Context, capsys) -> None:
    """It stopped with "username 'demo' is already taken", after saying the demo client
    was deleted."""
    await ensure_demo(ctx.storage, ctx.settings)
    won = capsys.readouterr().out
    assert "client_secret=" in won and "password=" in won
    await ensure_demo(RacedStore(ctx.storage), ctx.settings)
    assert capsys.readouterr().out == f"{CLIENT_EXISTS}\n{USER_EXISTS}\n"


async def test_a_deleted_demo_client_is_not_made_again(ctx: Context, capsys) -> None:
    await ensure_demo(ctx.storage, ctx.settings)
    await delete_client(ctx.storage, "demo")
    capsys.readouterr()
    await ensure_demo(ctx.storage, ctx.settings)
    assert capsys.readouterr().out == (
        f"demo client 'demo' was deleted; it is not made again\n{USER_EXISTS}\n")


async def test_an_address_taken_by_someone_else_is_said_so(ctx: Context, capsys) -> None:
    await create_user(ctx.storage, Passwords(ctx.settings), username="alice",
                      email="demo@example.com", password=secrets.token_urlsafe(12))
    await ensure_demo(ctx.storage, ctx.settings)
    out = capsys.readouterr().out
    assert "demo user 'demo' not made:" in out and "email" in out
    assert await ctx.storage.get_user_by_login("demo") is None
