"""Authorization code + PKCE through the hosted login page, in process."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import httpx2
import jwt
import pytest

from bastion.oauth import pkce
from bastion.server.services.clients import create_client
from bastion.server.services.users import create_user
from support import ISSUER, SESSION_COOKIE, App, callback_params, hidden_fields, sign_in

REDIRECT = "https://app.example/callback"
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def web(app: App):
    """A confidential web client and a user."""
    new = await create_client(
        app.ctx.storage, name="Web", redirect_uris=[REDIRECT, "https://app.example/other?x=1"],
        grant_types=["authorization_code", "refresh_token", "password"],
        scopes=["openid", "profile", "email", "read"],
        post_logout_redirect_uris=["https://app.example/bye"])
    user = await create_user(app.ctx.storage, app.ctx.passwords, username="alice",
                             email="alice@example.com", password=PASSWORD)
    return new.client.client_id, new.client_secret, user


def authorize_url(client_id: str, verifier: str | None = None, **extra: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "scope": "openid profile email", "state": "st-1", "nonce": "n-1"}
    if verifier:
        params |= {"code_challenge": pkce.challenge(verifier), "code_challenge_method": "S256"}
    params.update(extra)
    return "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v != "-"})


async def exchange(app: App, client_id: str, secret: str, code: str, verifier: str | None,
                   **extra: str) -> httpx2.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    if verifier:
        data["code_verifier"] = verifier
    return await app.http.post("/oauth/token", data=data, auth=(client_id, secret))


async def test_full_flow_issues_tokens_and_id_token(app: App, web) -> None:
    client_id, secret, user = web
    verifier = pkce.new_verifier()
    page = await app.http.get(authorize_url(client_id, verifier))
    assert page.status_code == 200
    assert 'id="login"' in page.text and 'autocomplete="current-password"' in page.text
    assert "Web" in page.text  # the client's name
    back = await sign_in(app.http, authorize_url(client_id, verifier), "ALICE", PASSWORD)
    params = callback_params(back)
    assert back.headers["location"].startswith(REDIRECT + "?")
    assert params["state"] == "st-1"
    assert params["iss"] == ISSUER
    r = await exchange(app, client_id, secret, params["code"], verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refresh_token"] and body["scope"] == "openid profile email"
    id_key = await app.ctx.keys.signer("id")
    claims = jwt.decode(body["id_token"], id_key.key.public_key(), algorithms=["RS256"],
                        audience=client_id, issuer=ISSUER)
    assert claims["sub"] == user.id
    assert claims["nonce"] == "n-1"
    assert claims["email"] == "alice@example.com"
    assert claims["preferred_username"] == "alice"
    assert claims["sid"] and claims["auth_time"] <= claims["iat"]
    from bastion.oauth.jose import token_hash
    assert claims["at_hash"] == token_hash(body["access_token"], "RS256")
    # userinfo with the access token
    info = await app.http.get("/oauth/userinfo",
                              headers={"Authorization": "Bearer " + body["access_token"]})
    assert info.json() == {"sub": user.id, "preferred_username": "alice",
                           "email": "alice@example.com", "email_verified": False,
                           "updated_at": claims["updated_at"]}
    assert info.headers["cache-control"] == "no-store"  # personal data
    posted = await app.http.post("/oauth/userinfo",
                                 headers={"Authorization": "Bearer " + body["access_token"]})
    assert posted.json() == info.json() and posted.headers["cache-control"] == "no-store"


async def test_second_authorization_skips_the_form_and_prompt_login_forces_it(app: App, web):
    client_id, _secret, _user = web
    callback_params(await sign_in(app.http, authorize_url(client_id), "alice", PASSWORD))
    again = await app.http.get(authorize_url(client_id))
    assert "code" in callback_params(again)
    forced = await app.http.get(authorize_url(client_id, prompt="login"))
    assert forced.status_code == 200 and "<form" in forced.text


async def test_max_age_past_asks_to_sign_in_again_and_the_sign_in_meets_it(app: App,
                                                                             web) -> None:
    # OpenID Connect Core 3.1.2.1: past max_age the user must sign in again.
    client_id, _secret, _user = web
    callback_params(await sign_in(app.http, authorize_url(client_id), "alice", PASSWORD))
    assert "code" in callback_params(await app.http.get(authorize_url(client_id,
                                                                      max_age="3600")))
    stale = await app.http.get(authorize_url(client_id, prompt="none", max_age="0"))
    assert callback_params(stale)["error"] == "login_required"
    # max_age=0 shows the form; the sign-in it asks for then meets it (no loop).
    answer = await sign_in(app.http, authorize_url(client_id, max_age="0"), "alice", PASSWORD)
    assert "code" in callback_params(answer)


@pytest.mark.parametrize("prompt", ["login consent", "select_account"])
async def test_sign_in_meets_prompt_login_and_select_account(app: App, web,
                                                            prompt: str) -> None:
    client_id, _secret, _user = web
    callback_params(await sign_in(app.http, authorize_url(client_id), "alice", PASSWORD))
    page = await app.http.get(authorize_url(client_id, prompt=prompt))
    assert page.status_code == 200 and "<form" in page.text  # asked, though signed in
    answer = await sign_in(app.http, authorize_url(client_id, prompt=prompt), "alice", PASSWORD)
    assert "code" in callback_params(answer)  # and not asked again after signing in


async def test_prompt_none_without_session_is_login_required(app: App, web) -> None:
    client_id, _s, _u = web
    r = await app.http.get(authorize_url(client_id, prompt="none"))
    params = callback_params(r)
    assert params["error"] == "login_required"
    assert params["state"] == "st-1" and params["iss"] == ISSUER


async def test_wrong_password_and_unknown_user_get_the_same_message(app: App, web) -> None:
    client_id, _s, _u = web
    wrong = await sign_in(app.http, authorize_url(client_id), "alice", "wrong password!")
    unknown = await sign_in(app.http, authorize_url(client_id), "nobody", "wrong password!")
    assert wrong.status_code == unknown.status_code == 401
    assert "Incorrect username or password." in wrong.text
    strip = lambda page: hidden_fields(page)["csrf_token"]  # noqa: E731
    assert wrong.text.replace(strip(wrong.text), "") .replace("alice", "") == \
        unknown.text.replace(strip(unknown.text), "").replace("nobody", "")


async def test_login_form_without_csrf_token_is_refused(app: App, web) -> None:
    client_id, _s, _u = web
    page = await app.http.get(authorize_url(client_id))
    fields = hidden_fields(page.text)
    for forged in ({**fields, "csrf_token": "forged"}, {k: v for k, v in fields.items()
                                                       if k != "csrf_token"}):
        r = await app.http.post("/login", data={**forged, "login": "alice", "password": PASSWORD})
        assert r.status_code == 400
        assert "expired" in r.text
        assert "bastion_session" not in r.headers.get("set-cookie", "")


async def test_session_cookie_flags_and_new_id_per_login(app: App, web) -> None:
    client_id, _s, _u = web
    page = await app.http.get(authorize_url(client_id))
    fields = hidden_fields(page.text)
    r = await app.http.post("/login", data={**fields, "login": "alice", "password": PASSWORD})
    cookie = r.headers["set-cookie"]
    assert "bastion_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    first = app.http.cookies[SESSION_COOKIE]
    page = await app.http.get(authorize_url(client_id, prompt="login"))
    await app.http.post("/login", data={**hidden_fields(page.text), "login": "alice",
                                        "password": PASSWORD})
    assert app.http.cookies[SESSION_COOKIE] != first


async def test_refresh_rotation_and_reuse_revokes_the_family(app: App, web) -> None:
    client_id, secret, _u = web
    tokens = (await app.http.post("/oauth/token", auth=(client_id, secret), data={
        "grant_type": "password", "username": "alice", "password": PASSWORD,
        "scope": "openid read"})).json()
    first = tokens["refresh_token"]
    r = await app.http.post("/oauth/token", auth=(client_id, secret),
                            data={"grant_type": "refresh_token", "refresh_token": first})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first
    reuse = await app.http.post("/oauth/token", auth=(client_id, secret),
                                data={"grant_type": "refresh_token", "refresh_token": first})
    assert (reuse.status_code, reuse.json()["error"]) == (400, "invalid_grant")
    # the whole family is gone, access tokens included
    r = await app.http.post("/oauth/token", auth=(client_id, secret),
                            data={"grant_type": "refresh_token",
                                  "refresh_token": second["refresh_token"]})
    assert r.json()["error"] == "invalid_grant"
    info = await app.http.post("/oauth/introspect", auth=(client_id, secret),
                               data={"token": second["access_token"]})
    assert info.json() == {"active": False}


async def test_concurrent_refreshes_have_exactly_one_winner(app: App, web) -> None:
    client_id, secret, _u = web
    tokens = (await app.http.post("/oauth/token", auth=(client_id, secret), data={
        "grant_type": "password", "username": "alice", "password": PASSWORD})).json()
    results = await asyncio.gather(*(app.http.post(
        "/oauth/token", auth=(client_id, secret),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
        for _ in range(20)))
    assert sorted(r.status_code for r in results) == [200] + [400] * 19


async def test_revocation_and_introspection(app: App, web) -> None:
    client_id, secret, _u = web
    tokens = (await app.http.post("/oauth/token", auth=(client_id, secret), data={
        "grant_type": "password", "username": "alice", "password": PASSWORD,
        "scope": "openid"})).json()
    access = tokens["access_token"]
    info = (await app.http.post("/oauth/introspect", auth=(client_id, secret),
                                data={"token": access})).json()
    assert info["active"] is True and info["client_id"] == client_id
    refresh_info = (await app.http.post("/oauth/introspect", auth=(client_id, secret),
                                        data={"token": tokens["refresh_token"]})).json()
    assert refresh_info["active"] is True
    r = await app.http.post("/oauth/revoke", auth=(client_id, secret), data={"token": access})
    assert r.status_code == 200
    assert (await app.http.post("/oauth/introspect", auth=(client_id, secret),
                                data={"token": access})).json() == {"active": False}
    info = await app.http.get("/oauth/userinfo", headers={"Authorization": "Bearer " + access})
    assert info.status_code == 401
    assert "invalid_token" in info.headers["www-authenticate"]
    # unknown tokens: 200 all the same (RFC 7009 2.2)
    r = await app.http.post("/oauth/revoke", auth=(client_id, secret), data={"token": "nope"})
    assert r.status_code == 200


async def test_logout_redirects_only_to_registered_uris(app: App, web) -> None:
    client_id, secret, _u = web

    async def session_id_token() -> str:  # a sign-in's: its sid names this session
        code = callback_params(await sign_in(app.http, authorize_url(client_id), "alice",
                                             PASSWORD))["code"]
        return str((await exchange(app, client_id, secret, code, None)).json()["id_token"])

    evil = await app.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": await session_id_token(),
        "post_logout_redirect_uri": "https://evil.example/"}))
    assert evil.status_code == 200 and "signed out" in evil.text
    assert "bastion_session" not in app.http.cookies
    ok = await app.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": await session_id_token(),
        "post_logout_redirect_uri": "https://app.example/bye", "state": "s"}))
    assert ok.status_code == 303
    assert ok.headers["location"] == "https://app.example/bye?state=s"
    # and the session is really over
    assert callback_params(await app.http.get(authorize_url(client_id, prompt="none")))[
        "error"] == "login_required"


async def test_an_id_token_hint_for_another_user_is_not_answered_from_this_session(
    app: App, web
) -> None:
    """OpenID Connect Core 3.1.2.2: the hint names the user the app expects; a silent
    renewal (prompt=none) for bob is not answered with alice's session."""
    client_id, secret, _ = web
    await create_user(app.ctx.storage, app.ctx.passwords, username="bob",
                      email="bob@example.com", password=PASSWORD)

    async def id_token(login: str) -> str:
        r = await app.http.post("/oauth/token", auth=(client_id, secret), data={
            "grant_type": "password", "username": login, "password": PASSWORD,
            "scope": "openid"})
        return str(r.json()["id_token"])

    alice_hint, bob_hint = await id_token("alice"), await id_token("bob")
    verifier = pkce.new_verifier()
    await sign_in(app.http, authorize_url(client_id, verifier), "alice", PASSWORD)  # session

    silent = await app.http.get(authorize_url(client_id, verifier, prompt="none",
                                              id_token_hint=alice_hint))
    assert "code" in callback_params(silent)  # alice is signed in: answered
    silent = await app.http.get(authorize_url(client_id, verifier, prompt="none",
                                              id_token_hint=bob_hint))
    assert callback_params(silent)["error"] == "login_required"
    page = await app.http.get(authorize_url(client_id, verifier, id_token_hint=bob_hint))
    assert page.status_code == 200 and 'value="bob"' in page.text  # sign in as bob: prefilled
    page = await app.http.get(authorize_url(client_id, verifier, id_token_hint=bob_hint,
                                            login_hint="bob@example.com"))
    assert 'value="bob@example.com"' in page.text  # the app's own login_hint comes first
    # Signing in as alice all the same: the app learns it (Core 3.1.2.1), where the
    # request would show the form again and again. The sign-in itself stands.
    page = await app.http.get(authorize_url(client_id, verifier, id_token_hint=bob_hint,
                                            prompt="login"))
    posted = await app.http.post("/login", data={**hidden_fields(page.text), "login": "alice",
                                                 "password": PASSWORD})
    params = callback_params(posted)
    assert params["error"] == "login_required" and params["state"] == "st-1", params
    assert "id_token_hint" in params["error_description"] and params["iss"] == ISSUER
    assert "code" in callback_params(await app.http.get(authorize_url(
        client_id, verifier, prompt="none", id_token_hint=alice_hint)))

    other = await create_client(app.ctx.storage, name="Other", redirect_uris=[REDIRECT],
                                scopes=["openid", "profile", "email"])
    for hint, cid in [("not.a.token", client_id), (alice_hint, other.client.client_id),
                      (alice_hint[:-4] + "AAAA", client_id)]:
        r = await app.http.get(authorize_url(cid, verifier, prompt="none", id_token_hint=hint))
        params = callback_params(r)
        assert params["error"] == "invalid_request" and "id_token_hint" in params[
            "error_description"], hint
