"""CSRF protection of the hosted forms: the login form and the logout confirmation.

The form token is the MAC of the browser's own CSRF cookie, so a token copied from
another browser, a forged one, or a missing one is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx2
import pytest
from security_helpers import (
    LOGOUT_TARGET,
    PASSWORD,
    Env,
    authorize_url,
    exchange,
    get_code,
    hidden_fields,
    location_params,
    login_form,
    post_login,
)

from bastion.oauth.jose import parse_compact
from bastion.server.services.sessions import public_sid
from bastion.server.services.users import create_user
from bastion.server.storage.tables import login_sessions
from support import CSRF_COOKIE, SESSION_COOKIE


async def signed_in(env: Env, http: httpx2.AsyncClient) -> bool:
    r = await http.get(authorize_url(env.web.client_id, prompt="none"))
    return "code" in location_params(r)


def assert_refused_login(r: httpx2.Response) -> None:
    assert r.status_code == 400
    assert "This form has expired" in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


async def test_login_with_a_valid_token_is_accepted(env: Env) -> None:
    # The control for the refusals below.
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    assert (await post_login(env.http, fields)).status_code == 303
    assert await signed_in(env, env.http)


async def test_login_without_csrf_token_is_refused(env: Env) -> None:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    del fields["csrf_token"]
    assert_refused_login(await post_login(env.http, fields))
    assert not await signed_in(env, env.http)


@pytest.mark.parametrize("token", ["forged", "", "A" * 43, "x" * 5000])
async def test_login_with_a_wrong_csrf_token_is_refused(env: Env, token: str) -> None:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    assert_refused_login(await post_login(env.http, {**fields, "csrf_token": token}))
    assert not await signed_in(env, env.http)


async def test_login_with_the_token_of_another_browsers_cookie_is_refused(env: Env) -> None:
    attacker = await env.browser()
    attacker_fields = await login_form(attacker, authorize_url(env.web.client_id))
    victim_fields = await login_form(env.http, authorize_url(env.web.client_id))
    assert attacker_fields["csrf_token"] != victim_fields["csrf_token"]
    assert_refused_login(await post_login(env.http, attacker_fields))
    assert not await signed_in(env, env.http)


async def test_login_without_the_csrf_cookie_is_refused(env: Env) -> None:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    env.http.cookies.delete(CSRF_COOKIE)
    assert_refused_login(await post_login(env.http, fields))


async def test_csrf_cookie_is_httponly_samesite_lax_and_secure(env: Env) -> None:
    # SameSite=Lax: a cross-site POST does not carry it; HttpOnly: scripts cannot read it.
    page = await env.http.get(authorize_url(env.web.client_id))
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(CSRF_COOKIE + "=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie


@pytest.mark.parametrize("page", ["login", "account", "error"])
async def test_login_page_cannot_be_framed(env: Env, page: str) -> None:
    # Every hosted page: not framed, not cached, no referrer (a URL with a code or a
    # link's token in it goes nowhere), its type never sniffed.
    if page == "account":
        await get_code(env)  # signed in
    url = {"login": authorize_url(env.web.client_id), "account": "/account",
           "error": "/oauth/authorize?client_id=unknown"}[page]
    r = await env.http.get(url)
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    # an https issuer's: never over http again (no SSL stripping of the sign-in form)
    assert r.headers["strict-transport-security"] == "max-age=31536000"


# -- the logout confirmation form -------------------------------------------------


async def logout_confirmation(env: Env, http: httpx2.AsyncClient) -> dict[str, str]:
    page = await http.get("/oauth/logout")  # no id_token_hint: the user must confirm
    assert page.status_code == 200 and 'action="/oauth/logout"' in page.text
    return hidden_fields(page.text)


async def test_logout_without_hint_only_asks_for_confirmation(env: Env) -> None:
    await get_code(env)
    await logout_confirmation(env, env.http)
    assert await signed_in(env, env.http)


async def test_confirmed_logout_with_a_valid_token_signs_out(env: Env) -> None:
    await get_code(env)
    fields = await logout_confirmation(env, env.http)
    r = await env.http.post("/oauth/logout", data=fields)
    assert r.status_code == 200 and "signed out" in r.text
    assert not await signed_in(env, env.http)


@pytest.mark.parametrize("token", ["", "forged"])
async def test_logout_post_without_a_valid_csrf_token_is_refused(env: Env, token: str) -> None:
    await get_code(env)
    fields = await logout_confirmation(env, env.http)
    r = await env.http.post("/oauth/logout", data={**fields, "csrf_token": token})
    assert r.status_code == 400
    assert await signed_in(env, env.http)


async def test_logout_post_without_any_csrf_token_is_a_request_that_only_asks(env: Env):
    # Without our form's token it is a client's logout request by POST, and without a
    # hint naming the session it asks, as the same request by GET would.
    await get_code(env)
    fields = await logout_confirmation(env, env.http)
    del fields["csrf_token"]
    r = await env.http.post("/oauth/logout", data=fields)
    assert r.status_code == 200 and 'action="/oauth/logout"' in r.text
    assert await signed_in(env, env.http)


async def test_logout_post_with_another_browsers_token_is_refused(env: Env) -> None:
    await get_code(env)
    attacker = await env.browser()
    fields = await logout_confirmation(env, attacker)
    r = await env.http.post("/oauth/logout", data=fields)
    assert r.status_code == 400
    assert await signed_in(env, env.http)


# -- logout with an id_token_hint ---------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_logout_with_an_id_token_of_another_user_only_asks(env: Env, method: str):
    # A third-party page sends the victim's browser to logout (RP-Initiated Logout 1.0
    # section 2: by GET or POST) with an ID token of its own: the victim is asked, not
    # signed out.
    await create_user(env.ctx.storage, env.ctx.passwords, username="mallory",
                      email="mallory@example.com", password=PASSWORD)
    attacker = await env.browser("10.0.0.9")
    fields = await login_form(attacker, authorize_url(env.web.client_id))
    posted = await post_login(attacker, fields, login="mallory")
    code = location_params(await attacker.get(posted.headers["location"]))["code"]
    hint = (await exchange(env, code)).json()["id_token"]

    await get_code(env)  # the victim signs in
    asked = {"id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_TARGET}
    r = (await env.http.get("/oauth/logout?" + urlencode(asked)) if method == "GET"
         else await env.http.post("/oauth/logout", data=asked))
    assert r.status_code == 200 and 'action="/oauth/logout"' in r.text
    assert "location" not in r.headers
    assert await signed_in(env, env.http)


async def test_logout_with_an_id_token_of_an_ended_session_only_asks(env: Env) -> None:
    old = (await exchange(env, await get_code(env))).json()["id_token"]
    fields = await logout_confirmation(env, env.http)
    await env.http.post("/oauth/logout", data=fields)
    await get_code(env)  # the same user signs in again: a new session
    r = await env.http.get("/oauth/logout?" + urlencode({"id_token_hint": old}))
    assert r.status_code == 200 and 'action="/oauth/logout"' in r.text
    assert await signed_in(env, env.http)


async def test_logout_with_the_sessions_own_id_token_signs_out_at_once(env: Env) -> None:
    hint = (await exchange(env, await get_code(env))).json()["id_token"]
    r = await env.http.get("/oauth/logout?" + urlencode(
        {"id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_TARGET}))
    assert r.status_code == 303 and r.headers["location"] == LOGOUT_TARGET
    assert not await signed_in(env, env.http)


@pytest.mark.parametrize("confirmed", [False, True], ids=["hint", "confirmed"])
async def test_logout_ends_an_expired_session_and_its_grants(env: Env, confirmed: bool) -> None:
    """An expired session signs nobody in, but the grants made in it live on: the
    logout the user asks for ends them (and tells their clients)."""
    tokens = (await exchange(env, await get_code(env))).json()
    claims = parse_compact(tokens["id_token"]).claims()
    (session,) = await env.ctx.storage.list_sessions(claims["sub"])
    sid = session.id
    assert claims["sid"] == public_sid(sid) != sid  # the id itself is the cookie's secret
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:  # as if its idle timeout had passed
        await conn.execute(login_sessions.update().where(login_sessions.c.id == sid)
                           .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert not await signed_in(env, env.http)
    if confirmed:
        r = await env.http.post("/oauth/logout", data=await logout_confirmation(env, env.http))
        assert r.status_code == 200
    else:
        r = await env.http.get("/oauth/logout?" + urlencode(
            {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_TARGET}))
        assert r.status_code == 303 and r.headers["location"] == LOGOUT_TARGET
    assert await env.introspect(tokens["refresh_token"]) == {"active": False}
    assert (await env.ctx.storage.get_session(sid)).revoked_at is not None


# -- logout requested by POST (RP-Initiated Logout 1.0 section 2: GET and POST) -------


async def test_a_posted_logout_with_the_sessions_own_id_token_signs_out_at_once(env: Env):
    hint = (await exchange(env, await get_code(env))).json()["id_token"]
    r = await env.http.post("/oauth/logout", data={
        "id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_TARGET, "state": "s-9"})
    assert r.status_code == 303 and r.headers["location"] == LOGOUT_TARGET + "?state=s-9"
    assert not await signed_in(env, env.http)


async def test_a_cross_site_posted_logout_asks_and_the_confirmation_signs_out(env: Env):
    """A cross-site POST carries no SameSite=Lax cookie: the server cannot see the
    session the hint names, so it asks; the confirmation, posted from its own page,
    carries the cookie and ends the session."""
    hint = (await exchange(env, await get_code(env))).json()["id_token"]
    session = env.http.cookies[SESSION_COOKIE]
    env.http.cookies.clear()  # what a cross-site POST sends
    asked = await env.http.post("/oauth/logout", data={
        "id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_TARGET, "state": "s-9"})
    assert asked.status_code == 200 and 'action="/oauth/logout"' in asked.text
    env.http.cookies.set(SESSION_COOKIE, session)  # same-site again: the cookie goes
    assert await signed_in(env, env.http)
    r = await env.http.post("/oauth/logout", data=hidden_fields(asked.text))
    assert r.status_code == 303 and r.headers["location"] == LOGOUT_TARGET + "?state=s-9"
    assert not await signed_in(env, env.http)
