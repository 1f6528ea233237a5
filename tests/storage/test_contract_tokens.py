"""The storage contract for the token-path statements (run through ``prepared`` on
SQLite): round trips of every record they read, code consumption, refresh rotation and
revocation checks, on SQLite and on a real PostgreSQL cluster."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from test_contract import NOW, grant, member_of, user

from bastion.server.models import (
    AuthorizationCode,
    Event,
    LoginSession,
    OneTimeToken,
    Organization,
    OutgoingMail,
    RefreshToken,
)
from bastion.server.storage import SQLStorage
from bastion.server.storage.base import Conflict

LATER = NOW + timedelta(hours=1)


def refresh(digest: bytes, grant_id: str = "g1", expires_at=LATER) -> RefreshToken:
    return RefreshToken(digest=digest, grant_id=grant_id, client_id="app", user_id=user().id,
                        scope="openid", created_at=NOW, expires_at=expires_at)


async def test_records_read_by_their_key_keep_every_field(store: SQLStorage) -> None:
    session = LoginSession(id="s1", user_id=user().id, auth_time=NOW, expires_at=LATER,
                           created_at=NOW, user_agent="Firefox")
    await store.create_session(session)
    assert await store.get_session("s1") == session
    assert await store.get_session("s2") is None

    await member_of(store, "org")
    await store.extend_session("s1", NOW)  # never earlier
    assert await store.get_session("s1") == session
    await store.extend_session("s1", LATER + timedelta(hours=1))
    assert (await store.get_session("s1")).expires_at == LATER + timedelta(hours=1)  # type: ignore[union-attr]
    await store.revoke_session("s1", LATER)
    await store.extend_session("s1", LATER + timedelta(hours=2))  # nor a revoked one
    assert (await store.get_session("s1")).expires_at == LATER + timedelta(hours=1)  # type: ignore[union-attr]
    session = replace(session, expires_at=LATER + timedelta(hours=1), revoked_at=LATER)

    revoked = grant(session_id="s1", revoked_at=LATER, organization_id="org")
    await store.create_grant(revoked, refresh(b"r" * 32))
    assert await store.get_grant("g1") == revoked
    assert await store.get_refresh_token(b"r" * 32) == refresh(b"r" * 32)
    assert await store.get_refresh_token(b"x" * 32) is None

    mail = OutgoingMail(id="m1", to="a@example.com", subject="Hi", text="t", html="<p>t</p>",
                        created_at=NOW)
    await store.enqueue_mail(mail)
    assert await store.get_mail("m1") == replace(mail, next_attempt_at=NOW)  # due at once

    link = OneTimeToken(digest=b"o" * 32, purpose="sign_in", email="a@example.com",
                        user_id=None, client_id="app", payload={"return_to": "x", "n": [1, 2]},
                        created_at=NOW, expires_at=LATER)
    await store.create_one_time_token(link)
    assert await store.get_one_time_token(b"o" * 32) == link


async def test_an_organization_is_found_by_id_or_by_name_in_any_case(store: SQLStorage) -> None:
    org = Organization(id="o1", name="Acme", created_at=NOW)
    await store.create_organization(org)
    assert await store.get_organization("o1") == org
    assert await store.get_organization("ACME") == org
    assert await store.get_organization("other") is None


async def test_a_code_is_consumed_once(store: SQLStorage) -> None:
    code = AuthorizationCode(digest=b"c" * 32, client_id="app", user_id=user().id,
                             session_id=None, grant_id="g1", redirect_uri="https://app.example/cb",
                             scope="openid", nonce="n", code_challenge="x" * 43, auth_time=NOW,
                             expires_at=LATER)
    await store.create_code(code, grant())
    results = await asyncio.gather(*(store.consume_code(b"c" * 32, NOW, "app") for _ in range(5)))
    assert sorted(first for _, first in results) == [False] * 4 + [True]
    assert {found for found, _ in results} == {replace(code, consumed_at=NOW)}
    assert await store.consume_code(b"x" * 32, NOW, "app") == (None, False)


async def test_a_code_is_not_used_up_by_another_client_or_once_expired(store: SQLStorage) -> None:
    code = AuthorizationCode(digest=b"c" * 32, client_id="app", user_id=user().id,
                             session_id=None, grant_id="g1", redirect_uri="https://app.example/cb",
                             scope="openid", nonce=None, code_challenge=None, auth_time=NOW,
                             expires_at=LATER)
    await store.create_code(code, grant())
    assert await store.consume_code(b"c" * 32, NOW, "other") == (code, False)
    assert await store.consume_code(b"c" * 32, LATER, "app") == (code, False)  # expired
    assert await store.consume_code(b"c" * 32, NOW, "app") == (
        replace(code, consumed_at=NOW), True)


async def test_a_refresh_token_rotates_once_then_its_reuse_revokes_the_family(
        store: SQLStorage) -> None:
    await store.create_grant(grant(), refresh(b"1" * 32))
    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"2" * 32), NOW) == "rotated"
    assert (await store.get_refresh_token(b"1" * 32)).used_at == NOW  # type: ignore[union-attr]
    assert await store.get_refresh_token(b"2" * 32) == refresh(b"2" * 32)

    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"3" * 32), NOW) == "reused"
    assert (await store.get_grant("g1")).revoked_at == NOW  # type: ignore[union-attr]
    assert (await store.get_refresh_token(b"2" * 32)).revoked_at == NOW  # type: ignore[union-attr]
    assert await store.get_refresh_token(b"3" * 32) is None
    # the family is revoked already: later reuses revoke nothing more
    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"4" * 32), NOW) == "replayed"
    assert not await store.revoke_grant("g1", LATER)
    assert (await store.get_grant("g1")).revoked_at == NOW  # type: ignore[union-attr]


async def test_of_concurrent_reuses_of_one_token_one_revokes_the_family(
        store: SQLStorage) -> None:
    await store.create_grant(grant(), refresh(b"1" * 32))
    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"2" * 32), NOW) == "rotated"
    results = await asyncio.gather(*(
        store.rotate_refresh_token(b"1" * 32, refresh(bytes([n]) * 32), NOW)
        for n in range(10)))
    assert sorted(results) == ["replayed"] * 9 + ["reused"]


async def test_an_unknown_or_expired_refresh_token_does_not_rotate(store: SQLStorage) -> None:
    await store.create_grant(grant(), refresh(b"1" * 32, expires_at=NOW))
    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"2" * 32), NOW) == "invalid"
    assert await store.rotate_refresh_token(b"9" * 32, refresh(b"3" * 32), NOW) == "invalid"
    assert await store.get_refresh_token(b"2" * 32) is None
    assert (await store.get_grant("g1")).revoked_at is None  # type: ignore[union-attr]


async def test_revocation_is_seen_by_token_id_and_by_grant(store: SQLStorage) -> None:
    await store.create_grant(grant(), None)
    assert not await store.is_revoked("jti-1", "g1")
    assert not await store.is_revoked("jti-1", None)

    assert await store.revoke_access_token("jti-1", LATER)
    assert not await store.revoke_access_token("jti-1", LATER)  # twice is fine: said
    assert await store.is_revoked("jti-1", None)
    assert await store.is_revoked("jti-1", "g1")
    assert not await store.is_revoked("jti-2", "g1")

    await store.revoke_grant("g1", NOW)
    assert await store.is_revoked("jti-2", "g1")
    assert not await store.is_revoked("jti-2", None)


async def test_revoking_a_users_sessions_can_keep_one(store: SQLStorage) -> None:
    """A password change: every session but the browser's own ends, every grant (the
    kept session's too) and its refresh tokens are revoked, other users untouched."""
    await store.create_user(user(2))
    for session_id, owner in (("s1", user()), ("s2", user()), ("s3", user(2))):
        await store.create_session(LoginSession(id=session_id, user_id=owner.id, auth_time=NOW,
                                                expires_at=LATER, created_at=NOW,
                                                user_agent=""))
    await store.create_grant(grant("g1", session_id="s1"), refresh(b"1" * 32, "g1"))
    await store.create_grant(grant("g2", session_id="s2"), None)
    await store.create_grant(grant("g3"), refresh(b"3" * 32, "g3"))  # a password grant
    await store.create_grant(grant("g4", user_id=user(2).id, session_id="s3"), None)

    assert await store.revoke_user_sessions(user().id, NOW, keep_session="s1") == 4
    assert [(await store.get_session(s)).revoked_at  # type: ignore[union-attr]
            for s in ("s1", "s2", "s3")] == [None, NOW, None]
    assert [(await store.get_grant(g)).revoked_at  # type: ignore[union-attr]
            for g in ("g1", "g2", "g3", "g4")] == [NOW, NOW, NOW, None]
    assert (await store.get_refresh_token(b"3" * 32)).revoked_at == NOW  # type: ignore[union-attr]
    assert await store.revoke_user_sessions(user().id, NOW) == 1  # then the kept one too


