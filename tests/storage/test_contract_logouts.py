"""The storage contract for back-channel logout notices, on SQLite and PostgreSQL:
queued in the transaction that ends sessions, one per client, user and session with
a live grant, only for clients with a logout URI; claimed once; purged when old."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from test_contract import NOW, client, grant, user

from bastion.server.models import LoginSession, LogoutNotice
from bastion.server.storage import SQLStorage
from bastion.server.storage.base import Cutoffs

LATER = NOW + timedelta(hours=1)
URI = "https://app.example/backchannel"


def session(session_id: str) -> LoginSession:
    return LoginSession(id=session_id, user_id=user().id, auth_time=NOW, expires_at=LATER,
                        created_at=NOW, user_agent="Firefox")


async def queued(storage: SQLStorage) -> list[tuple[str, str, str | None]]:
    """Every due notice, claimed: (client, user, session), sorted."""
    notices = await storage.claim_logout_notices(LATER + timedelta(days=1), limit=100)
    return sorted(((n.client_id, n.user_id, n.session_id) for n in notices),
                  key=lambda n: (n[0], n[2] or ""))


async def setup(storage: SQLStorage) -> None:
    """user(); clients "app" (told), "quiet" (no URI) and "gone" (told, then deleted);
    sessions s1 and s2 with grants of each, and a session-less grant of "app"."""
    await storage.create_user(user())
    await storage.create_client(replace(client("app"), backchannel_logout_uri=URI))
    await storage.create_client(client("quiet"))
    await storage.create_client(replace(client("gone"), backchannel_logout_uri=URI))
    for sid in ("s1", "s2"):
        await storage.create_session(session(sid))
        for n, client_id in enumerate(("app", "app", "quiet", "gone")):
            await storage.create_grant(grant(f"{sid}-{client_id}-{n}", client_id=client_id,
                                             session_id=sid), None)
    await storage.create_grant(grant("password-grant"), None)
    await storage.delete_client("gone", NOW)


async def test_ending_a_session_queues_one_notice_per_told_client(storage: SQLStorage) -> None:
    await setup(storage)
    assert await queued(storage) == []  # deleting "gone" tells nobody

    await storage.revoke_session("s1", NOW)
    assert await queued(storage) == [("app", user().id, "s1")]
    await storage.revoke_session("s1", NOW)  # again: its grants are revoked already
    assert await queued(storage) == []

    await storage.revoke_user_sessions(user().id, NOW)
    assert await queued(storage) == [("app", user().id, None), ("app", user().id, "s2")]


async def test_concurrent_endings_tell_each_client_and_session_once(
        storage: SQLStorage) -> None:
    await setup(storage)
    await asyncio.gather(storage.revoke_user_sessions(user().id, NOW),
                         storage.revoke_session("s1", NOW),
                         storage.revoke_user_sessions(user().id, NOW))
    # Each grant is revoked by one of them, and only that one queues its notice. (They
    # race on PostgreSQL; SQLite's one writer runs them one after another.)
    assert await queued(storage) == [("app", user().id, None), ("app", user().id, "s1"),
                                     ("app", user().id, "s2")]


async def test_a_user_change_that_ends_sessions_queues_notices(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.update_user(user().id, {"password_hash": "$argon2id$new"},
                              end_sessions_at=NOW, keep_session="s2")
    # Every grant is revoked, those of the kept session too: every one is told.
    assert await queued(storage) == [("app", user().id, None), ("app", user().id, "s1"),
                                     ("app", user().id, "s2")]


async def test_a_notice_is_claimed_once_then_settled(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.revoke_session("s1", NOW)
    first, second = await asyncio.gather(storage.claim_logout_notices(LATER),
                                         storage.claim_logout_notices(LATER))
    (notice,) = first + second  # one claim wins
    assert isinstance(notice, LogoutNotice) and notice.claimed_until is not None
    assert (notice.attempts, notice.created_at, notice.next_attempt_at) == (0, NOW, NOW)

    retry = LATER + timedelta(minutes=5)
    assert await storage.logout_notice_failed(notice.id, "ConnectError: refused", retry, LATER,
                                              claimed_until=notice.claimed_until)
    assert await storage.claim_logout_notices(LATER) == []  # not due yet
    (again,) = await storage.claim_logout_notices(retry)
    assert (again.id, again.attempts, again.last_error) == (notice.id, 1,
                                                            "ConnectError: refused")
    assert again.claimed_until is not None
    # A stale claim settles nothing.
    assert not await storage.logout_notice_sent(notice.id, retry,
                                                claimed_until=notice.claimed_until)
    assert await storage.logout_notice_sent(again.id, retry, claimed_until=again.claimed_until)
    assert await storage.claim_logout_notices(retry + timedelta(days=1)) == []


async def test_a_notice_given_up_on_is_not_claimed_again(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.revoke_session("s1", NOW)
    (notice,) = await storage.claim_logout_notices(LATER)
    assert notice.claimed_until is not None
    assert await storage.logout_notice_failed(notice.id, "Refused: 500", None, LATER,
                                              claimed_until=notice.claimed_until)
    assert await storage.claim_logout_notices(LATER + timedelta(days=1)) == []


async def test_purge_deletes_settled_notices_once_old(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.revoke_session("s1", NOW)
    await storage.revoke_session("s2", NOW)
    (sent, waiting) = await storage.claim_logout_notices(LATER, limit=1) + \
        await storage.claim_logout_notices(LATER, limit=1)
    assert sent.claimed_until is not None and waiting.claimed_until is not None
    await storage.logout_notice_sent(sent.id, LATER, claimed_until=sent.claimed_until)
    later = LATER + timedelta(days=30)
    done = await storage.purge(Cutoffs(now=later, expired_before=NOW, throttles_before=NOW,
                                       mail_before=later), limit=100)
    assert done["logout_notices"] == 1  # the one still waiting stays
    (left,) = await storage.claim_logout_notices(later, limit=10)
    assert left.id == waiting.id


async def test_a_claim_skips_the_clients_in_hand(storage: SQLStorage) -> None:
    """The outbox worker posts to one client one notice at a time: it claims notices
    of the clients it is not posting to already."""
    await setup(storage)
    await storage.create_client(replace(client("shop"), backchannel_logout_uri=URI))
    await storage.create_grant(grant("s1-shop", client_id="shop", session_id="s1"), None)
    await storage.revoke_user_sessions(user().id, NOW)  # app: s1, s2, none; shop: s1
    (shop,) = await storage.claim_logout_notices(LATER, limit=10, skip_clients={"app"})
    assert (shop.client_id, shop.session_id) == ("shop", "s1")
    assert await storage.claim_logout_notices(LATER, limit=10,
                                              skip_clients={"app", "shop"}) == []
    assert sorted(n.session_id or "" for n in await storage.claim_logout_notices(
        LATER, limit=10, skip_clients={"shop"})) == ["", "s1", "s2"]
