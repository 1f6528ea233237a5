"""Refresh tokens: opaque, single use, rotated, bound to their client; a reused one
revokes its whole family (RFC 9700 section 4.14.2)."""

from __future__ import annotations

import secrets as _secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from security_helpers import (
    REDIRECT,
    Env,
    Registered,
    assert_reuse_recorded,
    exchange,
    get_code,
    oauth_error,
    reuse_count,
)

from bastion.server.models import Grant
from bastion.server.services import secrets
from bastion.server.services.clients import create_client, update_client
from bastion.server.services.tokens import new_refresh_token
from bastion.server.storage.tables import grants


async def _tokens(env: Env, scope: str = "openid read") -> dict[str, str]:
    r = await env.password_grant(scope=scope)
    assert r.status_code == 200, r.text
    return r.json()


async def test_refresh_rotates_and_the_old_token_is_spent(env: Env) -> None:
    first = await _tokens(env)
    live = await env.introspect(first["refresh_token"])
    assert live["active"] is True and live["client_id"] == env.web.client_id
    assert "token_type" not in live  # RFC 7662 2.2: an access token type (Bearer) only
    r = await env.refresh(first["refresh_token"])
    assert r.status_code == 200
    assert r.json()["refresh_token"] != first["refresh_token"]
    assert await env.introspect(first["refresh_token"]) == {"active": False}