async def test_a_user_change_and_the_end_of_their_sessions_are_one_transaction(
        store: SQLStorage) -> None:
    """A new password ends the other sessions in the same transaction: a change that
    fails (here a taken username) revokes nothing, one that succeeds revokes both."""
    await store.create_user(user(2))
    for session_id in ("s1", "s2"):
        await store.create_session(LoginSession(id=session_id, user_id=user().id, auth_time=NOW,
                                                expires_at=LATER, created_at=NOW,
                                                user_agent=""))
    await store.create_grant(grant("g1", session_id="s2"), refresh(b"1" * 32, "g1"))
    with pytest.raises(Conflict):
        await store.update_user(user().id, {"password_hash": "$argon2id$new",
                                            "username": user(2).username},
                                end_sessions_at=NOW, keep_session="s1")
    assert (await store.get_session("s2")).revoked_at is None  # type: ignore[union-attr]
    assert (await store.get_grant("g1")).revoked_at is None  # type: ignore[union-attr]

    changed = await store.update_user(user().id, {"password_hash": "$argon2id$new"},
                                      end_sessions_at=NOW, keep_session="s1")
    assert changed is not None and changed.password_hash == "$argon2id$new"
    assert [(await store.get_session(s)).revoked_at  # type: ignore[union-attr]
            for s in ("s1", "s2")] == [None, NOW]
    assert (await store.get_refresh_token(b"1" * 32)).revoked_at == NOW  # type: ignore[union-attr]


