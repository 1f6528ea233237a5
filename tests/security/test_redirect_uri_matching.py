"""Redirect URIs match exactly (RFC 9700 section 2.1). A client or redirect URI that
cannot be trusted gets an error page (400, HTML), never a redirect."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx2
import pytest
from security_helpers import REDIRECT, REDIRECT_WITH_QUERY, Env, authorize_url, hidden_fields

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
