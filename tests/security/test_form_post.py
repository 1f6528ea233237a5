"""OAuth 2.0 Form Post Response Mode: with ``response_mode=form_post`` the answer, a
code or an error with ``state`` and ``iss``, is posted to the verified redirect URI by
a page that submits itself, so the code never appears in a URL. Only that page's own
script may run."""

from __future__ import annotations

import base64
import hashlib
import re
from html import unescape

import httpx2
from security_helpers import (
    REDIRECT,
    REDIRECT_WITH_QUERY,
    Env,
    authorize_url,
    exchange,
    get_code,
    hidden_fields,
)

from support import ISSUER

_ACTION = re.compile(r'<form method="post" action="([^"]*)" id="answer">')
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def posted_answer(r: httpx2.Response, redirect_uri: str = REDIRECT) -> dict[str, str]:
    """The fields the page posts, after checking it posts them to ``redirect_uri``."""
    assert r.status_code == 200, (r.status_code, r.headers.get("location"), r.text[:300])
    assert "location" not in r.headers
    assert r.headers["cache-control"] == "no-store"
    action = _ACTION.search(r.text)
    assert action is not None and unescape(action[1]) == redirect_uri
    script = _SCRIPT.search(r.text)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script[1].encode()).digest()).decode()
    csp = r.headers["content-security-policy"]
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    return hidden_fields(r.text)


async def test_the_code_is_posted_to_the_redirect_uri_and_redeemed(env: Env) -> None:
    await get_code(env)  # signs in
    r = await env.http.get(authorize_url(env.web.client_id, response_mode="form_post"))
    fields = posted_answer(r)
    assert fields.keys() == {"code", "state", "iss"}
    assert fields["state"] == "st-1" and fields["iss"] == ISSUER
    assert "code=" not in str(r.url) and fields["code"] not in r.headers.get("location", "")
    tokens = await exchange(env, fields["code"])
    assert tokens.status_code == 200, tokens.text


async def test_the_sign_in_form_leads_to_the_posted_answer(env: Env) -> None:
    page = await env.http.get(authorize_url(env.web.client_id, response_mode="form_post"))
    assert page.status_code == 200 and 'action="/login"' in page.text
    posted = await env.http.post("/login", data={
        **hidden_fields(page.text), "login": "alice", "password": "correct horse battery staple"})
    assert posted.status_code == 303
    fields = posted_answer(await env.http.get(posted.headers["location"]))
    assert fields["code"] and fields["state"] == "st-1"


async def test_errors_are_posted_too(env: Env) -> None:
    r = await env.http.get(authorize_url(env.web.client_id, response_mode="form_post",
                                         prompt="none"))
    assert posted_answer(r) == {"error": "login_required", "state": "st-1", "iss": ISSUER,
                                "error_description": "The user must log in."}
    r = await env.http.get(authorize_url(env.web.client_id, response_mode="form_post",
                                         scope="openid admin"))
    assert posted_answer(r)["error"] == "invalid_scope"


async def test_the_registered_query_stays_in_the_action(env: Env) -> None:
    await get_code(env)
    r = await env.http.get(authorize_url(env.web.client_id, redirect_uri=REDIRECT_WITH_QUERY,
                                         response_mode="form_post"))
    assert posted_answer(r, REDIRECT_WITH_QUERY)["code"]


async def test_nothing_is_posted_to_an_unverified_redirect_uri(env: Env) -> None:
    r = await env.http.get(authorize_url(env.web.client_id, response_mode="form_post",
                                         redirect_uri="https://evil.example/cb"))
    assert r.status_code == 400 and "evil.example" not in r.text
    assert 'id="answer"' not in r.text


async def test_a_value_that_breaks_out_of_the_page_is_escaped(env: Env) -> None:
    state = '"><script>alert(1)</script>'
    r = await env.http.get(authorize_url(env.web.client_id, response_mode="form_post",
                                         prompt="none", state=state))
    assert posted_answer(r)["state"] == state
    assert "<script>alert(1)" not in r.text


async def test_form_post_to_an_apps_own_scheme_is_refused(env: Env) -> None:
    """A browser cannot post to ``com.example.app:/cb``: the code would be lost."""
    from bastion.server.services.clients import create_client

    native = await create_client(env.ctx.storage, name="Phone app", public=True,
                                 redirect_uris=["com.example.app:/cb"],
                                 grant_types=["authorization_code"], scopes=["openid"])
    r = await env.http.get(authorize_url(native.client.client_id, response_mode="form_post",
                                         redirect_uri="com.example.app:/cb",
                                         verifier="v" * 43))
    assert r.status_code == 303
    assert r.headers["location"].startswith("com.example.app:/cb?error=invalid_request")
