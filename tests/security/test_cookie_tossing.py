"""Cookies another host of the site could set (cookie tossing: a compromised
``evil.example.test`` setting ``Domain=example.test`` cookies), and account forms
posted after the browser signed in again.

An https issuer's cookies are ``__Host-`` (at the root) or ``__Secure-`` (under a
path) prefixed; a cookie name sent twice counts as not sent; the account page's forms
are bound to the session they were shown in."""

from __future__ import annotations

from pathlib import Path

import pytest
from security_helpers import (
    PASSWORD,
    Env,
    authorize_url,
    get_code,
    hidden_fields,
    login_form,
    make_settings,
    post_login,
)

from bastion.server.services.users import create_user
from support import CSRF_COOKIE, SESSION_COOKIE


@pytest.mark.parametrize(("issuer", "name"), [
    ("https://id.example.test", "__Host-bastion_session"),
    ("https://id.example.test/tenant", "__Secure-bastion_session-"),
    ("http://127.0.0.1:8000", "bastion_session"),  # a browser drops prefixed http cookies
])
def test_cookie_names_carry_the_prefix_an_https_issuer_allows(
        tmp_path: Path, issuer: str, name: str) -> None:
    settings = make_settings(tmp_path, issuer=issuer)
    assert settings.cookie_name("bastion_session").startswith(name)


async def test_every_page_cookie_is_host_only_secure_at_the_root(env: Env) -> None:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    posted = await post_login(env.http, fields)
    assert posted.status_code == 303
    cookies = posted.headers.get_list("set-cookie")
    assert {c.split("=", 1)[0] for c in cookies} == {
        SESSION_COOKIE, "__Host-bastion_known"}
    for cookie in cookies:  # __Host-: Secure, Path=/ and no Domain, or browsers drop it
        assert "Secure" in cookie and "Path=/;" in cookie + ";"
        assert "domain=" not in cookie.lower()


async def test_a_tossed_csrf_cookie_beside_the_real_one_fails_the_form(env: Env) -> None:
    # The attacker loads a form with a cookie of his choosing, so knows its token, and
    # tosses that cookie to the victim: the victim's browser then sends both.
    attacker = await env.browser("10.0.0.9")
    attacker.cookies.set(CSRF_COOKIE, "chosen-by-the-attacker")
    token = (await login_form(attacker, authorize_url(env.web.client_id)))["csrf_token"]
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    own = env.http.cookies[CSRF_COOKIE]
    both = f"{CSRF_COOKIE}=chosen-by-the-attacker; {CSRF_COOKIE}={own}"
    for csrf in (token, fields["csrf_token"]):
        env.http.cookies.clear()
        r = await env.http.post("/login", headers={"cookie": both}, data={
            **fields, "csrf_token": csrf, "login": "alice", "password": PASSWORD})
        assert r.status_code == 400 and "This form has expired" in r.text
        assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


async def test_a_session_cookie_sent_twice_signs_in_no_one(env: Env) -> None:
    await get_code(env)
    victim = env.http.cookies[SESSION_COOKIE]
    attacker = await env.browser("10.0.0.9")
    await get_code(env, http=attacker)
    tossed = attacker.cookies[SESSION_COOKIE]
    env.http.cookies.clear()
    for pair in ((tossed, victim), (victim, tossed)):
        home = await env.http.get("/", headers={
            "cookie": f"{SESSION_COOKIE}={pair[0]}; {SESSION_COOKIE}={pair[1]}"})
        assert "You are not signed in." in home.text


async def test_an_account_form_shown_before_another_sign_in_changes_nothing(env: Env) -> None:
    """Two tabs: alice's account page is open in one; in the other, someone signs out
    and bob signs in. Alice's form, posted now, must not change bob's password."""
    bob = await create_user(env.ctx.storage, env.ctx.passwords, username="bob",
                            email="bob@example.com", password=PASSWORD)
    await get_code(env)
    alices = hidden_fields((await env.http.get("/account")).text)
    fields = await login_form(env.http, authorize_url(env.web.client_id, prompt="login"))
    assert (await post_login(env.http, fields, login="bob")).status_code == 303
    r = await env.http.post("/account/password", data={
        **alices, "current_password": PASSWORD, "new_password": "typed for alice 12345"})
    assert r.status_code == 400 and "This form has expired" in r.text
    assert "bob" in r.text  # the page shows who is signed in now
    now = await env.ctx.storage.get_user(bob.id)
    assert now is not None and now.password_hash == bob.password_hash
    bobs = hidden_fields(r.text)  # the form shown now is bob's own, and works
    r = await env.http.post("/account/password", data={
        **bobs, "current_password": PASSWORD, "new_password": "bob's own choice 12345"})
    assert r.status_code == 303
