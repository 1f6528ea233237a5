"""The storage contract for what a sign-in or a link request writes about a user, on
SQLite and PostgreSQL: nothing once the user is deleted (or erased), even when the
deletion is under way while the write comes. Otherwise a sign-in that checked the
password just before an erasure would store a session, a grant with its tokens, an
audit event with the address it came from, a link or a mail after it, which the
erasure had promised gone, and the deletion's revocation would not see the grant."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_contract import NOW, grant, sign_in, user

from bastion.server.models import LoginSession, OneTimeToken, OutgoingMail, RefreshToken
from bastion.server.storage import SQLStorage
from bastion.server.storage.sql_grants import end_user_sessions
from bastion.server.storage.tables import users

LATER = NOW + timedelta(hours=1)
ME = user()

Write = Callable[[SQLStorage, str], Awaitable[bool]]  # (storage, user id) -> stored?
Found = Callable[[SQLStorage], Awaitable[bool]]  # whether anything of it is stored


async def _session(storage: SQLStorage, user_id: str) -> bool:
    return await storage.create_session(LoginSession(
        id="s9", user_id=user_id, auth_time=NOW, expires_at=LATER, created_at=NOW,
        user_agent="Firefox"), sign_in(9))


async def _grant(storage: SQLStorage, user_id: str) -> bool:
    return await storage.create_grant(grant("g9", user_id=user_id), RefreshToken(
        digest=b"r" * 32, grant_id="g9", client_id="app", user_id=user_id, scope="openid",
        created_at=NOW, expires_at=LATER), sign_in(9))


async def _link(storage: SQLStorage, user_id: str | None) -> bool:
    return await storage.create_one_time_token(OneTimeToken(
        digest=b"t" * 32, purpose="sign_in", email=ME.email, user_id=user_id,
        client_id="app", payload={}, created_at=NOW, expires_at=LATER))


async def _mail(storage: SQLStorage, user_id: str | None) -> bool:
    return await storage.enqueue_mail(OutgoingMail(
        id="m9", to=ME.email, subject="Your sign-in link", text="hi", html="<p>hi</p>",
        created_at=NOW, user_id=user_id))


async def _event_stored(storage: SQLStorage) -> bool:
    found, _ = await storage.list_events({}, 100, 0)
    return any(e.id == "e9" for e in found)


async def _session_found(storage: SQLStorage) -> bool:
    return await storage.get_session("s9") is not None or await _event_stored(storage)


async def _grant_found(storage: SQLStorage) -> bool:
    return (await storage.get_grant("g9") is not None
            or await storage.get_refresh_token(b"r" * 32) is not None
            or await _event_stored(storage))


async def _link_found(storage: SQLStorage) -> bool:
    return await storage.get_one_time_token(b"t" * 32) is not None


async def _mail_found(storage: SQLStorage) -> bool:
    return await storage.get_mail("m9") is not None


WRITES: dict[str, tuple[Write, Found]] = {
    "session": (_session, _session_found),
    "grant": (_grant, _grant_found),
    "link": (_link, _link_found),
    "mail": (_mail, _mail_found),
}
KINDS = pytest.mark.parametrize("kind", list(WRITES))


async def setup(storage: SQLStorage) -> None:
    from test_contract import client

    await storage.create_user(ME)
    await storage.create_client(client())


@KINDS
async def test_a_live_user_gets_it(storage: SQLStorage, kind: str) -> None:
    write, found = WRITES[kind]
    await setup(storage)
    assert await write(storage, ME.id)
    assert await found(storage)


@KINDS
async def test_a_deleted_user_gets_nothing(storage: SQLStorage, kind: str) -> None:
    write, found = WRITES[kind]
    await setup(storage)
    await storage.update_user(ME.id, {"deleted_at": NOW})
    assert not await write(storage, ME.id)
    assert not await found(storage)


@KINDS
async def test_an_unknown_user_gets_nothing(storage: SQLStorage, kind: str) -> None:
    write, found = WRITES[kind]
    await setup(storage)
    assert not await write(storage, user(7).id)
    assert not await found(storage)


@pytest.mark.parametrize("write", [_link, _mail])
async def test_links_and_mail_about_no_user_are_stored(storage: SQLStorage, write) -> None:
    await setup(storage)
    assert await write(storage, None)


async def _until(ready: Callable[[], Awaitable[bool]], task: asyncio.Future[bool]) -> None:
    """Poll until ``ready()`` (the write is waiting for the deletion's lock)."""
    for _ in range(2000):
        if await ready():
            return
        assert not task.done(), "the write did not wait for the deletion under way"
        await asyncio.sleep(0.005)
    raise AssertionError("the write never came to wait for the deletion")


@KINDS
async def test_a_write_racing_a_deletion_waits_for_it_and_stores_nothing(
        storage: SQLStorage, kind: str) -> None:
    """The deletion has marked the user and revoked what it found, and not committed,
    when the write comes: the write must wait, and then store nothing (a grant stored
    now would never be revoked, and no app told of it)."""
    write, found = WRITES[kind]
    await setup(storage)
    if storage.engine.dialect.name == "sqlite":
        path = storage.engine.url.database
        assert path
        other = sqlite3.connect(path, isolation_level=None)  # another process
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE users SET deleted_at = ? WHERE id = ?",
                          (NOW.replace(tzinfo=None).isoformat(" "), ME.id))
            task = asyncio.ensure_future(write(storage, ME.id))
            sqlite = storage._sqlite
            assert sqlite is not None

            async def queued() -> bool:  # busy on the loop, so waiting on the thread
                return sqlite._queued > 0
            await _until(queued, task)
            other.execute("COMMIT")
        finally:
            other.close()
    else:
        async with storage.engine.connect() as deletion, storage.engine.connect() as watch:
            # (pg_stat_activity is read once per transaction: each poll needs its own)
            await watch.execution_options(isolation_level="AUTOCOMMIT")
            pid = (await deletion.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            await deletion.execute(users.update().where(users.c.id == ME.id).values(
                deleted_at=NOW))
            await deletion.run_sync(lambda conn: end_user_sessions(conn, ME.id, NOW))
            task = asyncio.ensure_future(write(storage, ME.id))

            async def blocked() -> bool:  # some backend waits for the deletion's lock
                waiting = await watch.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE :pid = ANY(pg_blocking_pids(pid))"), {"pid": pid})
                return bool(waiting.scalar_one())
            await _until(blocked, task)
            await deletion.commit()
    assert not await task
    assert not await found(storage)
