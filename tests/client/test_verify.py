"""verify_token: signature, header and claims checks, JWKS caching and rotation."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx2
import pytest
from sdk_fakes import ISSUER, FakeProvider

from bastion import InsufficientScope, InvalidToken
from bastion.oauth.jose import PrivateKey, b64url_encode


def test_valid_token_gives_its_claims(make_client: Any, provider: FakeProvider):
    claims = make_client().verify_token(provider.sign(), scopes="read")
    assert claims["iss"] == ISSUER and claims["scope"] == "read write"


def test_keys_are_fetched_once(make_client: Any, provider: FakeProvider):
    client = make_client()
    for _ in range(3):
        client.verify_token(provider.sign())
    assert provider.calls["/tenant/jwks"] == 1
    assert provider.calls["/tenant/.well-known/openid-configuration"] == 1


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iss": "https://other.example"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"aud": ["a", "b"]}, "audience"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"exp": None}, "exp"),
        ({"exp": "soon"}, "exp"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"iat": int(time.time()) + 600}, "future"),
        ({"iat": None}, "iat"),
    ],
)
def test_bad_claims_are_invalid(
    make_client: Any, provider: FakeProvider, claims: dict[str, Any], message: str
):
    with pytest.raises(InvalidToken, match=message):
        make_client().verify_token(provider.sign(**claims))


def test_leeway_and_audience_options(make_client: Any, provider: FakeProvider):
    token = provider.sign(exp=int(time.time()) - 10, aud=["api", "other"])
    client = make_client()
    assert client.verify_token(token, audience="api")["aud"] == ["api", "other"]
    with pytest.raises(InvalidToken):
        client.verify_token(token, audience="api", leeway=0)
    assert make_client(audience="other").verify_token(token)


def test_missing_scope_is_insufficient_scope(make_client: Any, provider: FakeProvider):
    with pytest.raises(InsufficientScope, match="admin"):
        make_client().verify_token(provider.sign(), scopes=["read", "admin"])


def _forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    def part(value: dict[str, Any]) -> str:
        return b64url_encode(json.dumps(value).encode())

    return f"{part(header)}.{part(payload)}.{b64url_encode(signature)}"


@pytest.mark.parametrize(
    "make_token",
    [
        lambda p: p.sign(typ="JWT"),  # an ID token or other JWT is not an access token
        lambda p: p.sign(typ=None),
        lambda p: _forge({"alg": "none", "typ": "at+jwt", "kid": "key-1"}, {"iss": ISSUER}),
        lambda p: _forge({"alg": "HS256", "typ": "at+jwt", "kid": "key-1"}, {"iss": ISSUER}),
        lambda p: _forge({"alg": "ES256", "typ": "at+jwt", "kid": "key-1"}, {"iss": ISSUER}),
        lambda p: _forge({"alg": "ES256", "typ": "at+jwt"}, {"iss": ISSUER}),
        lambda p: p.sign()[:-6] + "AAAAAA",  # tampered signature
        lambda p: p.sign().replace(".", ".e30.", 1),  # four segments
        lambda p: "not-a-jwt",
        lambda p: "a.b.c",
        lambda p: "x" * 20_000,  # refused before parsing
        lambda p: p.sign(key=PrivateKey.generate("key-1", "ES256")),  # same kid, other key
    ],
)
def test_malformed_or_forged_tokens_are_invalid(
    make_client: Any, provider: FakeProvider, make_token: Any
):
    with pytest.raises(InvalidToken):
        make_client().verify_token(make_token(provider))


def test_rs256_key_cannot_verify_with_another_alg(make_client: Any, provider: FakeProvider):
    rsa = PrivateKey.generate("rsa-1", "RS256")
    provider.jwks_keys.append(rsa)
    client = make_client()
    assert client.verify_token(provider.sign(key=rsa))
    payload = base64.urlsafe_b64decode(provider.sign(key=rsa).split(".")[1] + "==")
    forged = _forge({"alg": "PS256", "typ": "at+jwt", "kid": "rsa-1"}, json.loads(payload))
    with pytest.raises(InvalidToken):
        client.verify_token(forged)


def test_algorithms_option_is_an_allow_list(make_client: Any, provider: FakeProvider):
    with pytest.raises(InvalidToken, match="algorithm"):
        make_client(algorithms=["RS256"]).verify_token(provider.sign())


def test_rotated_key_triggers_one_refetch(make_client: Any, provider: FakeProvider):
    client = make_client()
    client.verify_token(provider.sign())
    new_key = PrivateKey.generate("key-2", "ES256")
    provider.jwks_keys = [provider.key, new_key]
    # The last fetch is older than the interval: the unknown kid refetches the JWKS.
    client._core.keys.fetched_at -= 120
    assert client.verify_token(provider.sign(key=new_key))
    assert provider.calls["/tenant/jwks"] == 2


def test_unknown_kids_refetch_at_most_once_per_interval(make_client: Any, provider: FakeProvider):
    client = make_client(jwks_refresh_interval=300)
    client.verify_token(provider.sign())
    stranger = PrivateKey.generate("who", "ES256")
    for _ in range(5):
        with pytest.raises(InvalidToken, match="unknown key"):
            client.verify_token(provider.sign(key=stranger))
    assert provider.calls["/tenant/jwks"] == 1


def test_first_use_with_unknown_kid_fetches_once(make_client: Any, provider: FakeProvider):
    stranger = PrivateKey.generate("who", "ES256")
    with pytest.raises(InvalidToken, match="unknown key"):
        make_client().verify_token(provider.sign(key=stranger))
    assert provider.calls["/tenant/jwks"] == 1


def test_unusable_jwks_entries_are_skipped(make_client: Any, provider: FakeProvider):
    good = provider.key.public_jwk()
    provider.overrides["/tenant/jwks"] = [
        httpx2.Response(
            200,
            json={
                "keys": [
                    {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
                    {**good, "use": "enc"},
                    "junk",
                    good,
                ]
            },
        )
    ]
    assert make_client().verify_token(provider.sign())
