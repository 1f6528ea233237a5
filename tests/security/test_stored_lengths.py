"""Authorization parameters that are stored fit their columns: a longer one is
``invalid_request`` where it enters (the authorization endpoint, a sign-in link's
request), never a 500 from the database later (PostgreSQL refuses an over-long
``varchar``; SQLite would keep it), and one at the limit goes all the way through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from security_helpers import REDIRECT, Env, authorize_url, exchange, get_code, location_params

from bastion.oauth import pkce
from bastion.oauth.errors import InvalidRequest
from bastion.oauth.jose import parse_compact
from bastion.server.checks.authorization import (
    MAX_NONCE,
    AuthorizationRequest,
    check_lengths,
)
from bastion.server.storage.tables import authorization_codes
from support import Mailbox, hidden_fields, smtp_server

MakeEnv = Callable[..., Awaitable[Env]]
TOO_LONG = "n" * (MAX_NONCE + 45)


def test_the_nonce_limit_is_its_columns_width() -> None:
    assert MAX_NONCE == authorization_codes.c.nonce.type.length == 255
    check_lengths(AuthorizationRequest({"nonce": "n" * MAX_NONCE, "state": "s" * 2048}))
    with pytest.raises(InvalidRequest) as refused:
        check_lengths(AuthorizationRequest({"nonce": "n" * (MAX_NONCE + 1)}))
    assert refused.value.description == "nonce is too long: at most 255 characters."


async def test_a_signed_in_authorization_with_a_long_nonce_is_invalid_request(
        on_backend: MakeEnv) -> None:
    env = await on_backend()
    await get_code(env)  # signs in: the next requests would issue a code at once
    r = await env.http.get(authorize_url(env.web.client_id, nonce=TOO_LONG))
    params = location_params(r)
    assert params["error"] == "invalid_request" and params["state"] == "st-1"
    assert params["error_description"] == "nonce is too long: at most 255 characters."
    # At the limit the nonce is stored with the code and comes back in the ID token.
    nonce = "é" * MAX_NONCE  # characters, not bytes, as PostgreSQL counts them
    tokens = await exchange(env, await get_code(env, nonce=nonce))
    assert tokens.status_code == 200, tokens.text
    assert parse_compact(tokens.json()["id_token"]).claims()["nonce"] == nonce
    # The parameters that are only looked up, shown or echoed take 2048 characters.
    long = "x" * 2048
    r = await env.http.get(authorize_url(env.web.client_id, state=long, login_hint=long,
                                         organization=long))
    assert location_params(r)["error"] == "access_denied"  # no such organization


async def test_a_sign_in_link_request_with_a_long_nonce_is_invalid_request(
        on_backend: MakeEnv) -> None:
    with smtp_server() as (host, port, box):
        env = await on_backend(smtp_host=host, smtp_port=port, smtp_tls="none")
        verifier = pkce.new_verifier()

        async def request_link(nonce: str) -> tuple[int, dict[str, str]]:
            r = await env.http.post("/oauth/passwordless", auth=env.web.auth, data={
                "email": "alice@example.com", "response_type": "code",
                "redirect_uri": REDIRECT, "scope": "openid", "state": "s", "nonce": nonce,
                "code_challenge": pkce.challenge(verifier), "code_challenge_method": "S256"})
            return r.status_code, r.json()

        assert await request_link(TOO_LONG) == (400, {
            "error": "invalid_request",
            "error_description": "nonce is too long: at most 255 characters."})
        status, _ = await request_link("n" * MAX_NONCE)
        assert status == 200
        link = urlsplit(Mailbox.link((await asyncio.to_thread(box.wait_for, 1))[0]))
        confirm = await env.http.get(f"{link.path}?{link.query}")
        used = await env.http.post(link.path, data=hidden_fields(confirm.text))
        assert used.status_code == 303, used.text
        back = await env.http.get(used.headers["location"])
        assert "code" in location_params(back)
