"""The sign-in session cookie: a fresh value on every sign-in (no fixation), and only
a value the server signed, for a live session, is honoured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from security_helpers import Env, authorize_url, get_code, hidden_fields, login_form, post_login

from bastion.server.models import LoginSession
from support import SESSION_COOKIE as COOKIE


async def shows_login_form(env: Env, http: httpx2.AsyncClient) -> bool:
    r = await http.get(authorize_url(env.web.client_id))
    return r.status_code == 200 and "<form" in r.text


async def test_session_cookie_after_login_differs_from_every_cookie_set_before(env: Env):
    env.http.cookies.set(COOKIE, "planted-by-attacker", domain="id.example.test")
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    before = {cookie.value for cookie in env.http.cookies.jar}
    r = await post_login(env.http, fields)
    assert r.status_code == 303
    after = env.http.cookies.get(COOKIE, domain="id.example.test")
    assert after and after not in before
    assert fields["csrf_token"] not in after


async def test_planted_valid_session_of_another_browser_is_replaced_at_login(env: Env):
    attacker = await env.browser()
    await get_code(env, http=attacker)  # the attacker signs in (as anyone)
    planted = attacker.cookies[COOKIE]
    env.http.cookies.set(COOKIE, planted, domain="id.example.test")
    fields = await login_form(env.http, authorize_url(env.web.client_id, prompt="login"))
    assert (await post_login(env.http, fields)).status_code == 303
    assert env.http.cookies.get(COOKIE, domain="id.example.test") != planted


async def test_signed_session_cookie_is_honoured(env: Env) -> None:
    # The control for the forgeries below.
    await get_code(env)
    assert not await shows_login_form(env, env.http)


def forgeries(env: Env, real: str) -> dict[str, str]:
    session_id, _, mac = real.rpartition(".")
    return {
        "unsigned": session_id,
        "wrong-mac": session_id + "." + mac[::-1],
        "empty-mac": session_id + ".",
        "other-purpose-mac": session_id + "." + env.ctx.signer.mac("csrf", session_id),
        "other-session-id": "x" + session_id + "." + mac,
        "huge": session_id + "." + "A" * 5000,
    }


@pytest.mark.parametrize("kind", ["unsigned", "wrong-mac", "empty-mac", "other-purpose-mac",
                                  "other-session-id", "huge"])
async def test_forged_session_cookie_is_ignored(env: Env, kind: str) -> None:
    await get_code(env)
    real = env.http.cookies[COOKIE]
    browser = await env.browser()
    browser.cookies.set(COOKIE, forgeries(env, real)[kind], domain="id.example.test")
    assert await shows_login_form(env, browser)
    home = await browser.get("/")
    assert "You are not signed in." in home.text
    assert 'href="/account">Sign in to your account</a>' in home.text  # not a dead end


async def test_cookie_of_an_expired_session_is_ignored(env: Env) -> None:
    past = datetime.now(UTC) - timedelta(hours=9)
    session = LoginSession(id="expired-session-id", user_id=env.user.id, auth_time=past,
                           expires_at=past + timedelta(hours=8), created_at=past)
    await env.ctx.storage.create_session(session)
    env.http.cookies.set(COOKIE, env.ctx.signer.sign("session", session.id),
                         domain="id.example.test")
    assert await shows_login_form(env, env.http)


async def test_cookie_of_a_signed_out_session_is_ignored_when_replayed(env: Env) -> None:
    await get_code(env)
    stolen = env.http.cookies[COOKIE]
    page = await env.http.get("/oauth/logout")
    assert (await env.http.post("/oauth/logout", data=hidden_fields(page.text))).status_code == 200
    replay = await env.browser()
    replay.cookies.set(COOKIE, stolen, domain="id.example.test")
    assert await shows_login_form(env, replay)
    # /oauth/authorize is guarded twice (no code is made for an ended session); the
    # home and account pages only by the session check itself.
    assert "You are not signed in." in (await replay.get("/")).text
    account = await replay.get("/account")
    assert account.status_code == 200 and 'action="/login"' in account.text
    assert "alice@example.com" not in account.text


async def test_session_cookie_flags(env: Env) -> None:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    cookie = (await post_login(env.http, fields)).headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
