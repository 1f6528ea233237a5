"""The storage contract for what a sign-in or a link request writes about a user, on
SQLite and PostgreSQL: nothing once the user is deleted (or erased), nor a password
sign-in's session or grant once the password it checked is no longer theirs, even
when the change is under way while the write comes. Otherwise a sign-in that checked
the password just before an erasure would store a session, a grant with its tokens,
an audit event with the address it came from, a link or a mail after it, which the
erasure had promised gone, and the revocation would not see the grant; and one with
a stolen password would outlive the new password meant to shut it out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_contract import NOW, grant, sign_in, user

from bastion.server.models import (
    AuthorizationCode,
    Grant,
    LoginSession,
    OneTimeToken,
    OutgoingMail,
    RefreshToken,
)
from bastion.server.storage import SQLStorage
from bastion.server.storage.sql_grants import end_user_sessions
from bastion.server.storage.tables import users

LATER = NOW + timedelta(hours=1)
ME = user()

Write = Callable[..., Awaitable[bool]]  # (storage, user id[, password hash]) -> stored?
Found = Callable[[SQLStorage], Awaitable[bool]]  # whether anything of it is stored


async def _session(storage: SQLStorage, user_id: str, password_hash: str | None = None,
                   ) -> bool:
    return await storage.create_session(LoginSession(
        id="s9", user_id=user_id, auth_time=NOW, expires_at=LATER, created_at=NOW,
        user_agent="Firefox"), sign_in(9), password_hash=password_hash)


async def _grant(storage: SQLStorage, user_id: str, password_hash: str | None = None) -> bool:
    return await storage.create_grant(grant("g9", user_id=user_id), RefreshToken(
        digest=b"r" * 32, grant_id="g9", client_id="app", user_id=user_id, scope="openid",
        created_at=NOW, expires_at=LATER), sign_in(9), password_hash=password_hash)


async def _link(storage: SQLStorage, user_id: str | None, _hash: str | None = None) -> bool:
    return await storage.create_one_time_token(OneTimeToken(
        digest=b"t" * 32, purpose="sign_in", email=ME.email, user_id=user_id,
        client_id="app", payload={}, created_at=NOW, expires_at=LATER))


async def _mail(storage: SQLStorage, user_id: str | None, _hash: str | None = None) -> bool:
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


SIGN_INS = pytest.mark.parametrize("kind", ["session", "grant"])
NEW_HASH = "$argon2id$new"


@SIGN_INS
async def test_a_sign_in_is_stored_only_while_the_password_it_checked_is_the_users(
        storage: SQLStorage, kind: str) -> None:
    write, found = WRITES[kind]
    await setup(storage)
    assert ME.password_hash
    assert not await write(storage, ME.id, NEW_HASH)  # checked against another password
    assert not await found(storage)
    await storage.update_user(ME.id, {"password_hash": NEW_HASH})
    assert not await write(storage, ME.id, ME.password_hash)  # the old one
    assert not await found(storage)
    assert await write(storage, ME.id, NEW_HASH)
    assert await found(storage)


@pytest.mark.parametrize("write", [_link, _mail])
async def test_links_and_mail_about_no_user_are_stored(storage: SQLStorage, write) -> None:
    await setup(storage)
    assert await write(storage, None)


async def _until(ready: Callable[[], Awaitable[bool]], task: asyncio.Future[bool]) -> None:
    """Poll until ``ready()`` (the write is waiting for the other transaction's lock)."""
    for _ in range(2000):
        if await ready():
            return
        assert not task.done(), "the write did not wait for the change under way"
        await asyncio.sleep(0.005)
    raise AssertionError("the write never came to wait for the change under way")


async def _while_changing(storage: SQLStorage, change: Callable[[sa.Connection], object],
                          write: Callable[[], Awaitable[bool]]) -> bool:
    """``write()``'s answer when another transaction (on SQLite, another process's) has
    made ``change`` and not committed: it commits once the write waits for it."""
    if storage.engine.dialect.name == "sqlite":
        other = sa.create_engine(storage.engine.url.set(drivername="sqlite+pysqlite"))
        sqlite = storage._sqlite
        assert sqlite is not None
        try:
            with other.connect() as conn:
                change(conn)  # the write lock, until the commit
                task = asyncio.ensure_future(write())

                async def queued() -> bool:  # busy on the loop, so waiting on the thread
                    return sqlite._queued > 0
                await _until(queued, task)
                conn.commit()
        finally:
            other.dispose()
        return await task
    async with storage.engine.connect() as conn, storage.engine.connect() as watch:
        # (pg_stat_activity is read once per transaction: each poll needs its own)
        await watch.execution_options(isolation_level="AUTOCOMMIT")
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        await conn.run_sync(change)
        task = asyncio.ensure_future(write())

        async def blocked() -> bool:  # some backend waits for this transaction's lock
            waiting = await watch.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE :pid = ANY(pg_blocking_pids(pid))"), {"pid": pid})
            return bool(waiting.scalar_one())
        await _until(blocked, task)
        await conn.commit()
    return await task


def _change_user(**values: object) -> Callable[[sa.Connection], object]:
    """The user's row changed, and their sessions and grants ended, as a deletion or a
    new password does."""
    def change(conn: sa.Connection) -> None:
        conn.execute(users.update().where(users.c.id == ME.id).values(**values))
        end_user_sessions(conn, ME.id, NOW)
    return change


RACES = [(kind, "deletion") for kind in WRITES] + [
    (kind, "new password") for kind in ("session", "grant")]


@pytest.mark.parametrize(("kind", "change_kind"), RACES)
async def test_a_write_racing_a_deletion_or_new_password_waits_for_it_and_stores_nothing(
        storage: SQLStorage, kind: str, change_kind: str) -> None:
    """The deletion (or the new password) has changed the user's row and revoked what
    it found, and not committed, when the write comes: the write must wait, and then
    store nothing (a grant stored now would never be revoked, and no app told of it;
    a sign-in with the old password would outlive the change meant to end it)."""
    write, found = WRITES[kind]
    await setup(storage)
    change = _change_user(**({"deleted_at": NOW} if change_kind == "deletion"
                             else {"password_hash": NEW_HASH}))
    checked = ME.password_hash if change_kind == "new password" else None
    assert not await _while_changing(storage, change, lambda: write(storage, ME.id, checked))
    assert not await found(storage)


# -- an authorization code, made in a login session ---------------------------------


def _code(session_id: str | None) -> tuple[AuthorizationCode, Grant]:
    return (AuthorizationCode(
        digest=b"c" * 32, client_id="app", user_id=ME.id, session_id=session_id,
        grant_id="g8", redirect_uri="https://app.example/cb", scope="openid", nonce=None,
        code_challenge=None, auth_time=NOW, expires_at=LATER),
        grant("g8", session_id=session_id))


async def _code_found(storage: SQLStorage) -> bool:
    code, _first = await storage.consume_code(b"c" * 32, NOW, "app")
    return code is not None or await storage.get_grant("g8") is not None


async def _signed_in(storage: SQLStorage) -> None:
    await setup(storage)
    assert await storage.create_session(LoginSession(
        id="s1", user_id=ME.id, auth_time=NOW, expires_at=LATER, created_at=NOW,
        user_agent="Firefox"))


async def test_a_code_is_stored_only_while_its_session_lasts(storage: SQLStorage) -> None:
    await _signed_in(storage)
    assert not await storage.create_code(*_code("s-unknown"))
    assert not await _code_found(storage)
    assert await storage.create_code(*_code("s1"))
    assert await _code_found(storage)


async def test_a_code_of_an_ended_session_is_not_stored(storage: SQLStorage) -> None:
    await _signed_in(storage)
    await storage.revoke_session("s1", NOW)
    assert not await storage.create_code(*_code("s1"))
    assert not await _code_found(storage)


async def test_a_code_of_an_expired_session_is_not_stored(storage: SQLStorage) -> None:
    """The session expired between the request's check and the code (its end is not
    after the grant's ``created_at``)."""
    await setup(storage)
    assert await storage.create_session(LoginSession(
        id="s1", user_id=ME.id, auth_time=NOW - timedelta(hours=1), expires_at=NOW,
        created_at=NOW - timedelta(hours=1), user_agent="Firefox"))
    assert not await storage.create_code(*_code("s1"))
    assert not await _code_found(storage)


async def test_a_code_made_in_no_session_needs_a_live_user(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.update_user(ME.id, {"deleted_at": NOW})
    assert not await storage.create_code(*_code(None))
    assert not await _code_found(storage)


async def test_a_code_racing_the_end_of_its_session_waits_and_is_not_stored(
        storage: SQLStorage) -> None:
    """A new password (or a sign-out, a deletion) has ended the session and revoked its
    grants, and not committed, when the authorization request that found the session
    live stores its code: it must wait, and then store nothing (its grant would never
    be revoked, and its code would give tokens that outlive the new password)."""
    await _signed_in(storage)
    ended = lambda conn: end_user_sessions(conn, ME.id, NOW)  # noqa: E731
    assert not await _while_changing(storage, ended,
                                     lambda: storage.create_code(*_code("s1")))
    assert not await _code_found(storage)


def _reissuing(conn: sa.Connection) -> None:
    """A reissue's statements (``reissue_grant``), not committed: the user held FOR
    SHARE, the old grant revoked, the new one and its refresh token stored."""
    from bastion.server.storage.sql_base import values
    from bastion.server.storage.sql_grants import revoke_grants
    from bastion.server.storage.tables import grants, refresh_tokens

    conn.execute(sa.select(users.c.id).where(users.c.id == ME.id).with_for_update(read=True))
    revoke_grants(conn, ["g1"], NOW)
    conn.execute(grants.insert().values(**values(grant("g2", session_id="s1"))))
    conn.execute(refresh_tokens.insert().values(**values(RefreshToken(
        digest=b"2" * 32, grant_id="g2", client_id="app", user_id=ME.id, scope="openid",
        created_at=NOW, expires_at=LATER))))


@pytest.mark.parametrize("ending", ["everywhere", "logout"])
async def test_a_reissue_racing_the_end_of_the_sessions_is_revoked_with_them(
        storage: SQLStorage, ending: str) -> None:
    """PostgreSQL: the revocation ran on a snapshot taken before the reissue committed,
    skipped the old grant the reissue had revoked, and never saw the new one: a live
    grant after a sign-out everywhere or a logout, its access tokens accepted."""
    await _signed_in(storage)
    assert await storage.create_grant(grant("g1", session_id="s1"), None)
    end = (lambda: storage.revoke_user_sessions(ME.id, NOW)) if ending == "everywhere" \
        else (lambda: storage.revoke_session("s1", NOW))
    await _while_changing(storage, _reissuing, end)  # type: ignore[arg-type]
    reissued = await storage.get_grant("g2")
    assert reissued is not None and reissued.revoked_at is not None
    assert await storage.is_revoked("jti", "g2")