async def test_reuse_of_a_rotated_token_revokes_the_whole_family(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    first = await _tokens(env)
    second = (await env.refresh(first["refresh_token"])).json()
    third = (await env.refresh(second["refresh_token"])).json()
    before = reuse_count("refresh_token")
    assert oauth_error(await env.refresh(first["refresh_token"])) == "invalid_grant"
    # replays after the family is revoked are refused the same, and recorded once
    for token in (first, second, first):
        replay = await env.refresh(token["refresh_token"])
        assert oauth_error(replay) == "invalid_grant" and "already used" in replay.text
    await assert_reuse_recorded(env, "refresh_token", first["refresh_token"], caplog.text,
                                before)
    # every generation is gone: refresh tokens and access tokens
    assert oauth_error(await env.refresh(third["refresh_token"])) == "invalid_grant"
    for generation in (first, second, third):
        assert await env.introspect(generation["access_token"]) == {"active": False}
    assert (await env.userinfo(third["access_token"])).status_code == 401


@pytest.mark.parametrize("narrowed", [False, True], ids=["as-registered", "client-narrowed"])
async def test_a_replay_asking_for_a_scope_is_still_detected_as_reuse(
        env: Env, caplog: pytest.LogCaptureFixture, narrowed: bool) -> None:
    # Many libraries send their first scope on every refresh: a spent token sent so,
    # asking more than is left (or than it ever had), must still revoke its family.
    first = await _tokens(env, scope="openid read")
    second = (await env.refresh(first["refresh_token"])).json()
    if narrowed:
        await update_client(env.ctx.storage, env.web.client_id, scopes=["openid"])
        env.ctx.clients.forget(env.web.client_id)
    before = reuse_count("refresh_token")
    replay = await env.token(env.web, grant_type="refresh_token", scope="openid read write",
                             refresh_token=first["refresh_token"])
    assert oauth_error(replay) == "invalid_grant" and "already used" in replay.text
    await assert_reuse_recorded(env, "refresh_token", first["refresh_token"], caplog.text,
                                before)
    assert oauth_error(await env.refresh(second["refresh_token"])) == "invalid_grant"


async def test_reuse_does_not_touch_other_families_of_the_same_user(env: Env) -> None:
    victim, bystander = await _tokens(env), await _tokens(env)
    await env.refresh(victim["refresh_token"])
    await env.refresh(victim["refresh_token"])  # reuse
    assert (await env.refresh(bystander["refresh_token"])).status_code == 200


async def test_refresh_token_of_another_client_is_invalid_grant(env: Env) -> None:
    tokens = await _tokens(env)
    r = await env.refresh(tokens["refresh_token"], client=env.other)
    assert oauth_error(r) == "invalid_grant"
    # and the owner can still use it: a foreign client cannot burn it
    assert (await env.refresh(tokens["refresh_token"])).status_code == 200


async def test_refresh_cannot_widen_the_scope(env: Env) -> None:
    tokens = await _tokens(env, scope="openid")
    r = await env.token(env.web, grant_type="refresh_token",
                        refresh_token=tokens["refresh_token"], scope="openid read")
    assert oauth_error(r) == "invalid_scope"


async def test_a_refresh_asking_only_for_scopes_never_granted_is_refused(env: Env) -> None:
    # Optional scopes left out of the grant are left out again, but none left is not
    # a token of no scope: RFC 6749 section 6 forbids a scope not granted.
    tokens = await _tokens(env, scope="openid")
    r = await env.token(env.web, grant_type="refresh_token",
                        refresh_token=tokens["refresh_token"], scope="phone offline_access")
    assert oauth_error(r) == "invalid_scope"
    r = await env.token(env.web, grant_type="refresh_token",  # not spent by the refusal
                        refresh_token=tokens["refresh_token"], scope="openid phone")
    assert r.status_code == 200 and r.json()["scope"] == "openid"


async def test_a_narrower_scope_narrows_the_access_token_not_the_refresh_token(
        env: Env) -> None:
    # RFC 6749 section 6: the new refresh token's scope is identical to the old one's.
    tokens = await _tokens(env, scope="openid read")
    narrow = await env.token(env.web, grant_type="refresh_token",
                             refresh_token=tokens["refresh_token"], scope="read")
    assert narrow.status_code == 200 and narrow.json()["scope"] == "read"
    assert (await env.introspect(narrow.json()["access_token"]))["scope"] == "read"
    full = await env.token(env.web, grant_type="refresh_token",
                           refresh_token=narrow.json()["refresh_token"], scope="openid read")
    assert full.status_code == 200 and full.json()["scope"] == "openid read"
    assert "id_token" in full.json()


async def test_a_refresh_drops_the_scopes_the_client_is_no_longer_registered_for(
        env: Env) -> None:
    tokens = await _tokens(env, scope="openid read")
    await update_client(env.ctx.storage, env.web.client_id, scopes=["openid"])
    env.ctx.clients.forget(env.web.client_id)
    r = await env.refresh(tokens["refresh_token"])
    assert r.status_code == 200 and r.json()["scope"] == "openid", r.text
    assert (await env.introspect(r.json()["access_token"]))["scope"] == "openid"
    # Asked for again, as a sign-in would: refused, and the answer names it.
    wider = await env.token(env.web, grant_type="refresh_token",
                            refresh_token=r.json()["refresh_token"], scope="openid read")
    assert oauth_error(wider) == "invalid_scope"
    assert wider.json()["error_description"].endswith("for this client: read.")
    # Registered again, the family does not get it back: it takes a new sign-in.
    await update_client(env.ctx.storage, env.web.client_id, scopes=["openid", "read"])
    env.ctx.clients.forget(env.web.client_id)
    r = await env.refresh(r.json()["refresh_token"])
    assert r.status_code == 200 and r.json()["scope"] == "openid", r.text
    assert oauth_error(await env.token(env.web, grant_type="refresh_token", scope="read",
                                       refresh_token=r.json()["refresh_token"])) == "invalid_scope"


async def test_a_grant_left_with_no_scope_is_revoked(env: Env) -> None:
    tokens = await _tokens(env, scope="read")
    await update_client(env.ctx.storage, env.web.client_id, scopes=["openid"])
    env.ctx.clients.forget(env.web.client_id)
    r = await env.refresh(tokens["refresh_token"])
    assert oauth_error(r) == "invalid_grant" and "sign in again" in r.json()["error_description"]
    assert (await env.introspect(tokens["access_token"]))["active"] is False  # family gone
    await update_client(env.ctx.storage, env.web.client_id, scopes=["openid", "read"])
    env.ctx.clients.forget(env.web.client_id)
    assert oauth_error(await env.refresh(tokens["refresh_token"])) == "invalid_grant"


async def test_refresh_token_of_a_revoked_grant_is_inactive_and_refused(env: Env) -> None:
    # The state a replayed code can leave: the grant is revoked, but its first exchange
    # stored its refresh token after the revocation, so the token row itself is live.
    tokens = await _tokens(env)
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.execute(grants.update().values(revoked_at=datetime.now(UTC)))
    assert await env.introspect(tokens["refresh_token"]) == {"active": False}
    assert oauth_error(await env.refresh(tokens["refresh_token"])) == "invalid_grant"


async def test_revoked_refresh_token_is_invalid_grant(env: Env) -> None:
    tokens = await _tokens(env)
    r = await env.http.post("/oauth/revoke", data={"token": tokens["refresh_token"]},
                            auth=env.web.auth)
    assert r.status_code == 200
    assert oauth_error(await env.refresh(tokens["refresh_token"])) == "invalid_grant"
    assert await env.introspect(tokens["access_token"]) == {"active": False}


async def test_expired_refresh_token_is_invalid_grant(env: Env) -> None:
    past = datetime.now(UTC) - timedelta(days=31)
    grant = Grant(id=_secrets.token_urlsafe(18), client_id=env.web.client_id,
                  user_id=env.user.id, session_id=None, scope="openid", auth_time=past,
                  created_at=past)
    plain, record = new_refresh_token(env.ctx.settings, grant, "openid")
    record = replace(record, created_at=past, expires_at=past + timedelta(days=30))
    await env.ctx.storage.create_grant(grant, record)
    assert await env.introspect(plain) == {"active": False}
    assert oauth_error(await env.refresh(plain)) == "invalid_grant"


async def test_a_family_ends_at_its_max_lifetime_however_often_it_is_refreshed(
        make_env: Any) -> None:
    env = await make_env(refresh_token_max_lifetime=3600)
    first = await _tokens(env)
    grant = await env.ctx.storage.get_grant(
        (await env.ctx.storage.get_refresh_token(secrets.digest(first["refresh_token"])))
        .grant_id)  # type: ignore[union-attr]
    assert grant is not None
    end = grant.auth_time + timedelta(seconds=3600)  # not 30 days (refresh_token_ttl)
    second = (await env.refresh(first["refresh_token"])).json()
    stored = await env.ctx.storage.get_refresh_token(secrets.digest(second["refresh_token"]))
    assert stored is not None and stored.expires_at == end  # not pushed back by the refresh

    # a family that signed in over an hour ago: its token is expired, the user signs in
    # again
    past = datetime.now(UTC) - timedelta(hours=2)
    old = replace(grant, id=_secrets.token_urlsafe(18), auth_time=past, created_at=past)
    plain, record = new_refresh_token(env.ctx.settings, old, "openid")
    assert record.expires_at == past + timedelta(seconds=3600)
    await env.ctx.storage.create_grant(old, record)
    assert oauth_error(await env.refresh(plain)) == "invalid_grant"


async def test_unknown_refresh_token_is_invalid_grant(env: Env) -> None:
    assert oauth_error(await env.refresh(secrets.new_secret())) == "invalid_grant"


async def test_no_refresh_token_for_a_client_without_the_refresh_grant(env: Env) -> None:
    new = await create_client(env.ctx.storage, name="NoRefresh", redirect_uris=[REDIRECT],
                              grant_types=["authorization_code"], scopes=["openid"])
    client = Registered(new.client.client_id, new.client_secret)
    body = (await exchange(env, await get_code(env, client.client_id), client=client)).json()
    assert "access_token" in body and "refresh_token" not in body


async def test_refresh_is_refused_once_the_client_loses_the_refresh_grant(env: Env) -> None:
    tokens = (await env.password_grant(scope="openid")).json()
    await update_client(env.ctx.storage, env.web.client_id,
                        grant_types=["authorization_code", "password"])
    env.ctx.clients.forget(env.web.client_id)
    assert oauth_error(await env.refresh(tokens["refresh_token"])) == "unauthorized_client"
