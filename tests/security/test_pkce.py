"""PKCE (RFC 7636, S256 only; RFC 9700 section 2.1.1): required for public clients,
``plain`` refused, and the verifier checked against the code at the token endpoint."""

from __future__ import annotations

import pytest
from security_helpers import (
    SPA_REDIRECT,
    Env,
    authorize_url,
    exchange,
    get_code,
    location_params,
    oauth_error,
)

from bastion.oauth import pkce
from support import ISSUER


def assert_error_redirect(response, redirect_uri: str, error: str) -> dict[str, str]:
    assert response.headers["location"].startswith(redirect_uri + "?")
    params = location_params(response)
    assert params["error"] == error
    assert params["state"] == "st-1" and params["iss"] == ISSUER
    assert "code" not in params
    return params


async def test_public_client_without_code_challenge_is_sent_back_with_state_and_iss(env: Env):
    r = await env.http.get(authorize_url(env.spa.client_id, redirect_uri=SPA_REDIRECT))
    params = assert_error_redirect(r, SPA_REDIRECT, "invalid_request")
    assert "PKCE" in params["error_description"]


@pytest.mark.parametrize("client", ["spa", "web"])
async def test_plain_code_challenge_method_is_refused(env: Env, client: str) -> None:
    registered = getattr(env, client)
    redirect = SPA_REDIRECT if client == "spa" else "https://app.example/callback"
    verifier = pkce.new_verifier()
    r = await env.http.get(authorize_url(registered.client_id, redirect_uri=redirect,
                                         code_challenge=verifier, code_challenge_method="plain"))
    params = assert_error_redirect(r, redirect, "invalid_request")
    assert "plain" in params["error_description"]


async def test_code_challenge_without_method_is_refused_as_plain(env: Env) -> None:
    # RFC 7636 section 4.3: an absent method means "plain".
    r = await env.http.get(authorize_url(env.spa.client_id, redirect_uri=SPA_REDIRECT,
                                         code_challenge=pkce.challenge(pkce.new_verifier())))
    assert_error_redirect(r, SPA_REDIRECT, "invalid_request")


async def test_code_challenge_method_without_challenge_is_refused(env: Env) -> None:
    r = await env.http.get(authorize_url(env.web.client_id, code_challenge_method="S256"))
    assert_error_redirect(r, "https://app.example/callback", "invalid_request")


@pytest.mark.parametrize("challenge", [
    "short",
    "a" * 42,
    "a" * 44,
    "+" * 43,  # not base64url
    "A" * 42 + "=",  # padding
    "A" * 42 + "\u00e9",
    "A" * 43 + "\n",  # a regex with $ would let the newline through
], ids=["short", "42-chars", "44-chars", "not-base64url", "padded", "non-ascii",
        "trailing-newline"])
async def test_malformed_code_challenge_is_refused(env: Env, challenge: str) -> None:
    r = await env.http.get(authorize_url(env.spa.client_id, redirect_uri=SPA_REDIRECT,
                                         code_challenge=challenge, code_challenge_method="S256"))
    params = assert_error_redirect(r, SPA_REDIRECT, "invalid_request")
    assert "malformed" in params["error_description"]


async def test_public_client_with_the_right_verifier_gets_tokens(env: Env) -> None:
    verifier = pkce.new_verifier()
    code = await get_code(env, env.spa.client_id, redirect_uri=SPA_REDIRECT, verifier=verifier)
    r = await exchange(env, code, client=env.spa, redirect_uri=SPA_REDIRECT, verifier=verifier)
    assert r.status_code == 200, r.text


async def test_wrong_code_verifier_is_invalid_grant(env: Env) -> None:
    verifier = pkce.new_verifier()
    code = await get_code(env, env.spa.client_id, redirect_uri=SPA_REDIRECT, verifier=verifier)
    r = await exchange(env, code, client=env.spa, redirect_uri=SPA_REDIRECT,
                       verifier=pkce.new_verifier())
    assert oauth_error(r) == "invalid_grant"


async def test_missing_code_verifier_when_a_challenge_was_sent_is_invalid_grant(env: Env):
    verifier = pkce.new_verifier()
    code = await get_code(env, env.web.client_id, verifier=verifier)
    assert oauth_error(await exchange(env, code)) == "invalid_grant"


async def test_code_verifier_without_a_challenge_is_a_refused_downgrade(env: Env) -> None:
    code = await get_code(env, env.web.client_id)  # confidential: PKCE optional
    r = await exchange(env, code, verifier=pkce.new_verifier())
    assert oauth_error(r) == "invalid_grant"
    assert "no challenge" in r.json()["error_description"]


async def test_too_short_verifier_is_refused_even_if_its_hash_matches(env: Env) -> None:
    verifier = "short-but-hashes-right"  # RFC 7636 section 4.1: 43 to 128 characters
    code = await get_code(env, env.spa.client_id, redirect_uri=SPA_REDIRECT,
                          code_challenge=pkce.challenge(verifier), code_challenge_method="S256")
    r = await exchange(env, code, client=env.spa, redirect_uri=SPA_REDIRECT, verifier=verifier)
    assert oauth_error(r) == "invalid_grant"


async def test_a_code_burnt_by_a_wrong_verifier_cannot_be_redeemed_afterwards(env: Env):
    verifier = pkce.new_verifier()
    code = await get_code(env, env.spa.client_id, redirect_uri=SPA_REDIRECT, verifier=verifier)
    wrong = await exchange(env, code, client=env.spa, redirect_uri=SPA_REDIRECT,
                           verifier=pkce.new_verifier())
    assert oauth_error(wrong) == "invalid_grant"
    right = await exchange(env, code, client=env.spa, redirect_uri=SPA_REDIRECT,
                           verifier=verifier)
    assert oauth_error(right) == "invalid_grant"
