"""A third-party OAuth client (Authlib, on httpx2) against the real server.

Nothing of Bastion's SDK is used for the protocol: Authlib builds the
authorization URL with PKCE S256, checks ``state`` on the callback, exchanges the
code and refreshes; the ID token is checked with joserfc. Only the login form is
driven by the shared plain-HTTP helper, and the SDK is used at the end to show
that tokens from either client are the same tokens.
"""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import pytest

pytest.importorskip("authlib", reason="authlib is not installed")

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet

from bastion import Client
from support import ServerProcess


def discover(server: ServerProcess) -> dict[str, Any]:
    with Client(url=server.url) as client:
        return dict(client.discover().raw)


def check_id_token(token: str, meta: dict[str, Any], client_id: str, nonce: str) -> str:
    import httpx2

    keys = KeySet.import_key_set(httpx2.get(meta["jwks_uri"]).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    claims = decoded.claims
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": client_id},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
    ).validate(claims)
    return str(claims["sub"])


def test_authlib_code_flow_with_pkce_and_refresh(
    bastion_server: ServerProcess, web_app: Any, account: Any, sign_in: Any
) -> None:
    meta = discover(bastion_server)
    verifier, nonce = generate_token(64), secrets.token_urlsafe(16)
    with OAuth2Client(
        web_app.client_id,
        web_app.client_secret,
        scope="openid profile email",
        redirect_uri=web_app.redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        url, state = oauth.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        callback = sign_in(url, account)
        token = oauth.fetch_token(
            meta["token_endpoint"], authorization_response=callback, state=state,
            code_verifier=verifier,
        )
        assert token["token_type"].lower() == "bearer" and token["refresh_token"]
        assert check_id_token(token["id_token"], meta, web_app.client_id, nonce) == account.id
        info = oauth.get(meta["userinfo_endpoint"]).json()
        assert info["preferred_username"] == account.username

        renewed = oauth.refresh_token(meta["token_endpoint"],
                                      refresh_token=token["refresh_token"])
        assert renewed["refresh_token"] != token["refresh_token"]
        assert renewed["access_token"] != token["access_token"]

    # The SDK sees Authlib's tokens like its own.
    with Client(url=bastion_server.url, client_id=web_app.client_id,
                client_secret=web_app.client_secret) as sdk:
        assert sdk.verify_token(renewed["access_token"])["sub"] == account.id
        assert sdk.introspect(renewed["refresh_token"], "refresh_token")["active"] is True
        sdk.revoke(renewed["refresh_token"], "refresh_token")
        assert sdk.introspect(renewed["refresh_token"], "refresh_token")["active"] is False


def test_authlib_async_public_client(
    bastion_server: ServerProcess, public_app: Any, account: Any, asign_in: Any
) -> None:
    meta = discover(bastion_server)

    async def main() -> None:
        verifier = generate_token(64)
        async with AsyncOAuth2Client(
            public_app.client_id,
            scope="openid email",
            redirect_uri=public_app.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        ) as oauth:
            url, state = oauth.create_authorization_url(
                meta["authorization_endpoint"], code_verifier=verifier, nonce="n-async"
            )
            callback = await asign_in(url, account)
            token = await oauth.fetch_token(
                meta["token_endpoint"], authorization_response=callback, state=state,
                code_verifier=verifier,
            )
            assert check_id_token(token["id_token"], meta, public_app.client_id,
                                  "n-async") == account.id
            renewed = await oauth.refresh_token(
                meta["token_endpoint"], refresh_token=token["refresh_token"]
            )
            assert renewed["refresh_token"] != token["refresh_token"]
            info = (await oauth.get(meta["userinfo_endpoint"])).json()
            assert info["email"] == account.email

    anyio.run(main)
