"""Redirect URIs match exactly (RFC 9700 section 2.1). A client or redirect URI that
cannot be trusted gets an error page (400, HTML), never a redirect."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx2
import pytest
from security_helpers import (
    REDIRECT,
    REDIRECT_WITH_QUERY,
    Env,
    Registered,
    authorize_url,
    exchange,
    get_code,
    hidden_fields,
    location_params,
)

VARIANTS = {
    "trailing-slash": REDIRECT + "/",
    "extra-query": REDIRECT + "?x=1",
    "empty-query": REDIRECT + "?",
    "other-port": "https://app.example:8443/callback",
    "explicit-default-port": "https://app.example:443/callback",
    "host-case": "https://APP.example/callback",
    "path-case": "https://app.example/Callback",
    "scheme-case": "HTTPS://app.example/callback",
    "http-not-https": "http://app.example/callback",
    "fragment": REDIRECT + "#frag",
    "userinfo-trick": "https://app.example@evil.example/callback",
    "userinfo-prefix": "https://evil.example@app.example/callback",
    "subdomain-lookalike": "https://app.example.evil.example/callback",
    "suffix-lookalike": "https://evilapp.example/callback",
    "path-suffix": REDIRECT + "/../evil",
    "percent-encoded-path": "https://app.example/%63allback",
    "trailing-dot-host": "https://app.example./callback",
    "whitespace": REDIRECT + " ",
    "other-query-value": "https://app.example/other?x=2",
    "more-query": REDIRECT_WITH_QUERY + "&y=2",
    "scheme-relative": "//app.example/callback",
    "foreign": "https://evil.example/callback",
    "javascript": "javascript:alert(1)",
}


def assert_error_page(r: httpx2.Response) -> None:
    assert r.status_code == 400, (r.status_code, r.headers.get("location"))
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in r.text


@pytest.mark.parametrize("uri", VARIANTS.values(), ids=VARIANTS.keys())
async def test_unregistered_redirect_uri_variant_gets_an_error_page(env: Env, uri: str) -> None:
    assert_error_page(await env.http.get(authorize_url(env.web.client_id, redirect_uri=uri)))


@pytest.mark.parametrize("uri", [REDIRECT, REDIRECT_WITH_QUERY])
async def test_registered_redirect_uris_are_accepted_exactly(env: Env, uri: str) -> None:
    r = await env.http.get(authorize_url(env.web.client_id, redirect_uri=uri, prompt="none"))
    assert r.status_code == 303 and r.headers["location"].startswith(uri)


async def test_unknown_client_gets_an_error_page(env: Env) -> None:
    assert_error_page(await env.http.get(authorize_url("no-such-client")))


async def test_missing_client_id_gets_an_error_page(env: Env) -> None:
    r = await env.http.get("/oauth/authorize?" + urlencode(
        {"response_type": "code", "redirect_uri": REDIRECT, "state": "s"}))
    assert_error_page(r)


async def test_missing_redirect_uri_with_several_registered_gets_an_error_page(env: Env):
    assert_error_page(await env.http.get(authorize_url(env.web.client_id, redirect_uri=None)))


@pytest.mark.parametrize("scope", ["openid", ""], ids=["asked", "by-default"])
async def test_missing_redirect_uri_in_an_openid_request_gets_an_error_page(env: Env,
                                                                          scope: str):
    # OpenID Connect Core 3.1.2.1 requires it, even of a client with one registered;
    # without a scope the SPA's registered one (openid) applies.
    r = await env.http.get(authorize_url(env.spa.client_id, redirect_uri=None,
                                         verifier="v" * 43, scope=scope))
    assert_error_page(r)
    assert "OpenID Connect" in r.text


async def test_redirect_uri_of_another_client_gets_an_error_page(env: Env) -> None:
    assert_error_page(await env.http.get(
        authorize_url(env.other.client_id, redirect_uri=REDIRECT)))


async def test_bad_redirect_uri_wins_over_later_errors(env: Env) -> None:
    # Even with a bad response_type and scope, nothing goes to an unverified URI.
    r = await env.http.get(authorize_url(env.web.client_id, redirect_uri="https://evil.example/",
                                         response_type="token", scope="admin"))
    assert_error_page(r)


async def test_repeated_redirect_uri_gets_an_error_page(env: Env) -> None:
    query = urlencode([("response_type", "code"), ("client_id", env.web.client_id),
                       ("redirect_uri", REDIRECT), ("redirect_uri", "https://evil.example/")])
    assert_error_page(await env.http.get("/oauth/authorize?" + query))


async def test_login_form_post_with_a_tampered_redirect_uri_gets_an_error_page(env: Env):
    page = await env.http.get(authorize_url(env.web.client_id))
    fields = hidden_fields(page.text)
    tampered = fields["continue"].replace("app.example", "evil.example")
    r = await env.http.post("/login", data={**fields, "continue": tampered, "login": "alice",
                                            "password": "correct horse battery staple"})
    assert_error_page(r)


# RFC 8252 section 7.3 (RFC 9700 section 2.1): a native app listens on a port the OS
# picks at the time of the request, so a loopback http redirect URI matches at any
# port. Everything else still matches exactly.
NATIVE = ("http://127.0.0.1/cb", "http://[::1]:8080/native?app=1")
LOOPBACK_ACCEPTED = ["http://127.0.0.1:53123/cb", "http://127.0.0.1/cb",
                     "http://127.0.0.1:8080/cb", "http://[::1]:1/native?app=1",
                     "http://[::1]/native?app=1"]
LOOPBACK_REFUSED = {
    "trailing-slash": "http://127.0.0.1:53123/cb/",
    "other-loopback-host": "http://[::1]:53123/cb",
    "localhost-for-ip": "http://localhost:53123/cb",
    "port-zero": "http://127.0.0.1:0/cb",
    "port-too-big": "http://127.0.0.1:65536/cb",
    "https": "https://127.0.0.1:53123/cb",
    "extra-query": "http://127.0.0.1:53123/cb?x=1",
    "other-query": "http://[::1]:8080/native?app=2",
    "userinfo": "http://127.0.0.1:53123@evil.example/cb",
    "host-suffix": "http://127.0.0.1.evil.example:53123/cb",
    "arabic-indic-digits": "http://127.0.0.1:\u0668\u0660/cb",
    "fullwidth-digits": "http://127.0.0.1:\uff18\uff10/cb",
}


async def _native(env: Env) -> str:
    from bastion.server.services.clients import create_client

    new = await create_client(env.ctx.storage, name="CLI", public=True, redirect_uris=NATIVE,
                              grant_types=["authorization_code"], scopes=["openid"])
    return new.client.client_id


@pytest.mark.parametrize("uri", LOOPBACK_ACCEPTED)
async def test_a_loopback_redirect_uri_matches_at_any_port(env: Env, uri: str) -> None:
    client_id = await _native(env)
    r = await env.http.get(authorize_url(client_id, redirect_uri=uri, prompt="none",
                                         verifier="v" * 43))
    assert r.status_code == 303 and r.headers["location"].startswith(uri)
    assert location_params(r)["error"] == "login_required"  # verified, then no session


@pytest.mark.parametrize("uri", LOOPBACK_REFUSED.values(), ids=LOOPBACK_REFUSED.keys())
async def test_a_loopback_redirect_uri_matches_exactly_but_for_the_port(env: Env, uri: str):
    client_id = await _native(env)
    assert_error_page(await env.http.get(authorize_url(client_id, redirect_uri=uri,
                                                       verifier="v" * 43)))


async def test_a_code_sent_to_a_loopback_port_is_redeemed_with_that_port_only(env: Env):
    native = Registered(await _native(env), None)
    uri = "http://127.0.0.1:53123/cb"
    code = await get_code(env, native.client_id, redirect_uri=uri, verifier="v" * 43)
    other_port = await exchange(env, code, client=native, verifier="v" * 43,
                                redirect_uri="http://127.0.0.1:53124/cb")
    assert other_port.status_code == 400 and other_port.json()["error"] == "invalid_grant"
    code = await get_code(env, native.client_id, redirect_uri=uri, verifier="v" * 43)
    r = await exchange(env, code, client=native, verifier="v" * 43, redirect_uri=uri)
    assert r.status_code == 200, r.text
