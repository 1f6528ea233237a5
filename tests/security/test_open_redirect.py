"""No open redirects: logout goes back only to a ``post_logout_redirect_uri`` the
client registered (exact match), and the login form's ``continue`` field only ever
leads to the authorization endpoint."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
import pytest
from security_helpers import (
    LOGOUT_TARGET,
    OTHER_LOGOUT_TARGET,
    PASSWORD,
    Env,
    authorize_url,
    get_code,
    hidden_fields,
    location_params,
    login_form,
)

from bastion.oauth.jose import PrivateKey, b64url_decode, b64url_encode, parse_compact
from bastion.server import keys

LOOKALIKES = {
    "foreign": "https://evil.example/",
    "trailing-slash": LOGOUT_TARGET + "/",
    "extra-query": LOGOUT_TARGET + "?next=https://evil.example",
    "fragment": LOGOUT_TARGET + "#x",
    "host-case": "https://APP.example/bye",
    "http": "http://app.example/bye",
    "other-port": "https://app.example:444/bye",
    "subdomain-lookalike": "https://app.example.evil.example/bye",
    "userinfo-trick": "https://app.example@evil.example/bye",
    "scheme-relative": "//evil.example/bye",
    "backslash": "https:\\\\evil.example\\bye",
    "javascript": "javascript:alert(1)",
}


async def id_token(env: Env) -> str:
    r = await env.password_grant(scope="openid")
    return str(r.json()["id_token"])


def assert_no_redirect(r: httpx2.Response) -> None:
    assert "location" not in r.headers, r.headers.get("location")
    assert r.status_code in (200, 400)


async def test_registered_target_with_id_token_hint_is_followed(env: Env) -> None:
    # The control for the refusals below.
    r = await env.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": await id_token(env), "post_logout_redirect_uri": LOGOUT_TARGET,
        "state": "s"}))
    assert r.status_code == 303 and r.headers["location"] == LOGOUT_TARGET + "?state=s"


@pytest.mark.parametrize("target", LOOKALIKES.values(), ids=LOOKALIKES.keys())
async def test_unregistered_target_with_id_token_hint_is_not_followed(env: Env,
                                                                      target: str) -> None:
    r = await env.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": await id_token(env), "post_logout_redirect_uri": target}))
    assert_no_redirect(r)


@pytest.mark.parametrize("target", LOOKALIKES.values(), ids=LOOKALIKES.keys())
async def test_unregistered_target_without_hint_is_not_followed_even_once_confirmed(
        env: Env, target: str) -> None:
    query = {"client_id": env.web.client_id, "post_logout_redirect_uri": target}
    page = await env.http.get("/oauth/logout?" + urlencode(query))
    assert_no_redirect(page)
    confirmed = await env.http.post("/oauth/logout", data=hidden_fields(page.text))
    assert_no_redirect(confirmed)


async def test_target_without_any_client_is_not_followed(env: Env) -> None:
    page = await env.http.get("/oauth/logout?" + urlencode(
        {"post_logout_redirect_uri": LOGOUT_TARGET}))
    confirmed = await env.http.post("/oauth/logout", data=hidden_fields(page.text))
    assert_no_redirect(confirmed)


def retargeted(token: str, **changes: Any) -> str:
    """``token`` with claims changed and its signature kept (so no longer valid)."""
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    return ".".join([header, b64url_encode(json.dumps({**claims, **changes}).encode()),
                     signature])


async def forged_hint(env: Env, kind: str) -> tuple[str, str]:
    """(hint, the logout target of the client it names) for a hint Bastion did not
    issue as it stands."""
    if kind == "tampered":  # web's real ID token, its audience changed to another client
        return retargeted(await id_token(env), aud=env.other.client_id), OTHER_LOGOUT_TARGET
    if kind == "no-kid":  # web's real ID token without its kid: no key of ours verifies it
        _, payload, signature = (await id_token(env)).split(".")
        header = b64url_encode(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        return f"{header}.{payload}.{signature}", LOGOUT_TARGET
    active = await env.ctx.keys.signer("id")
    now = int(time.time())
    claims = {"iss": env.ctx.settings.issuer_url, "sub": env.user.id, "aud": env.web.client_id,
              "iat": now, "exp": now + 300}
    if kind == "other-key":  # the right kid and algorithm, another private key
        return PrivateKey.generate(active.kid, active.alg).sign(claims, typ="JWT"), \
            LOGOUT_TARGET
    assert kind == "other-issuer"  # our own key, another issuer's claims
    return active.sign({**claims, "iss": "https://evil.example"}, typ="JWT"), LOGOUT_TARGET


FORGERIES = ["tampered", "other-key", "other-issuer", "no-kid"]


@pytest.mark.parametrize("kind", FORGERIES)
async def test_forged_id_token_hint_does_not_name_a_client(env: Env, kind: str) -> None:
    hint, target = await forged_hint(env, kind)
    r = await env.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": hint, "post_logout_redirect_uri": target}))
    # Not trusted: the user is asked to confirm instead of being signed out and sent on.
    assert_no_redirect(r)
    assert 'action="/oauth/logout"' in r.text


async def test_access_token_as_id_token_hint_is_not_trusted(env: Env) -> None:
    access = (await env.password_grant(scope="openid")).json()["access_token"]
    r = await env.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": access, "post_logout_redirect_uri": LOGOUT_TARGET}))
    assert_no_redirect(r)


async def test_client_id_differing_from_the_id_token_hint_is_not_followed(env: Env) -> None:
    r = await env.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": await id_token(env),  # issued to the web client
        "client_id": env.other.client_id, "post_logout_redirect_uri": OTHER_LOGOUT_TARGET}))
    assert_no_redirect(r)


@pytest.mark.parametrize("kind", ["not-a-jwt", *FORGERIES])
async def test_invalid_id_token_hint_cancels_the_redirect_even_with_client_id(
        env: Env, kind: str) -> None:
    # RP-Initiated Logout 1.0 section 4: what fails validation may not be used; a
    # registered target named beside a bad hint is not followed, once confirmed either.
    hint = "not-a-jwt" if kind == "not-a-jwt" else (await forged_hint(env, kind))[0]
    page = await env.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": hint, "client_id": env.web.client_id,
        "post_logout_redirect_uri": LOGOUT_TARGET, "state": "s"}))
    assert_no_redirect(page)
    confirmed = await env.http.post("/oauth/logout", data=hidden_fields(page.text))
    assert_no_redirect(confirmed)
    assert "You are signed out." in confirmed.text
    assert 'href="/account">Sign in again</a>' in confirmed.text  # not a dead end


async def test_a_hint_whose_key_is_no_longer_published_is_no_hint(env: Env) -> None:
    # An app keeps the ID token of its sign-in; a rotation later and its key is gone
    # from the JWKS. That hint proves nothing either way: client_id decides, as
    # without a hint, and the user confirms.
    hint = await id_token(env)
    kid = parse_compact(hint).header["kid"]
    await keys.withdraw(env.ctx.storage, env.ctx.settings, kid)
    await env.ctx.keys.reload()
    page = await env.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": hint, "client_id": env.web.client_id,
        "post_logout_redirect_uri": LOGOUT_TARGET, "state": "s"}))
    assert_no_redirect(page)
    confirmed = await env.http.post("/oauth/logout", data=hidden_fields(page.text))
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == LOGOUT_TARGET + "?state=s"


async def test_hint_without_a_session_id_asks_the_signed_in_user(env: Env) -> None:
    # A password-grant ID token carries no sid: it belongs to no browser session, so
    # the user of this browser is asked before being signed out (spec section 2).
    await get_code(env)  # alice is signed in in env.http
    r = await env.http.get("/oauth/logout?" + urlencode({
        "id_token_hint": await id_token(env), "post_logout_redirect_uri": LOGOUT_TARGET}))
    assert_no_redirect(r)
    assert 'action="/oauth/logout"' in r.text
    params = location_params(await env.http.get(authorize_url(env.web.client_id,
                                                               prompt="none")))
    assert "code" in params, params  # still signed in


async def test_logout_by_post_refuses_a_repeated_parameter(env: Env) -> None:
    r = await env.http.post("/oauth/logout", content=urlencode([
        ("client_id", env.other.client_id), ("client_id", env.web.client_id),
        ("post_logout_redirect_uri", LOGOUT_TARGET)]),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "repeated" in r.text
    assert 'action="/oauth/logout"' not in r.text


# -- the login form's continue field ------------------------------------------------


@pytest.mark.parametrize("value", [
    "//evil.example",
    "https://evil.example/",
    "/\\evil.example",
    "https://evil.example/?client_id=x",
    "next=https://evil.example",
    "",
], ids=["scheme-relative", "absolute", "backslash", "absolute-with-query", "next", "empty"])
async def test_login_continue_cannot_leave_the_authorization_endpoint(env: Env,
                                                                     value: str) -> None:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    r = await env.http.post("/login", data={**fields, "continue": value, "login": "alice",
                                            "password": PASSWORD})
    assert_no_redirect(r)


async def test_login_continue_with_extra_parameters_still_goes_to_authorize(env: Env) -> None:
    fields = await login_form(env.http, authorize_url(env.web.client_id))
    value = fields["continue"] + "&next=https%3A%2F%2Fevil.example&return_to=%2F%2Fevil.example"
    r = await env.http.post("/login", data={**fields, "continue": value, "login": "alice",
                                            "password": PASSWORD})
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    assert (target.scheme, target.netloc, target.path) == ("", "", "/oauth/authorize")


async def test_code_after_login_goes_only_to_the_registered_redirect_uri(env: Env) -> None:
    await get_code(env)
    r = await env.http.get(authorize_url(env.web.client_id))
    assert r.headers["location"].startswith("https://app.example/callback?")
