"""Access tokens that are expired, revoked or not ours: userinfo answers 401 with
``WWW-Authenticate: Bearer error="invalid_token"`` (RFC 6750 section 3.1) and
introspection says ``{"active": false}`` (RFC 7662 section 2.2)."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from security_helpers import Env

from bastion.oauth.jose import PrivateKey, b64url_decode, b64url_encode
from bastion.server.models import Grant
from bastion.server.services.tokens import ACCESS_TOKEN_TYP
from bastion.server.storage.tables import events
from support import ISSUER

HAND_MADE = "hand-made-grant"


async def forge(env: Env, *, typ: str = ACCESS_TOKEN_TYP, key: PrivateKey | None = None,
                **claims: Any) -> str:
    """An access token signed with the server's active key (or ``key``), of the grant
    ``HAND_MADE`` unless ``gid`` says otherwise (stored first, as the server does)."""
    now = int(time.time())
    body = {"iss": ISSUER, "sub": env.user.id, "aud": ISSUER, "client_id": env.web.client_id,
            "iat": now, "exp": now + 300, "jti": secrets.token_urlsafe(16), "scope": "openid",
            "gid": HAND_MADE, **claims}
    if body["gid"] == HAND_MADE and await env.ctx.storage.get_grant(HAND_MADE) is None:
        at = datetime.now(UTC)
        await env.ctx.storage.create_grant(Grant(
            id=HAND_MADE, client_id=env.web.client_id, user_id=env.user.id, session_id=None,
            scope="openid", auth_time=at, created_at=at), None)
    signer = key or await env.ctx.keys.signer("access")
    return signer.sign({k: v for k, v in body.items() if v is not None}, typ=typ)


def assert_invalid_token(r: httpx2.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.text)
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert r.json()["error"] == "invalid_token"


async def test_hand_signed_token_is_accepted(env: Env) -> None:
    # The control for the forged variants below.
    token = await forge(env)
    assert (await env.userinfo(token)).status_code == 200
    assert (await env.introspect(token))["active"] is True


async def test_a_token_of_a_grant_that_is_gone_is_refused(env: Env) -> None:
    """Every grant is stored before its tokens are issued; one that is gone was purged
    by housekeeping, and its tokens count as revoked (fail closed)."""
    token = await forge(env, gid="purged-grant")
    assert_invalid_token(await env.userinfo(token))
    assert await env.introspect(token) == {"active": False}


async def test_expired_access_token_is_refused(env: Env) -> None:
    now = int(time.time())
    token = await forge(env, iat=now - 700, exp=now - 100)
    assert_invalid_token(await env.userinfo(token))
    assert await env.introspect(token) == {"active": False}


async def test_revoked_access_token_is_refused(env: Env) -> None:
    token = (await env.password_grant(scope="openid")).json()["access_token"]
    assert (await env.userinfo(token)).status_code == 200
    r = await env.http.post("/oauth/revoke", data={"token": token}, auth=env.web.auth)
    assert r.status_code == 200
    assert_invalid_token(await env.userinfo(token))
    assert await env.introspect(token) == {"active": False}


async def test_access_token_is_refused_once_its_refresh_family_is_revoked(env: Env) -> None:
    tokens = (await env.password_grant(scope="openid")).json()
    await env.http.post("/oauth/revoke", data={"token": tokens["refresh_token"]},
                        auth=env.web.auth)
    assert_invalid_token(await env.userinfo(tokens["access_token"]))
    assert await env.introspect(tokens["access_token"]) == {"active": False}


async def test_another_client_cannot_revoke_a_token(env: Env) -> None:
    token = (await env.password_grant(scope="openid")).json()["access_token"]
    r = await env.http.post("/oauth/revoke", data={"token": token}, auth=env.other.auth)
    assert r.status_code == 200  # RFC 7009 2.2: same answer, but nothing revoked
    assert (await env.userinfo(token)).status_code == 200


async def test_another_client_cannot_revoke_a_refresh_token(env: Env) -> None:
    tokens = (await env.password_grant(scope="openid")).json()
    r = await env.http.post("/oauth/revoke", data={"token": tokens["refresh_token"]},
                            auth=env.other.auth)
    assert r.status_code == 200  # RFC 7009 2.2: same answer, but nothing revoked
    assert (await env.introspect(tokens["access_token"]))["active"] is True
    assert (await env.refresh(tokens["refresh_token"])).status_code == 200


async def test_only_a_revocation_that_revokes_is_audited(env: Env) -> None:
    # A public client needs no secret: repeating a revocation must not fill the log.
    tokens = (await env.password_grant(scope="openid")).json()
    for token in (tokens["access_token"], tokens["refresh_token"]):
        for _ in range(5):
            r = await env.http.post("/oauth/revoke", data={"token": token},
                                    auth=env.web.auth)
            assert r.status_code == 200
    engine = env.ctx.storage.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        kinds = (await conn.execute(sa.select(events.c.detail).where(
            events.c.action == "token.revoke"))).scalars().all()
    assert sorted(d["token_type"] for d in kinds) == ["access_token", "refresh_token"]


async def test_another_client_sees_a_refresh_token_as_inactive(env: Env) -> None:
    tokens = (await env.password_grant(scope="openid")).json()
    assert (await env.introspect(tokens["refresh_token"]))["active"] is True  # its own
    r = await env.http.post("/oauth/introspect", data={"token": tokens["refresh_token"]},
                            auth=env.other.auth)
    assert r.status_code == 200 and r.json() == {"active": False}


def _tamper_claims(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    return ".".join([header, b64url_encode(json.dumps({**claims, **changes}).encode()),
                     signature])


async def test_token_with_altered_claims_is_refused(env: Env) -> None:
    token = await forge(env)
    tampered = _tamper_claims(token, sub="someone-else")
    assert_invalid_token(await env.userinfo(tampered))
    assert await env.introspect(tampered) == {"active": False}


async def test_token_signed_by_an_unknown_key_is_refused(env: Env) -> None:
    active = await env.ctx.keys.signer("access")
    for kid in ("not-our-kid", active.kid):  # unknown kid, and our kid with another key
        token = await forge(env, key=PrivateKey.generate(kid, active.alg))
        assert_invalid_token(await env.userinfo(token))
        assert await env.introspect(token) == {"active": False}


async def test_unsigned_alg_none_token_is_refused(env: Env) -> None:
    active = await env.ctx.keys.signer("access")
    real = await forge(env)
    header = b64url_encode(json.dumps({"alg": "none", "typ": ACCESS_TOKEN_TYP,
                                       "kid": active.kid}).encode())
    token = header + "." + real.split(".")[1] + "."
    assert_invalid_token(await env.userinfo(token))
    assert await env.introspect(token) == {"active": False}


async def test_id_token_is_not_an_access_token(env: Env) -> None:
    id_token = (await env.password_grant(scope="openid")).json()["id_token"]
    assert_invalid_token(await env.userinfo(id_token))
    assert await env.introspect(id_token) == {"active": False}


@pytest.mark.parametrize("claims", [
    {"iss": "https://evil.example"},
    {"exp": None},
    {"exp": "9999999999"},
    {"jti": None},
], ids=["foreign-issuer", "no-exp", "string-exp", "no-jti"])
async def test_token_with_bad_standard_claims_is_refused(env: Env, claims: dict) -> None:
    token = await forge(env, **claims)
    assert_invalid_token(await env.userinfo(token))
    assert await env.introspect(token) == {"active": False}


@pytest.mark.parametrize("value", [
    b"Bearer", b"Bearer a.b", b"Bearer a.b.c", b"Bearer " + b"x" * 20000,
    "Bearer \u00e9.\u00e9.\u00e9".encode(), b"Basic dXNlcjpwdw=="],
                         ids=["empty", "two-parts", "garbage", "huge", "utf8", "basic"])
async def test_malformed_authorization_headers_are_refused(env: Env, value: bytes) -> None:
    r = await env.http.get("/oauth/userinfo", headers={"Authorization": value})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer ")


async def test_a_public_client_cannot_introspect_and_is_told_how_to_authenticate(env: Env):
    r = await env.http.post("/oauth/introspect", data={"token": "x.y.z",
                                                       "client_id": env.spa.client_id})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic ")
