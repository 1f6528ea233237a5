from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bastion.server import keys
from support import ISSUER, App


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server"])
async def test_metadata_lists_only_what_is_served(app: App, path: str) -> None:
    meta = (await app.http.get(path)).json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert meta["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["authorization_code", "client_credentials",
                                             "password", "refresh_token"]
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic",
                                                             "client_secret_post", "none"]
    assert meta["revocation_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "none"]
    assert meta["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic",
                                                                     "client_secret_post"]
    assert meta["prompt_values_supported"] == ["consent", "login", "none", "select_account"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert meta["response_modes_supported"] == ["query", "form_post"]
    # OpenID Connect Discovery assumes request_uri support unless told otherwise.
    assert meta["request_parameter_supported"] is False
    assert meta["request_uri_parameter_supported"] is False
    # every advertised endpoint is served
    for key, value in meta.items():
        if key.endswith("_endpoint") or key == "jwks_uri":
            post = key in ("token_endpoint", "revocation_endpoint", "introspection_endpoint",
                           "passwordless_endpoint")
            r = await app.http.request("POST" if post else "GET", value)
            assert r.status_code not in (404, 405, 500), key


async def test_jwks_publishes_public_keys_only(app: App) -> None:
    body = (await app.http.get("/.well-known/jwks.json")).json()
    by_use = {k["kid"].split("-")[0]: k for k in body["keys"]}
    assert by_use["access"]["alg"] == "ES256"
    assert by_use["id"]["alg"] == "RS256"
    for jwk in body["keys"]:
        assert jwk["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()


async def test_a_rotation_signs_with_a_key_published_before_it(app: App) -> None:
    old = (await app.ctx.keys.signer("access")).kid
    before = {k["kid"] for k in (await app.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert len(before) == 4  # an active and a next key per use
    (new_access, new_id) = await keys.rotate(app.ctx.storage, app.ctx.settings)
    assert {new_access, new_id} <= before - {old}
    after = {k["kid"] for k in (await app.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert before < after and len(after) == 6  # the old keys stay, two new next keys
    await app.ctx.keys.reload()
    assert (await app.ctx.keys.signer("access")).kid == new_access
    assert (await app.ctx.keys.signer("id")).kid == new_id


async def test_retired_keys_leave_the_jwks_after_their_tokens_expire(app: App) -> None:
    await keys.rotate(app.ctx.storage, app.ctx.settings)
    stored = await app.ctx.storage.signing_keys()
    retired = [k for k in stored if k.retired_at is not None]
    assert retired
    settings = app.ctx.settings
    longest = max(settings.access_token_ttl, settings.id_token_ttl) + settings.cache_ttl
    at_expiry = retired[0].retired_at + timedelta(seconds=longest)  # type: ignore[operator]
    assert retired[0] in keys.published(stored, settings, at_expiry)
    later = at_expiry + timedelta(seconds=120)
    assert retired[0] not in keys.published(stored, settings, later)
    assert len(keys.published(stored, settings, later)) == 4  # active and next, per use
    assert datetime.now(UTC) < later


async def test_a_key_this_instance_cannot_decrypt_does_not_stop_signing(app: App) -> None:
    """Keys stored under another secret key (an instance started with the wrong
    BASTION_SECRET_KEY rotated): the reload skips them, the key at hand keeps signing
    while it is published, they still verify (public keys need no secret), and
    /readyz reports it without taking the instance out of service."""
    from pydantic import SecretStr

    other = app.ctx.settings.model_copy(update={"secret_key": SecretStr("z" * 40)})
    cipher = keys.KeyCipher(other.secret_key_bytes())
    for _ in range(2):  # the second rotation makes a foreign key the signing one
        await app.ctx.storage.rotate_signing_key(keys.new_signing_key(other, cipher, "access"))
    await app.ctx.keys.reload()
    before = (await app.ctx.keys.signer("access")).kid
    stored = {k.kid: k for k in await app.ctx.storage.signing_keys()}
    assert keys.signs(stored[before]) is False  # kept, though no longer the active one
    foreign = next(k for k in stored.values() if keys.signs(k) and k.use == "access")
    assert foreign.kid in await app.ctx.keys.verifiers()
    ready = await app.http.get("/readyz")
    assert ready.status_code == 200 and "cannot be decrypted" in ready.json()["warning"]


async def test_readyz_answers_when_the_database_does_not(app: App, monkeypatch) -> None:
    from bastion.server.endpoints import health

    async def stuck() -> None:
        await asyncio.sleep(2)

    monkeypatch.setattr(health, "READY_TIMEOUT", 0.05)
    monkeypatch.setattr(app.ctx.storage, "ping", stuck)
    ready = await app.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "no answer within 0.05 s"


async def test_an_unexpected_failure_answers_in_the_callers_form(app: App, monkeypatch) -> None:
    """A database gone away on a hosted page is an HTML page, on the REST API a
    problem document, elsewhere RFC 6749 server_error: never Starlette's plain text."""
    import httpx2

    from bastion.server.app import create_app

    async def gone(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the database went away")

    token = (await app.http.post("/oauth/token", auth=(app.client_id, app.client_secret),
                                 data={"grant_type": "client_credentials"})).json()
    monkeypatch.setattr(app.ctx.storage, "get_client", gone)
    monkeypatch.setattr(app.ctx.keys, "verifiers", gone)
    transport = httpx2.ASGITransport(app=create_app(app.ctx.settings, app.ctx),
                                     raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url=ISSUER) as http:
        page = await http.get("/oauth/authorize", params={"client_id": "web"},
                              headers={"Accept": "text/html"})
        assert page.status_code == 500 and "text/html" in page.headers["content-type"]
        assert "Something went wrong" in page.text and "went away" not in page.text
        api = await http.get("/api/v1/users",
                             headers={"Authorization": "Bearer " + token["access_token"]})
        assert api.status_code == 500
        assert api.headers["content-type"] == "application/problem+json"
        other = await http.get("/oauth/authorize", params={"client_id": "web"})
        assert other.status_code == 500 and other.json()["error"] == "server_error"


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/.well-known/jwks.json", "GET, HEAD"),
    ("DELETE", "/oauth/userinfo", "GET, HEAD, POST"),
    ("PUT", "/oauth/authorize", "GET, POST"),  # HEAD: not where a GET acts
    ("PUT", "/api/v1/users", "GET, HEAD, POST"),
    ("PUT", "/api/v1/users/u-1", "DELETE, GET, HEAD, PATCH"),
    ("POST", "/openapi.json", "GET, HEAD"),
])
async def test_a_405_lists_the_methods_the_path_is_served_with(
        app: App, method: str, path: str, allow: str) -> None:
    """RFC 9110 section 15.5.6: a 405 says which methods would do."""
    r = await app.http.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow


async def test_a_405_on_a_path_spelled_out_lists_only_its_own_methods(app: App) -> None:
    # /api/v1/users/count is not a user id, though /api/v1/users/{user_id} matches it
    r = await app.http.put("/api/v1/users/count")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")
