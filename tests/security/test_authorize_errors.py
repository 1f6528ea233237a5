"""Once the client and redirect URI are verified, errors go back to the client with
``state`` and ``iss`` (RFC 6749 section 4.1.2.1, RFC 9207), and ``state`` is echoed
verbatim without letting it inject parameters."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from security_helpers import REDIRECT, REDIRECT_WITH_QUERY, Env, authorize_url, get_code

from bastion.server.services.clients import create_client
from support import ISSUER


def redirect_query(r: httpx2.Response, redirect_uri: str = REDIRECT) -> dict[str, list[str]]:
    assert r.status_code == 303, (r.status_code, r.text[:300])
    location = r.headers["location"]
    assert location.startswith(redirect_uri + ("&" if "?" in redirect_uri else "?"))
    return parse_qs(urlsplit(location).query)


def assert_error_back_with_state(r: httpx2.Response, error: str,
                                 redirect_uri: str = REDIRECT) -> None:
    query = redirect_query(r, redirect_uri)
    assert query["error"] == [error]
    assert query["state"] == ["st-1"] and query["iss"] == [ISSUER]
    assert "code" not in query


@pytest.mark.parametrize(("extra", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"response_type": ""}, "invalid_request"),  # empty = absent
    ({"scope": "openid admin"}, "invalid_scope"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"prompt": "none"}, "login_required"),
    ({"prompt": "login bogus"}, "invalid_request"),
    ({"max_age": "ten"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"max_age": "1" * 13}, "invalid_request"),
    ({"nonce": "n" * 3000}, "invalid_request"),
    ({"login_hint": "h" * 3000}, "invalid_request"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    ({"request_uri": "https://app.example/req/1"}, "request_uri_not_supported"),
    ({"registration": "{}"}, "registration_not_supported"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"response_mode": "form_post.fragment"}, "invalid_request"),
], ids=["implicit", "hybrid", "missing-response-type", "scope", "prompt-combo",
        "prompt-none", "prompt-unknown", "max-age-word", "max-age-negative", "max-age-huge",
        "long-nonce", "long-login-hint", "request-object", "request-uri", "registration",
        "fragment", "unknown-mode"])
async def test_error_after_redirect_verification_goes_back_with_state_and_iss(
        env: Env, extra: dict[str, str], error: str) -> None:
    r = await env.http.get(authorize_url(env.web.client_id, **extra))
    assert_error_back_with_state(r, error)


async def test_client_not_allowed_the_code_flow_is_told_so_at_its_redirect_uri(env: Env):
    new = await create_client(env.ctx.storage, name="Password only",
                              redirect_uris=["https://po.example/cb"], grant_types=["password"])
    r = await env.http.get(authorize_url(new.client.client_id,
                                         redirect_uri="https://po.example/cb"))
    assert_error_back_with_state(r, "unauthorized_client", "https://po.example/cb")


async def test_error_keeps_the_registered_query_of_the_redirect_uri(env: Env) -> None:
    r = await env.http.get(authorize_url(env.web.client_id, redirect_uri=REDIRECT_WITH_QUERY,
                                         response_type="token"))
    query = redirect_query(r, REDIRECT_WITH_QUERY)
    assert query["x"] == ["1"] and query["error"] == ["unsupported_response_type"]


async def test_state_is_echoed_verbatim_and_cannot_inject_parameters(env: Env) -> None:
    state = "a b&code=evil&iss=https://evil.example/#frag%20é"
    r = await env.http.get(authorize_url(env.web.client_id, state=state, prompt="none"))
    query = redirect_query(r)
    assert query["state"] == [state]
    assert query["iss"] == [ISSUER]
    assert "code" not in query
    assert "#" not in r.headers["location"]


async def test_no_state_sent_means_no_state_returned(env: Env) -> None:
    r = await env.http.get(authorize_url(env.web.client_id, state="", prompt="none"))
    query = redirect_query(r)
    assert "state" not in query and query["iss"] == [ISSUER]


async def test_success_carries_state_and_iss_too(env: Env) -> None:
    await get_code(env)  # signs in
    r = await env.http.get(authorize_url(env.web.client_id, state="s-2"))
    query = redirect_query(r)
    assert query["state"] == ["s-2"] and query["iss"] == [ISSUER] and query["code"]


async def test_response_mode_query_is_the_default_spelled_out(env: Env) -> None:
    await get_code(env)  # signs in
    r = await env.http.get(authorize_url(env.web.client_id, response_mode="query"))
    assert redirect_query(r)["code"]


async def test_optional_oidc_scopes_are_left_out_not_refused(env: Env) -> None:
    """Libraries ask for offline_access (or phone, address) by default; a client not
    registered for them signs in without them (OIDC Core 3.1.2.1), while a scope Bastion
    knows and the client may not have is still refused."""
    from security_helpers import exchange

    code = await get_code(env, scope="openid offline_access phone address")
    tokens = await exchange(env, code)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "openid" and tokens.json()["refresh_token"]
    # A client may send its first request's scope on every refresh (requests-oauthlib)
    refreshed = await env.token(env.web, grant_type="refresh_token",
                                refresh_token=tokens.json()["refresh_token"],
                                scope="openid offline_access")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "openid"
    wider = await env.token(env.web, grant_type="refresh_token",
                            refresh_token=refreshed.json()["refresh_token"], scope="openid email")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    r = await env.http.get(authorize_url(env.web.client_id, scope="openid offline_access admin"))
    assert_error_back_with_state(r, "invalid_scope")


async def test_a_client_registered_for_offline_access_gets_it(env: Env) -> None:
    from security_helpers import Registered, exchange

    new = await create_client(env.ctx.storage, name="Offline", redirect_uris=[REDIRECT],
                              grant_types=["authorization_code", "refresh_token"],
                              scopes=["openid", "offline_access"])
    app = Registered(new.client.client_id, new.client_secret)
    code = await get_code(env, app.client_id, scope="openid offline_access phone")
    tokens = await exchange(env, code, client=app)
    assert tokens.json()["scope"] == "openid offline_access"
