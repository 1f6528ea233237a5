"""The token endpoint and the client credentials grant, in process."""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import jwt
import pytest

from bastion.server.services.clients import create_client
from support import ISSUER, App

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


async def token(app: App, data: dict[str, str] | None = None, **kw):
    if data is None:
        data = {"grant_type": "client_credentials"}
    return await app.http.post("/oauth/token", data=data, **kw)


async def test_basic_auth_issues_an_rfc9068_access_token(app: App) -> None:
    r = await token(app, headers=basic(app.client_id, app.client_secret))
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == app.ctx.settings.access_token_ttl
    assert body["scope"] == "read write"
    assert "refresh_token" not in body
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    signer = await app.ctx.keys.signer("access")
    assert header["kid"] == signer.kid
    claims = jwt.decode(body["access_token"], signer.key.public_key(), algorithms=["ES256"],
                        audience=ISSUER, issuer=ISSUER)
    assert claims["sub"] == claims["client_id"] == app.client_id
    assert claims["scope"] == "read write"
    assert claims["exp"] - claims["iat"] == app.ctx.settings.access_token_ttl
    assert len(claims["jti"]) >= 16


async def test_post_auth_and_a_narrower_scope(app: App) -> None:
    r = await token(app, {"grant_type": "client_credentials", "client_id": app.client_id,
                          "client_secret": app.client_secret, "scope": "read"})
    assert r.status_code == 200
    assert r.json()["scope"] == "read"


async def test_an_optional_scope_left_out_is_said_in_the_answer(app: App) -> None:
    r = await token(app, {"grant_type": "client_credentials", "client_id": app.client_id,
                          "client_secret": app.client_secret, "scope": "read offline_access"})
    assert r.status_code == 200 and r.json()["scope"] == "read"
    r = await token(app, {"grant_type": "client_credentials", "client_id": app.client_id,
                          "client_secret": app.client_secret, "scope": "offline_access"})
    # None left: an error, not a token of no scope (RFC 6749 section 3.3).
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    assert "offline_access" in r.json()["error_description"]


async def test_basic_credentials_are_form_decoded(app: App) -> None:
    # RFC 6749 2.3.1: id and secret are form-urlencoded before base64.
    new = await create_client(app.ctx.storage, name="odd", client_id="odd id:1+x",
                              grant_types=["client_credentials"])
    assert new.client_secret
    r = await token(app, headers=basic("odd id:1+x", new.client_secret))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("auth", [
    {"headers": {"Authorization": "Basic " + base64.b64encode(b"nobody:x").decode()}},
    {"data": {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}},
    {"headers": {"Authorization": "Basic !!!not-base64"}},
    {"headers": {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}},
    {},
])
async def test_bad_client_credentials_are_invalid_client(app: App, auth) -> None:
    r = await token(app, **auth)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_wrong_secret_is_invalid_client(app: App) -> None:
    r = await token(app, headers=basic(app.client_id, app.client_secret + "x"))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


async def test_two_authentication_methods_are_refused(app: App) -> None:
    r = await token(app, {"grant_type": "client_credentials", "client_secret": "x"},
                    headers=basic(app.client_id, app.client_secret))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize("scheme", ["Bearer abc", "DPoP abc", "Digest x=1", "Basic"])
async def test_another_authorization_scheme_beside_body_credentials_is_refused(
        app: App, scheme: str) -> None:
    # RFC 6749 2.3: one method per request; an ignored header would hide a mistake.
    r = await token(app, {"grant_type": "client_credentials", "client_id": app.client_id,
                          "client_secret": app.client_secret},
                    headers={"Authorization": scheme})
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    assert r.headers["www-authenticate"].startswith("Basic ")


async def test_a_body_client_id_differing_from_the_basic_one_is_refused(app: App) -> None:
    other = await create_client(app.ctx.storage, name="other", grant_types=[
        "client_credentials"])
    r = await token(app, {"grant_type": "client_credentials",
                          "client_id": other.client.client_id},
                    headers=basic(app.client_id, app.client_secret))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


async def test_a_public_client_sending_a_secret_is_invalid_client(app: App) -> None:
    spa = await create_client(app.ctx.storage, name="spa", public=True,
                              redirect_uris=["https://spa.example/cb"],
                              grant_types=["authorization_code", "refresh_token"])
    r = await token(app, {"grant_type": "refresh_token", "refresh_token": "x",
                          "client_id": spa.client.client_id, "client_secret": "guess"})
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    r = await token(app, headers=basic(spa.client.client_id, "guess"),
                    data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


@pytest.mark.parametrize(("data", "error"), [
    ({}, "invalid_request"),
    ({"grant_type": "urn:made:up"}, "unsupported_grant_type"),
    ({"grant_type": "password"}, "unauthorized_client"),
    ({"grant_type": "client_credentials", "scope": "read admin"}, "invalid_scope"),
])
async def test_grant_errors(app: App, data, error) -> None:
    r = await token(app, data, headers=basic(app.client_id, app.client_secret))
    assert r.status_code == 400
    assert r.json()["error"] == error
    assert r.json()["error_description"]


async def test_a_grant_the_client_may_not_use(app: App) -> None:
    new = await create_client(app.ctx.storage, name="web", redirect_uris=["https://a.example/cb"])
    assert new.client_secret
    r = await token(app, headers=basic(new.client.client_id, new.client_secret))
    assert (r.status_code, r.json()["error"]) == (400, "unauthorized_client")


@pytest.mark.parametrize("body", [
    b"grant_type=client_credentials&scope=%ff%fe",
    b"grant_type=client_credentials&grant_type=client_credentials",
    b"\xff\xfe\x00",
    b"grant_type=client_credentials&scope=a%00b",
])
async def test_malformed_bodies_get_400(app: App, body: bytes) -> None:
    r = await app.http.post("/oauth/token", content=body,
                            headers={**FORM, **basic(app.client_id, app.client_secret)})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_oversized_body_gets_400(app: App) -> None:
    body = b"grant_type=client_credentials&x=" + b"a" * (app.ctx.settings.max_body_bytes + 1)
    r = await app.http.post("/oauth/token", content=body, headers=FORM)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


async def test_json_body_is_refused(app: App) -> None:
    r = await app.http.post("/oauth/token", json={"grant_type": "client_credentials"},
                            headers=basic(app.client_id, app.client_secret))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


async def test_get_is_refused(app: App) -> None:
    r = await app.http.get("/oauth/token")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
