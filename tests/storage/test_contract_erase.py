"""The storage contract for erasing a user, on SQLite and PostgreSQL: their name and
address leave every table that held them, in one transaction; what others own stays;
the apps holding their tokens are told; an erased user is never changed again, nor
given roles, even by a change racing the erasure."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_contract import NOW, client, grant, member_of, sign_in, user
from test_contract_live_user import _while_changing

from bastion.server.models import Event, LoginSession, OneTimeToken, OutgoingMail, RefreshToken
from bastion.server.storage import SQLStorage
from bastion.server.storage.base import Missing, PersonalData
from bastion.server.storage.tables import users

LATER = NOW + timedelta(hours=1)
ME, OTHER = user(), user(2)


def keys(user_id: str, names: Collection[str]) -> list[str]:
    return [f"user:{user_id}", *(f"acct:{name.lower()}" for name in names)]


# As the services describe it (services.users.PERSONAL_DATA), simplified.
DATA = PersonalData(attempts=("login.failure", "login.throttled"), spell=str.lower,
                    named=("user.create",), throttle_keys=keys)


def session(session_id: str, user_id: str = ME.id) -> LoginSession:
    return LoginSession(id=session_id, user_id=user_id, auth_time=NOW, expires_at=LATER,
                        created_at=NOW, user_agent="Firefox on Alice's laptop")


def mail(mail_id: str, to: str, user_id: str | None = None) -> OutgoingMail:
    return OutgoingMail(id=mail_id, to=to, subject="Sign in", text="hi", html="<p>hi</p>",
                        created_at=NOW, user_id=user_id)


def link(n: int, email: str, user_id: str | None, purpose: str = "sign_in") -> OneTimeToken:
    return OneTimeToken(digest=bytes([n]) * 32, purpose=purpose, email=email,  # type: ignore[arg-type]
                        user_id=user_id, client_id=None, payload={}, created_at=NOW,
                        expires_at=LATER)


def attempt(event_id: str, tried: str, action: str = "login.failure") -> Event:
    return Event(id=event_id, at=NOW, action=action, actor=None, actor_type="anonymous",
                 target=tried, client_id="app", ip="192.0.2.1", detail={"method": "form"})


def about(event_id: str, target: str, action: str, **detail: object) -> Event:
    return Event(id=event_id, at=NOW, action=action, actor="admin-client",
                 actor_type="client", target=target, client_id="admin-client",
                 ip="198.51.100.7", detail=detail)


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
    # ME's pending email change to new@; a sign-in link asked for by ME's address; a
    # pending change of OTHER's to an address no one holds yet.
    await storage.create_one_time_token(link(1, "new@example.com", ME.id, "email_change"))
    await storage.create_one_time_token(link(2, ME.email, None))
    await storage.create_one_time_token(link(3, OTHER.email, OTHER.id))
    await storage.create_one_time_token(link(4, "new@example.com", OTHER.id, "email_change"))
    for mail_id, to, user_id in (
            ("m-old", "old@example.com", ME.id),  # the notice to an address ME had
            ("m-legacy", ME.email, None),  # queued before mail named its user
            ("m-new", "new@example.com", None),
            ("m-other", OTHER.email, OTHER.id), ("m-other-new", "new@example.com", OTHER.id)):
        await storage.enqueue_mail(mail(mail_id, to, user_id))
    for key in ("acct:user1", "acct:user1@example.com", f"user:{ME.id}", "acct:user2"):
        await storage.record_failure(key, NOW, 10, LATER)
    for event in (attempt("a1", "user1"), attempt("a2", "user1@example.com", "login.throttled"),
                  attempt("a3", "user2"), attempt("a4", "new@example.com"),
                  attempt("a5", "User1"),  # recorded as typed, before logins were folded
                  about("c1", ME.id, "user.create", username="User1", via="cli"),
                  about("c2", OTHER.id, "user.create", username="User2"),
                  about("u1", ME.id, "user.update", fields=["username"]),
                  sign_in(1)):
        await storage.add_event(event)


async def test_erasing_removes_the_name_and_address_everywhere(storage: SQLStorage) -> None:
    await setup(storage)
    u = await storage.erase_user(ME.id, NOW, DATA)
    assert u is not None
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
    assert sorted(m.id for m in await storage.claim_mail(LATER, limit=10)) == [
        "m-other", "m-other-new"]
    assert [t.key for t in await storage.get_throttles(
        ["acct:user1", "acct:user1@example.com", f"user:{ME.id}", "acct:user2"])] == [
        "acct:user2"]
    # The audit trail keeps the events, naming the user by id only.
    events, _ = await storage.list_events({}, 100, 0)
    by_id = {e.id: e for e in events}
    assert [by_id[i].target for i in ("a1", "a2", "a3", "a4", "a5")] == [
        ME.id, ME.id, "user2", "new@example.com", ME.id]  # a pending address: not theirs yet
    assert by_id["c1"].detail == {"via": "cli"} and by_id["c2"].detail == {"username": "User2"}
    assert by_id["u1"].detail == {"fields": ["username"]} and by_id["e1"] == sign_in(1)


async def test_the_mail_of_a_sign_up_is_erased_after_an_address_change(
        storage: SQLStorage) -> None:
    # A sign-up link goes to an address no account holds yet (no user); once the link
    # made the account, the link and its mail are the user's, so an erasure after the
    # user moved to another address still finds them.
    await storage.create_one_time_token(link(7, "ann@old.example", None))
    await storage.enqueue_mail(mail("m-signup", "ann@old.example"))
    await storage.enqueue_mail(mail("m-stranger", "someone@else.example"))
    ann = user(7, email="ann@old.example")
    await storage.create_user(ann)
    await storage.adopt_signup(ann.id, ann.email)
    await storage.update_user(ann.id, {"email": "ann@new.example"})
    await storage.erase_user(ann.id, NOW, DATA)
    assert await storage.get_one_time_token(bytes([7]) * 32) is None
    assert [m.id for m in await storage.claim_mail(LATER, limit=10)] == ["m-stranger"]


async def test_everything_of_other_users_stays(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.erase_user(ME.id, NOW, DATA)
    assert await storage.get_user(OTHER.id) == OTHER
    assert (await storage.get_session("s2")) == session("s2", OTHER.id)
    assert (await storage.get_grant("g2")).revoked_at is None  # type: ignore[union-attr]
    assert [m.user.id for m in (await storage.list_members("org", 10, 0))[0]] == [OTHER.id]
    for n in (3, 4):  # OTHER's pending change to the address ME's names too stays
        assert await storage.get_one_time_token(bytes([n]) * 32) is not None


async def test_an_address_another_user_holds_now_stays_theirs(storage: SQLStorage) -> None:
    await setup(storage)
    # OTHER took the address ME's pending email change names, before it was confirmed.
    await storage.update_user(OTHER.id, {"email": "new@example.com"})
    await storage.erase_user(ME.id, NOW, DATA)
    assert await storage.get_one_time_token(bytes([1]) * 32) is None  # ME's own link
    assert await storage.get_one_time_token(bytes([4]) * 32) is not None
    assert sorted(m.id for m in await storage.claim_mail(LATER, limit=10)) == [
        "m-new", "m-other", "m-other-new"]


async def test_erasing_ends_sessions_and_tells_the_apps(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.erase_user(ME.id, NOW, DATA)
    assert (await storage.get_grant("g1")).revoked_at == NOW  # type: ignore[union-attr]
    notices = await storage.claim_logout_notices(LATER, limit=10)
    assert [(n.client_id, n.user_id, n.session_id) for n in notices] == [("app", ME.id, "s1")]


async def test_an_erased_user_is_never_changed_again(storage: SQLStorage) -> None:
    await setup(storage)
    first = await storage.erase_user(ME.id, NOW, DATA)
    assert first is not None
    assert await storage.erase_user(ME.id, LATER, DATA) == first
    assert await storage.update_user(ME.id, {"deleted_at": None}) is None
    assert await storage.update_user(ME.id, {"username": "User1"}) is None
    with pytest.raises(Missing) as caught:
        await storage.change_user_roles(ME.id, "org", ["org-r"], [])
    assert caught.value.key == ME.id
    assert await storage.get_user(ME.id) == first
    assert await storage.user_organizations(ME.id, 10, 0) == ([], 0)
    assert await storage.erase_user("missing", NOW, DATA) is None


async def test_a_deleted_user_keeps_the_time_of_deletion(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.update_user(ME.id, {"deleted_at": NOW - timedelta(days=3)})
    erased = await storage.erase_user(ME.id, NOW, DATA)
    assert erased is not None
    assert erased.deleted_at == NOW - timedelta(days=3) and erased.erased_at == NOW


async def test_concurrent_erasures_and_changes_leave_one_erased_row(
        storage: SQLStorage) -> None:
    await setup(storage)
    results = await asyncio.gather(
        storage.erase_user(ME.id, NOW, DATA),
        storage.update_user(ME.id, {"username": "Renamed"}),
        storage.change_user_roles(ME.id, "org", ["org-r"], []),
        storage.erase_user(ME.id, LATER, DATA),
        storage.update_user(ME.id, {"email": "renamed@example.com"}),
        return_exceptions=True)
    assert all(not isinstance(r, Exception) or isinstance(r, Missing) for r in results), results
    u = await storage.get_user(ME.id)
    assert u is not None and u.erased_at in (NOW, LATER)  # one erasure; the other saw it
    assert (u.username, u.email) == (f"erased:{ME.id}", f"{ME.id}@erased.invalid")
    assert await storage.user_organizations(ME.id, 10, 0) == ([], 0)  # no role came back


async def test_a_reissue_racing_an_erasure_leaves_no_live_grant(storage: SQLStorage) -> None:
    """An administrator's role change with reissue, at the moment the user is erased:
    whichever goes first, no grant of theirs is left live (an erasure sees only the
    grants of its snapshot, so the reissue must wait for it and then refuse)."""
    await setup(storage)
    new = RefreshToken(digest=b"n" * 32, grant_id="g-new", client_id="app", user_id=ME.id,
                       scope="openid", created_at=NOW, expires_at=LATER)
    done, _ = await asyncio.gather(
        storage.reissue_grant("g1", grant("g-new", session_id="s1"), new, NOW),
        storage.erase_user(ME.id, NOW, DATA))
    for grant_id in ("g1", "g-new"):
        found = await storage.get_grant(grant_id)
        assert found is None or found.revoked_at is not None, (grant_id, done)
    assert not await storage.reissue_grant("g-new", grant("g-later"), replace(
        new, digest=b"l" * 32, grant_id="g-later"), NOW)  # and none after it


async def test_a_deleted_user_gets_no_reissued_grant(storage: SQLStorage) -> None:
    await setup(storage)
    await storage.update_user(ME.id, {"deleted_at": NOW})
    new = RefreshToken(digest=b"n" * 32, grant_id="g-new", client_id="app", user_id=ME.id,
                       scope="openid", created_at=NOW, expires_at=LATER)
    assert not await storage.reissue_grant("g1", grant("g-new"), new, NOW)
    assert await storage.get_grant("g-new") is None


async def _events_about(storage: SQLStorage, target: str) -> dict[str, dict[str, object]]:
    found, _ = await storage.list_events({"target": target}, 50, 0)
    return {event.id: event.detail for event in found}


async def test_an_event_written_after_its_target_was_erased_does_not_name_them(
        storage: SQLStorage) -> None:
    """The API records a change after committing it: an erasure committed in between
    took the names out of the events before it, and the late one kept them."""
    await setup(storage)
    await storage.erase_user(ME.id, NOW, DATA)
    await storage.add_event(about("e-late", ME.id, "user.update", fields=["email"],
                                  username="Renamed", email="renamed@example.com"))
    await storage.add_event(about("e-other", OTHER.id, "user.update", username="Other2"))
    assert (await _events_about(storage, ME.id))["e-late"] == {"fields": ["email"]}
    assert (await _events_about(storage, OTHER.id))["e-other"] == {"username": "Other2"}


async def test_an_event_racing_an_erasure_waits_for_it(storage: SQLStorage) -> None:
    """The erasure has not committed when the event comes: the event waits, and then
    sees it (read before it committed, the names would stay)."""
    await setup(storage)

    def erase(conn: sa.Connection) -> None:
        conn.execute(users.update().where(users.c.id == ME.id).values(erased_at=NOW))

    async def write() -> bool:
        await storage.add_event(about("e-race", ME.id, "user.create", username="User1"))
        return True

    assert await _while_changing(storage, erase, write)
    assert (await _events_about(storage, ME.id))["e-race"] == {}
