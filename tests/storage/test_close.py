"""Closing the storage ends even when the database hangs: a shutdown waited for it
without end (SQLAlchemy's close of an asyncpg connection has no time limit)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.server.storage import open_storage

GUARD = 30  # seconds: a test fails, rather than hangs, should the bound not hold


async def test_close_gives_up_on_a_close_that_never_returns(tmp_path, monkeypatch,
                                                             caplog) -> None:
    async def never(self: AsyncEngine, close: bool = True) -> None:
        await asyncio.Event().wait()

    store = open_storage(f"sqlite+aiosqlite:///{tmp_path / 'close.db'}")
    store.close_within = 0.01
    monkeypatch.setattr(AsyncEngine, "dispose", never)
    await asyncio.wait_for(store.close(), GUARD)
    assert "did not answer within 0.01 s" in caplog.text


class Blackhole:
    """A TCP proxy to PostgreSQL that can stop passing bytes on: a database that hangs,
    as a stopped server or a lost network does, while its sockets stay open."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.hung = False
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.hung:
                writer.write(data)
        writer.close()


@pytest.fixture
async def blackhole(pg_admin_url: str) -> AsyncIterator[tuple[Blackhole, str]]:
    from sqlalchemy import make_url

    url = make_url(pg_admin_url)
    hole = Blackhole(url.host or "127.0.0.1", url.port or 5432)
    port = await hole.start()
    try:
        yield hole, url.set(port=port).render_as_string(hide_password=False)
    finally:
        assert hole.server is not None
        hole.server.close()


async def test_close_drops_the_connections_of_a_database_that_hangs(blackhole, caplog) -> None:
    """asyncpg's own connections are dropped: the close under way ends quietly, with no
    traceback from SQLAlchemy's pool."""
    hole, url = blackhole
    store = open_storage(url, pool_size=2)
    store.close_within = 0.2
    await store.ping()
    hole.hung = True
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(store.close(), GUARD)
    assert "did not answer within 0.2 s" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
