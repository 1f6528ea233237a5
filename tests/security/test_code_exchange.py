"""Authorization codes: single use, short-lived, bound to their client and redirect
URI (RFC 6749 section 4.1.2 and 4.1.3; RFC 9700 section 4.5)."""

from __future__ import annotations

import secrets as _secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from security_helpers import (
    REDIRECT,
    REDIRECT_WITH_QUERY,
    SPA_REDIRECT,
    Env,
    Registered,
    assert_reuse_recorded,
    exchange,
    get_code,
    oauth_error,
    reuse_count,
)

from bastion.oauth import pkce
from bastion.server.models import AuthorizationCode, Grant
from bastion.server.services import secrets
from bastion.server.services.clients import create_client
from bastion.server.storage.tables import authorization_codes, refresh_tokens


async def test_replayed_code_is_invalid_grant(env: Env) -> None:
    code = await get_code(env)
    assert (await exchange(env, code)).status_code == 200
    assert oauth_error(await exchange(env, code)) == "invalid_grant"


async def test_replayed_code_revokes_the_tokens_of_its_first_use(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    code = await get_code(env)
    first = (await exchange(env, code)).json()
    assert (await env.introspect(first["access_token"]))["active"] is True
    before = reuse_count("authorization_code")
    await exchange(env, code)  # the replay
    await exchange(env, code)  # and another: the family is revoked already
    await assert_reuse_recorded(env, "authorization_code", code, caplog.text, before)
    assert await env.introspect(first["access_token"]) == {"active": False}
    assert await env.introspect(first["refresh_token"]) == {"active": False}
    assert oauth_error(await env.refresh(first["refresh_token"])) == "invalid_grant"
    assert (await env.userinfo(first["access_token"])).status_code == 401


async def test_a_replay_during_the_first_exchange_leaves_it_no_refresh_token(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # The replay lands after the first exchange has read the grant and before it
    # stores its refresh token: the first exchange must not store a live one.
    code = await get_code(env)
    storage = env.ctx.storage
    read_user, replays = storage.get_user, []

    async def get_user(user_id: str) -> Any:
        if not replays:
            replays.append(await exchange(env, code))
        return await read_user(user_id)

    monkeypatch.setattr(storage, "get_user", get_user)
    first = await exchange(env, code)
    assert oauth_error(replays[0]) == "invalid_grant"
    assert oauth_error(first) == "invalid_grant"
    engine = storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        live = await conn.scalar(sa.select(sa.func.count()).select_from(refresh_tokens)
                                 .where(refresh_tokens.c.revoked_at.is_(None)))
    assert live == 0


async def test_code_issued_to_another_client_is_invalid_grant(env: Env) -> None:
    code = await get_code(env)  # for the web client
    r = await exchange(env, code, client=env.other)
    assert oauth_error(r) == "invalid_grant"
    assert "access_token" not in r.text


async def test_code_issued_to_another_client_is_refused_for_a_public_client_too(env: Env):
    code = await get_code(env)
    r = await exchange(env, code, client=env.spa, redirect_uri=REDIRECT,
                       verifier=pkce.new_verifier())
    assert oauth_error(r) == "invalid_grant"


async def test_another_client_presenting_a_code_does_not_use_it_up(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    # A leaked code sent with some other client's id (a public one needs no secret)
    # must neither spend it nor raise a replay alarm that blames the real app.
    code = await get_code(env)
    before = reuse_count("authorization_code")
    for other in (env.other, env.spa):
        r = await exchange(env, code, client=other, redirect_uri=REDIRECT,
                           verifier=pkce.new_verifier())
        assert oauth_error(r) == "invalid_grant"
    assert (await exchange(env, code)).status_code == 200
    assert reuse_count("authorization_code") == before
    assert "presented again" not in caplog.text


async def _stored_code(env: Env, *, expires_at: datetime) -> str:
    """A code row written straight through the storage API (e.g. already expired)."""
    now = datetime.now(UTC)
    grant = Grant(id=_secrets.token_urlsafe(18), client_id=env.web.client_id,
                  user_id=env.user.id, session_id=None, scope="openid",
                  auth_time=now - timedelta(minutes=5), created_at=now - timedelta(minutes=5))
    plain = secrets.new_secret()
    await env.ctx.storage.create_code(AuthorizationCode(
        digest=secrets.digest(plain), client_id=env.web.client_id, user_id=env.user.id,
        session_id=None, grant_id=grant.id, redirect_uri=REDIRECT, scope="openid", nonce=None,
        code_challenge=None, auth_time=grant.auth_time, expires_at=expires_at), grant)
    return plain


async def test_another_client_presenting_a_used_code_revokes_nothing(env: Env) -> None:
    # A replay revokes what the code issued, but only a replay by the client it was
    # issued to: any other (a public one needs no secret) could else end a victim's
    # tokens with a leaked code.
    code = await get_code(env)
    first = (await exchange(env, code)).json()
    before = reuse_count("authorization_code")
    assert oauth_error(await exchange(env, code, client=env.other)) == "invalid_grant"
    assert oauth_error(await exchange(env, code, client=env.spa,
                                      verifier=pkce.new_verifier())) == "invalid_grant"
    assert reuse_count("authorization_code") == before
    assert (await env.introspect(first["access_token"]))["active"] is True
    assert (await env.refresh(first["refresh_token"])).status_code == 200


async def test_a_fresh_stored_code_is_accepted(env: Env) -> None:
    # The control for the next test: the hand-written row is a valid code.
    code = await _stored_code(env, expires_at=datetime.now(UTC) + timedelta(seconds=60))
    assert (await exchange(env, code)).status_code == 200


async def test_expired_code_is_invalid_grant(env: Env) -> None:
    code = await _stored_code(env, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    r = await exchange(env, code)
    assert oauth_error(r) == "invalid_grant"
    assert "expired" in r.json()["error_description"]


async def test_an_expired_code_presented_twice_is_no_replay(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    code = await _stored_code(env, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    before = reuse_count("authorization_code")
    for _ in range(2):
        r = await exchange(env, code)
        assert "expired" in r.json()["error_description"]
    assert reuse_count("authorization_code") == before
    assert "presented again" not in caplog.text


async def test_a_used_code_replayed_after_it_expired_still_revokes(env: Env) -> None:
    code = await get_code(env)
    first = (await exchange(env, code)).json()
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:  # its ttl has passed since
        await conn.execute(authorization_codes.update().values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    r = await exchange(env, code)
    assert "already used" in r.json()["error_description"]
    assert await env.introspect(first["refresh_token"]) == {"active": False}


async def test_unknown_code_is_invalid_grant(env: Env) -> None:
    assert oauth_error(await exchange(env, secrets.new_secret())) == "invalid_grant"


@pytest.mark.parametrize("sent", [
    REDIRECT_WITH_QUERY,  # registered for the client, but not the one in the request
    REDIRECT + "/",
    REDIRECT.upper(),
    "https://evil.example/callback",
], ids=["other-registered", "trailing-slash", "case", "foreign"])
async def test_redirect_uri_differing_from_the_authorization_request_is_invalid_grant(
        env: Env, sent: str) -> None:
    code = await get_code(env)
    r = await exchange(env, code, redirect_uri=sent)
    assert oauth_error(r) == "invalid_grant"
    assert "redirect_uri" in r.json()["error_description"]


async def test_missing_redirect_uri_when_the_request_had_one_is_invalid_grant(env: Env):
    code = await get_code(env)
    assert oauth_error(await exchange(env, code, redirect_uri=None)) == "invalid_grant"


async def test_redirect_uri_may_be_omitted_when_the_authorization_request_omitted_it(
        env: Env) -> None:
    verifier = pkce.new_verifier()
    # A client with one registered redirect URI, in a plain OAuth request (no scope
    # openid, asked for or by default: OpenID Connect requires redirect_uri).
    app = await create_client(env.ctx.storage, name="API app", public=True,
                              redirect_uris=[SPA_REDIRECT], scopes=["read"],
                              grant_types=["authorization_code", "refresh_token"])
    code = await get_code(env, app.client.client_id, redirect_uri=SPA_REDIRECT,
                          verifier=verifier, send_redirect_uri=False, scope="")
    r = await exchange(env, code, client=Registered(app.client.client_id, None),
                       redirect_uri=None, verifier=verifier)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "read" and "id_token" not in r.json()
