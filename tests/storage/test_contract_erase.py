"""The storage contract for erasing a user, on SQLite and PostgreSQL: their name and
address leave every table that held them, in one transaction; what others own stays;
the apps holding their tokens are told; an erased user is never changed again."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from test_contract import NOW, client, grant, member_of, sign_in, user

from bastion.server.models import Event, LoginSession, OneTimeToken, OutgoingMail
from bastion.server.storage import SQLStorage

LATER = NOW + timedelta(hours=1)
ATTEMPTS = ("login.failure", "login.throttled")
ME, OTHER = user(), user(2)


def session(session_id: str, user_id: str = ME.id) -> LoginSession:
    return LoginSession(id=session_id, user_id=user_id, auth_time=NOW, expires_at=LATER,
                        created_at=NOW, user_agent="Firefox on Alice's laptop")


def mail(mail_id: str, to: str) -> OutgoingMail:
    return OutgoingMail(id=mail_id, to=to, subject="Sign in", text="hi", html="<p>hi</p>",
                        created_at=NOW)


def link(n: int, email: str, user_id: str | None, purpose: str = "sign_in") -> OneTimeToken:
    return OneTimeToken(digest=bytes([n]) * 32, purpose=purpose, email=email,  # type: ignore[arg-type]
                        user_id=user_id, client_id=None, payload={}, created_at=NOW,
                        expires_at=LATER)


def attempt(event_id: str, typed: str, action: str = "login.failure") -> Event:
    return Event(id=event_id, at=NOW, action=action, actor=None, actor_type="anonymous",
                 target=typed, client_id="app", ip="192.0.2.1", detail={"method": "form"})


async def setup(storage: SQLStorage) -> None:
    """ME (User1, user1@example.com) and OTHER, each with what an account gathers."""
    await storage.create_user(ME)
    await storage.create_user(OTHER)
    await storage.create_client(replace(client("app"), backchannel_logout_uri="https://a/bc"))
    await storage.create_session(session("s1"))
    await storage.create_session(session("s2", OTHER.id))
    await storage.create_grant(grant("g1", session_id="s1"), None)
    await storage.create_grant(grant("g2", user_id=OTHER.id, session_id="s2"), None)
    await member_of(storage, "org")
    await storage.change_user_roles(OTHER.id, "org", ["org-r"], [])
    # An email change pending to a new address: its mail names that address too.
    await storage.create_one_time_token(link(1, "new@example.com", ME.id, "email_change"))
    await storage.create_one_time_token(link(2, ME.email, None))  # asked for by address
    await storage.create_one_time_token(link(3, OTHER.email, OTHER.id))
    for n, to in enumerate((ME.email, "new@example.com", OTHER.email)):
        await storage.enqueue_mail(mail(f"m{n}", to))
    for key in ("acct:user1", "acct:user2"):
        await storage.record_failure(key, NOW, 10, LATER)
    for event in (attempt("a1", "User1"), attempt("a2", "user1"),
                  attempt("a3", ME.email, "login.throttled"), attempt("a4", "User2"),
                  Event(id="c1", at=NOW, action="user.create", actor=None,
                        actor_type="system", target=ME.id, client_id=None, ip=None,
                        detail={"username": "User1", "via": "cli"}),
                  Event(id="c2", at=NOW, action="user.create", actor=None,
                        actor_type="system", target=OTHER.id, client_id=None, ip=None,
                        detail={"username": "User2"}),
                  sign_in(1)):
        await storage.add_event(event)


async def test_erasing_removes_the_name_and_address_everywhere(storage: SQLStorage) -> None:
    await setup(storage)
    erased = await storage.erase_user(ME.id, NOW, attempts=ATTEMPTS)
    assert erased is not None
    assert erased.names == ("User1", "new@example.com", "user1@example.com")
    u = erased.user
    assert (u.username, u.email) == (f"erased:{ME.id}", f"{ME.id}@erased.invalid")
    assert u.password_hash is None and not u.is_administrator and u.email_verified_at is None
    assert u.deleted_at == NOW and u.erased_at == NOW
    assert await storage.get_user(ME.id) == u

    # Not found by any of their names, in search (SQLite's FTS index too) or at sign-in.
    for name in ("User1", "user1@example.com", "ser1", "new@example.com"):
        assert await storage.get_user_by_login(name) is None
        assert await storage.search_users(name, 10, 0, include_deleted=True) == []
    assert await storage.get_session("s1") is None
    assert await storage.user_organizations(ME.id, 10, 0) == ([], 0)
    for n in (1, 2):
        assert await storage.get_one_time_token(bytes([n]) * 32) is None
    assert [m.id for m in await storage.claim_mail(LATER)] == ["m2"]
    # The audit trail keeps the events, naming the user by id only.
    events, _ = await storage.list_events({}, 100, 0)
    by_id = {e.id: e for e in events}
    assert [by_id[i].target for i in ("a1", "a2", "a3", "a4")] == [ME.id, ME.id, ME.id, "User2"]
    assert by_id["c1"].detail == {"via": "cli"} and by_id["c2"].detail == {"username": "User2"}
    assert by_id["e1"] == sign_in(1)


async def test_everything_of_other_users_stays(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.erase_user(ME.id, NOW, attempts=ATTEMPTS)
    assert await storage.get_user(OTHER.id) == OTHER
    assert (await storage.get_session("s2")) == session("s2", OTHER.id)
    assert (await storage.get_grant("g2")).revoked_at is None  # type: ignore[union-attr]
    assert [m.user.id for m in (await storage.list_members("org", 10, 0))[0]] == [OTHER.id]
    assert await storage.get_one_time_token(bytes([3]) * 32) is not None


async def test_an_address_another_user_holds_now_stays_theirs(storage: SQLStorage) -> None:
    await setup(storage)
    # OTHER took the address ME's pending email change names, before it was confirmed.
    await storage.update_user(OTHER.id, {"email": "new@example.com"})
    await storage.create_one_time_token(link(4, "new@example.com", OTHER.id))
    erased = await storage.erase_user(ME.id, NOW, attempts=ATTEMPTS)
    assert erased is not None and erased.names == ("User1", "user1@example.com")
    assert await storage.get_one_time_token(bytes([1]) * 32) is None  # ME's own link
    assert await storage.get_one_time_token(bytes([4]) * 32) is not None
    assert sorted(m.id for m in await storage.claim_mail(LATER)) == ["m1", "m2"]


async def test_erasing_ends_sessions_and_tells_the_apps(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.erase_user(ME.id, NOW)
    assert (await storage.get_grant("g1")).revoked_at == NOW  # type: ignore[union-attr]
    notices = await storage.claim_logout_notices(LATER, limit=10)
    assert [(n.client_id, n.user_id, n.session_id) for n in notices] == [("app", ME.id, "s1")]


async def test_an_erased_user_is_never_changed_again(storage: SQLStorage) -> None:
    await setup(storage)
    first = await storage.erase_user(ME.id, NOW, attempts=ATTEMPTS)
    assert first is not None
    again = await storage.erase_user(ME.id, LATER, attempts=ATTEMPTS)
    assert again is not None and again.user == first.user and again.names == ()
    assert await storage.update_user(ME.id, {"deleted_at": None}) is None
    assert await storage.update_user(ME.id, {"username": "User1"}) is None
    assert await storage.get_user(ME.id) == first.user
    assert await storage.erase_user("missing", NOW) is None


async def test_a_deleted_user_keeps_the_time_of_deletion(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.update_user(ME.id, {"deleted_at": NOW - timedelta(days=3)})
    erased = await storage.erase_user(ME.id, NOW)
    assert erased is not None
    assert erased.user.deleted_at == NOW - timedelta(days=3) and erased.user.erased_at == NOW


async def test_concurrent_erasures_and_changes_leave_one_erased_row(
        storage: SQLStorage) -> None:
    await setup(storage)
    results = await asyncio.gather(
        storage.erase_user(ME.id, NOW, attempts=ATTEMPTS),
        storage.update_user(ME.id, {"username": "Renamed"}),
        storage.erase_user(ME.id, NOW, attempts=ATTEMPTS),
        storage.update_user(ME.id, {"email": "renamed@example.com"}))
    erasures = [r for r in results[::2] if r is not None]
    assert len(erasures) == 2 and sum(bool(r.names) for r in erasures) == 1  # type: ignore[union-attr]
    u = await storage.get_user(ME.id)
    assert u is not None and u.erased_at == NOW
    assert (u.username, u.email) == (f"erased:{ME.id}", f"{ME.id}@erased.invalid")
