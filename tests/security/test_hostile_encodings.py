"""Inputs that are well under the size limits but break a naive decoder: deeply
nested JSON inside a JWS, non-ASCII bytes in Basic credentials and in the session
cookie. Each gets the endpoint's ordinary refusal, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html import unescape

import httpx2
import pytest
from security_helpers import Env, authorize_url, get_code

from bastion.oauth.jose import b64url_encode
from bastion.server.services.sessions import COOKIE as SESSION_COOKIE
from support import ISSUER

NESTED = b64url_encode(b"[" * 6000)  # about 8 KB: inside the 16 KB token limit
HEADER = b64url_encode(b'{"alg":"ES256","typ":"at+jwt"}')
DEEP_TOKENS = {
    "header": f"{NESTED}.e30.AA",
    "payload": f"{HEADER}.{NESTED}.AA",
}


@pytest.fixture
async def raw(env: Env) -> AsyncIterator[httpx2.AsyncClient]:
    """A client that gets a 500 as a response instead of the app's exception."""
    transport = httpx2.ASGITransport(app=env.asgi, client=("127.0.0.1", 40000),
                                     raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield http


@pytest.mark.parametrize("token", DEEP_TOKENS.values(), ids=DEEP_TOKENS.keys())
async def test_deeply_nested_jws_is_an_invalid_token(env: Env, raw: httpx2.AsyncClient,
                                                     token: str) -> None:
    bearer = {"Authorization": "Bearer " + token}
    assert (await raw.get("/oauth/userinfo", headers=bearer)).status_code == 401
    assert (await raw.get("/api/v1/users/me", headers=bearer)).status_code == 401
    r = await raw.post("/oauth/introspect", data={"token": token}, auth=env.web.auth)
    assert r.status_code == 200 and r.json() == {"active": False}
    r = await raw.post("/oauth/revoke", data={"token": token}, auth=env.web.auth)
    assert r.status_code == 200  # RFC 7009: an unknown token is not an error
    r = await raw.get("/oauth/logout", params={"id_token_hint": token})
    assert r.status_code == 200 and 'action="/oauth/logout"' in r.text  # not trusted


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
async def test_non_ascii_basic_credentials_are_invalid_client(raw: httpx2.AsyncClient,
                                                              path: str) -> None:
    r = await raw.post(path, data={"grant_type": "client_credentials", "token": "x"},
                       headers={"Authorization": b"Basic \xe9\xe9\xe9\xe9"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_non_ascii_session_cookie_is_no_session(env: Env,
                                                      raw: httpx2.AsyncClient) -> None:
    await get_code(env)  # a real session exists in the database
    cookie = {"Cookie": f"{SESSION_COOKIE}=abc.".encode() + b"\xe9"}
    r = await raw.get(authorize_url(env.web.client_id), headers=cookie)
    assert r.status_code == 200 and "<form" in r.text  # the login form: not signed in
    r = await raw.get(authorize_url(env.web.client_id, prompt="none"), headers=cookie)
    assert "error=login_required" in r.headers["location"]
    for path in ("/", "/account", "/oauth/logout"):
        assert (await raw.get(path, headers=cookie)).status_code < 500, path


async def test_error_description_that_echoes_input_keeps_to_the_rfc_charset(
        env: Env, raw: httpx2.AsyncClient) -> None:
    # RFC 6749 section 5.2: error_description is printable ASCII without '"' and '\'.
    r = await raw.post("/oauth/token", data={"grant_type": 'x"\\\u00e9\u2028y'},
                       auth=env.web.auth)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    description = r.json()["error_description"]
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description), description


MANY = "&".join(f"p{i}=1" for i in range(51))
MALFORMED = {
    "not-utf8": ("grant_type=password&nonce=%ff", "Parameter 'nonce' is not percent-encoded "
                 "UTF-8."),
    "name-not-utf8": ("grant_type=password&%ff=1", "A parameter name is not percent-encoded "
                      "UTF-8."),
    "too-many": (MANY, "Too many parameters: at most 50."),
}


@pytest.mark.parametrize(("query", "says"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_parameters_are_refused_saying_what_is_wrong(
        env: Env, query: str, says: str) -> None:
    r = await env.http.post("/oauth/token", content=query.encode(), auth=env.web.auth,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "invalid_request", "error_description": says}
    page = await env.http.get(f"/oauth/authorize?{query}")
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert says in unescape(page.text)


async def test_a_form_body_that_is_not_utf8_is_refused_saying_so(env: Env) -> None:
    r = await env.http.post("/oauth/token", content=b"grant_type=password&nonce=\xff",
                            auth=env.web.auth,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    assert r.json()["error_description"] == "The form body is not valid UTF-8."