async def test_a_refresh_token_of_a_revoked_grant_is_not_stored(store: SQLStorage) -> None:
    await store.create_grant(grant("g1"), None)
    await store.revoke_grant("g1", NOW)
    assert not await store.create_refresh_token(refresh(b"1" * 32, "g1"))
    assert await store.get_refresh_token(b"1" * 32) is None
    assert not await store.create_refresh_token(refresh(b"2" * 32, "no-such-grant"))
    await store.create_grant(grant("g2"), None)
    assert await store.create_refresh_token(refresh(b"3" * 32, "g2"))
    assert await store.get_refresh_token(b"3" * 32) is not None


async def test_a_refresh_token_of_a_revoked_grant_does_not_rotate(store: SQLStorage) -> None:
    # The grant may be revoked between the refresh grant's read and its rotation.
    await store.create_grant(grant(), refresh(b"1" * 32))
    assert await store.revoke_grant("g1", NOW)
    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"2" * 32), NOW) != "rotated"
    assert await store.get_refresh_token(b"2" * 32) is None


async def test_of_concurrent_reissues_of_one_family_exactly_one_succeeds(
        store: SQLStorage) -> None:
    await store.create_grant(grant("g1"), refresh(b"1" * 32))
    done = await asyncio.gather(*(
        store.reissue_grant("g1", grant(f"n{i}"), refresh(bytes([i]) * 32, f"n{i}"), NOW)
        for i in range(5)))
    assert sorted(done) == [False] * 4 + [True]
    winner = done.index(True)
    assert (await store.get_grant("g1")).revoked_at == NOW  # type: ignore[union-attr]
    assert (await store.get_refresh_token(b"1" * 32)).revoked_at == NOW  # type: ignore[union-attr]
    assert await store.get_refresh_token(bytes([winner]) * 32) == refresh(
        bytes([winner]) * 32, f"n{winner}")
    assert [await store.get_grant(f"n{i}") is not None for i in range(5)] == [
        i == winner for i in range(5)]
    # A family revoked first (by a revoke-all) is not brought back either.
    await store.revoke_grant(f"n{winner}", NOW)
    assert not await store.reissue_grant(f"n{winner}", grant("n9"), refresh(b"9" * 32, "n9"),
                                         NOW)
    assert await store.get_grant("n9") is None


def _event(event_id: str, action: str = "token.reuse") -> Event:
    return Event(id=event_id, at=NOW, action=action, actor="app", actor_type="client",
                 target=user().id, client_id="app", ip=None, detail={"grant": "g1"})


async def _actions(store: SQLStorage) -> list[str]:
    found, _ = await store.list_events({"target": user().id}, 50, 0)
    return sorted(event.id for event in found)


async def test_a_revocation_and_its_audit_event_are_one_transaction(store: SQLStorage) -> None:
    """The event was written after the revocation committed: a crash between (seen
    with SIGKILL, 3 times in 40) revoked a family for theft and recorded nothing, for
    good, as later replays record nothing by design."""
    await store.create_grant(grant(), refresh(b"1" * 32))
    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"2" * 32), NOW,
                                            lambda: _event("e-not")) == "rotated"
    assert await _actions(store) == []  # no reuse, no event
    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"3" * 32), NOW,
                                            lambda: _event("e1")) == "reused"
    assert await store.rotate_refresh_token(b"1" * 32, refresh(b"4" * 32), NOW,
                                            lambda: _event("e2")) == "replayed"
    assert not await store.revoke_grant("g1", NOW, _event("e3", "token.revoke"))
    assert await store.revoke_access_token("j1", LATER, _event("e4", "token.revoke"))
    assert not await store.revoke_access_token("j1", LATER, _event("e5", "token.revoke"))
    assert await _actions(store) == ["e1", "e4"]  # once each: what did the revoking
    # An event that cannot be stored (its id is taken) takes the revocation with it.
    await store.create_grant(grant("g2"), refresh(b"5" * 32, "g2"))
    with pytest.raises(IntegrityError):
        await store.revoke_grant("g2", NOW, _event("e1", "token.revoke"))
    assert (await store.get_grant("g2")).revoked_at is None  # type: ignore[union-attr]
    assert await store.revoke_grant("g2", NOW, _event("e6", "token.revoke"))
    # (an access token's is refused as a conflict: no revocation stored either)
    assert not await store.revoke_access_token("j2", LATER, _event("e6", "token.revoke"))
    assert not await store.is_revoked("j2", None)
