"""JWT attacks (RFC 8725, RFC 9068 section 4) against the server's own resources
(userinfo, introspection, the REST API) and against the SDK's ``verify_token``
running on the real in-process server's JWKS.

Already covered in ``test_access_token_validity.py`` (server side): ``alg=none``,
unknown kid and our kid with another key, expired, altered claims, foreign issuer,
missing/odd ``exp``, an ID token used as an access token, malformed headers.
SDK-side basics (typ, HS256 header, tampered signature, oversized, four segments)
are in ``tests/client/test_verify.py`` on a fake provider; here they run against the
real server's keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from security_helpers import Env
from test_access_token_validity import assert_invalid_token, forge

from bastion import AsyncClient, InvalidToken
from bastion.oauth.jose import PrivateKey, b64url_decode, b64url_encode
from bastion.server.services.tokens import ACCESS_TOKEN_TYP
from support import ISSUER


def _part(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value).encode())


def with_header(token: str, **changes: Any) -> str:
    """``token`` with header fields changed (``None`` removes one); signature kept."""
    header, payload, signature = token.split(".")
    fields = {**json.loads(b64url_decode(header)), **changes}
    return ".".join([_part({k: v for k, v in fields.items() if v is not None}), payload,
                     signature])


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = _part(header) + "." + _part(claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url_encode(mac)


def claims_of(token: str) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(".")[1])))


async def refused_everywhere(env: Env, token: str) -> None:
    """Userinfo 401 invalid_token, introspection inactive, REST API 401."""
    assert_invalid_token(await env.userinfo(token))
    assert await env.introspect(token) == {"active": False}
    api = await env.http.get("/api/v1/users/me", headers={"Authorization": "Bearer " + token})
    assert api.status_code == 401, api.text


async def test_control_hand_signed_token_works_on_the_rest_api_too(env: Env) -> None:
    token = await forge(env)
    r = await env.http.get("/api/v1/users/me", headers={"Authorization": "Bearer " + token})
    assert r.status_code == 200 and r.json()["id"] == env.user.id


# -- server: key confusion and key-injection headers -------------------------------------


@pytest.fixture
async def rsa_env(make_env: Any) -> Env:
    """A server whose access tokens are RS256: the classic target of HS256 confusion."""
    return await make_env(access_token_alg="RS256")


def public_key_secrets(signer: PrivateKey) -> dict[str, bytes]:
    public = signer.key.public_key()
    return {
        "pem": public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo),
        "pkcs1-pem": public.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.PKCS1),
        "der": public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk-json": json.dumps(signer.public_jwk()).encode(),
    }


@pytest.mark.parametrize("form", ["pem", "pkcs1-pem", "der", "jwk-json"])
async def test_hs256_signed_with_the_servers_public_key_is_refused(rsa_env: Env,
                                                                   form: str) -> None:
    signer = await rsa_env.ctx.keys.signer("access")
    assert signer.alg == "RS256"
    real = await forge(rsa_env)
    assert (await rsa_env.userinfo(real)).status_code == 200  # control
    header = {"alg": "HS256", "typ": ACCESS_TOKEN_TYP, "kid": signer.kid}
    token = hs256(header, claims_of(real), public_key_secrets(signer)[form])
    await refused_everywhere(rsa_env, token)


@pytest.mark.parametrize("alg", ["HS384", "HS512", "none", "None", "NONE", "nOnE", ""])
async def test_other_symmetric_or_unsigned_algorithms_are_refused(rsa_env: Env,
                                                                  alg: str) -> None:
    signer = await rsa_env.ctx.keys.signer("access")
    real = await forge(rsa_env)
    secret = public_key_secrets(signer)["pem"]
    token = with_header(real, alg=alg)
    if alg.startswith("HS"):
        digest = {"HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        signing_input = token.rsplit(".", 1)[0]
        token = signing_input + "." + b64url_encode(
            hmac.new(secret, signing_input.encode(), digest).digest())
    await refused_everywhere(rsa_env, token)


@pytest.mark.parametrize("kid", ["../../etc/passwd", "/dev/null", "..\\..\\keys", "%2e%2e%2f",
                                 "' OR '1'='1", "\u0000", "x" * 5000, 7, None, ["a"], {"a": 1}])
async def test_path_like_or_malformed_kid_is_refused(env: Env, kid: Any) -> None:
    token = with_header(await forge(env), kid=kid)
    await refused_everywhere(env, token)


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk", "x5c"])
async def test_token_signed_by_a_key_its_own_header_advertises_is_refused(env: Env,
                                                                          header: str) -> None:
    # The attacker signs with their key and points the header at it; the server must
    # use only its own key set.
    active = await env.ctx.keys.signer("access")
    attacker = PrivateKey.generate("attacker-key", active.alg)
    advertised = {
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "jwk": attacker.public_jwk(),
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    }[header]
    for kid in ("attacker-key", active.kid):  # its own kid, or ours
        body = claims_of(await forge(env))
        signing_input = _part({"alg": active.alg, "typ": ACCESS_TOKEN_TYP, "kid": kid,
                               header: advertised}) + "." + _part(body)
        token = signing_input + "." + attacker._signature(signing_input.encode()).decode()
        await refused_everywhere(env, token)


@pytest.mark.parametrize("crit", [["urn:example:must-understand"], ["exp"], []])
async def test_token_with_critical_header_parameters_is_refused(env: Env, sdk: AsyncClient,
                                                                crit: list[str]) -> None:
    # RFC 7515 section 4.1.11: extensions named in crit must be understood, and
    # neither the server nor the SDK understands any; signed with the server's own key.
    active = await env.ctx.keys.signer("access")
    signing_input = _part({"alg": active.alg, "typ": ACCESS_TOKEN_TYP, "kid": active.kid,
                           "crit": crit, "urn:example:must-understand": True}) + "." + \
        _part(claims_of(await forge(env)))
    token = signing_input + "." + active._signature(signing_input.encode()).decode()
    await refused_everywhere(env, token)
    await sdk_refuses(sdk, token)
    await sdk_refuses(sdk, with_header(token, crit=None))  # altered header: bad signature


# -- server: claims ------------------------------------------------------------------------


async def test_token_not_valid_yet_is_refused(env: Env) -> None:
    token = await forge(env, nbf=int(time.time()) + 3600)
    await refused_everywhere(env, token)


async def test_token_issued_in_the_future_is_refused(env: Env) -> None:
    now = int(time.time())
    token = await forge(env, iat=now + 3600, exp=now + 7200)
    await refused_everywhere(env, token)


@pytest.mark.parametrize("aud", ["https://other-api.example", ["https://other-api.example"]])
async def test_token_for_another_audience_is_refused(env: Env, aud: Any) -> None:
    await refused_everywhere(env, await forge(env, aud=aud))


@pytest.mark.parametrize("typ", ["JWT", "jwt", None, "at+jwt2", "application/jwt", 1])
async def test_token_with_a_wrong_typ_is_refused(env: Env, typ: Any) -> None:
    if isinstance(typ, str) and typ != "at+jwt2":
        token = await forge(env, typ=typ)  # genuinely signed with that typ
    else:
        token = with_header(await forge(env), typ=typ)
    await refused_everywhere(env, token)


@pytest.mark.parametrize("issuer", [ISSUER + "/", ISSUER.upper(), "http://id.example.test",
                                    ISSUER + ".evil.example"])
async def test_token_with_a_lookalike_issuer_is_refused(env: Env, issuer: str) -> None:
    await refused_everywhere(env, await forge(env, iss=issuer))




def altered(token: str, other: str, how: str) -> str:
    signing_input, signature = token.rsplit(".", 1)
    raw = bytearray(b64url_decode(signature))
    raw[len(raw) // 2] ^= 1
    return {
        "stripped": signing_input + ".",
        "stripped-no-dot": signing_input,
        "empty-segments": "..",
        "flipped-bit": signing_input + "." + b64url_encode(bytes(raw)),
        "truncated": signing_input + "." + signature[:-4],
        "other-tokens-signature": signing_input + "." + other.rsplit(".", 1)[1],
        "padded": signing_input + "." + signature + "==",
        "not-base64": signing_input + "." + signature[:10] + "!*!" + signature[10:],
    }[how]


ALTERATIONS = ["stripped", "stripped-no-dot", "empty-segments", "flipped-bit", "truncated",
               "other-tokens-signature", "padded",
               "not-base64"]


@pytest.mark.parametrize("how", ALTERATIONS)
async def test_stripped_or_altered_signature_is_refused(env: Env, how: str) -> None:
    token = altered(await forge(env), await forge(env), how)
    await refused_everywhere(env, token)


async def test_oversized_but_genuinely_signed_token_is_refused(env: Env) -> None:
    # Signed by the server's own key, so only the size check can refuse it.
    token = await forge(env, padding="x" * 20_000)
    assert len(token) > 16 * 1024
    await refused_everywhere(env, token)


async def test_a_large_token_within_the_limit_is_still_accepted(env: Env) -> None:
    token = await forge(env, padding="x" * 8_000)
    assert (await env.userinfo(token)).status_code == 200


async def test_forged_admin_claims_cannot_reach_the_admin_api(env: Env) -> None:
    # A user token is judged by the user's record, not by a scope it claims; and a
    # client token claiming bastion:admin must be signed by us.
    token = await forge(env, scope="openid bastion:admin")
    r = await env.http.get("/api/v1/users", headers={"Authorization": "Bearer " + token})
    assert r.status_code == 403, r.text
    attacker = PrivateKey.generate("attacker", "ES256")
    client_token = await forge(env, key=attacker, gid=None, sub=env.web.client_id,
                               scope="bastion:admin")
    r = await env.http.get("/api/v1/users", headers={"Authorization": "Bearer " + client_token})
    assert r.status_code == 401, r.text


# -- the SDK's verify_token against the real server's JWKS ---------------------------------


@pytest.fixture
async def sdk(env: Env) -> AsyncIterator[AsyncClient]:
    assert env.web.secret
    async with AsyncClient(ISSUER, client_id=env.web.client_id, client_secret=env.web.secret,
                           transport=httpx2.ASGITransport(app=env.asgi)) as client:
        yield client


async def sdk_refuses(sdk: AsyncClient, token: str) -> None:
    with pytest.raises(InvalidToken):
        await sdk.verify_token(token)


async def test_sdk_control_accepts_the_servers_real_token(env: Env, sdk: AsyncClient) -> None:
    token = (await env.password_grant(scope="openid")).json()["access_token"]
    assert (await sdk.verify_token(token))["sub"] == env.user.id


@pytest.mark.parametrize("form", ["pem", "der", "jwk-json"])
async def test_sdk_refuses_hs256_signed_with_the_servers_public_key(rsa_env: Env,
                                                                    form: str) -> None:
    assert rsa_env.web.secret
    signer = await rsa_env.ctx.keys.signer("access")
    real = await forge(rsa_env)
    async with AsyncClient(ISSUER, client_id=rsa_env.web.client_id,
                           client_secret=rsa_env.web.secret,
                           transport=httpx2.ASGITransport(app=rsa_env.asgi)) as client:
        assert await client.verify_token(real)  # control
        header = {"alg": "HS256", "typ": ACCESS_TOKEN_TYP, "kid": signer.kid}
        await sdk_refuses(client, hs256(header, claims_of(real), public_key_secrets(signer)[form]))


async def test_sdk_refuses_alg_none(env: Env, sdk: AsyncClient) -> None:
    token = with_header(await forge(env), alg="none").rsplit(".", 1)[0] + "."
    await sdk_refuses(sdk, token)


@pytest.mark.parametrize("kid", ["../../etc/passwd", "unknown-kid", "", "x" * 5000])
async def test_sdk_refuses_unknown_or_path_like_kid(env: Env, sdk: AsyncClient,
                                                    kid: str) -> None:
    await sdk_refuses(sdk, with_header(await forge(env), kid=kid))


@pytest.mark.parametrize("header", ["jku", "jwk"])
async def test_sdk_refuses_a_key_advertised_in_the_tokens_header(env: Env, sdk: AsyncClient,
                                                                 header: str) -> None:
    active = await env.ctx.keys.signer("access")
    attacker = PrivateKey.generate(active.kid, active.alg)  # even reusing our kid
    advertised = ("https://evil.example/jwks.json" if header == "jku"
                  else attacker.public_jwk())
    signing_input = _part({"alg": active.alg, "typ": ACCESS_TOKEN_TYP, "kid": active.kid,
                           header: advertised}) + "." + _part(claims_of(await forge(env)))
    await sdk_refuses(sdk, signing_input + "." +
                      attacker._signature(signing_input.encode()).decode())


@pytest.mark.parametrize("claims", [
    {"exp": int(time.time()) - 600, "iat": int(time.time()) - 900},
    {"nbf": int(time.time()) + 3600},
    {"iss": "https://evil.example"},
    {"aud": "https://other-api.example"},
], ids=["expired", "not-yet-valid", "wrong-iss", "wrong-aud"])
async def test_sdk_refuses_bad_claims_signed_by_the_server(env: Env, sdk: AsyncClient,
                                                           claims: dict[str, Any]) -> None:
    await sdk_refuses(sdk, await forge(env, **claims))


@pytest.mark.parametrize("typ", ["JWT", None])
async def test_sdk_refuses_a_wrong_typ(env: Env, sdk: AsyncClient, typ: str | None) -> None:
    await sdk_refuses(sdk, await forge(env, typ=typ))  # type: ignore[arg-type]


async def test_sdk_refuses_the_servers_id_token(env: Env, sdk: AsyncClient) -> None:
    id_token = (await env.password_grant(scope="openid")).json()["id_token"]
    await sdk_refuses(sdk, id_token)


@pytest.mark.parametrize("how", ALTERATIONS)
async def test_sdk_refuses_a_stripped_or_altered_signature(env: Env, sdk: AsyncClient,
                                                           how: str) -> None:
    await sdk_refuses(sdk, altered(await forge(env), await forge(env), how))


async def test_sdk_refuses_an_oversized_genuinely_signed_token(env: Env,
                                                               sdk: AsyncClient) -> None:
    await sdk_refuses(sdk, await forge(env, padding="x" * 20_000))
