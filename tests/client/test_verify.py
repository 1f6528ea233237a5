"""verify_token: signature, header and claims checks, JWKS caching and rotation."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio
import httpx2
import pytest
from sdk_fakes import ISSUER, FakeProvider, Gate, run_in_thread, watch_followers

from bastion import (
    AsyncClient,
    Client,
    ConfigurationError,
    InsufficientScope,
    InvalidToken,
    TemporarilyUnavailable,
)
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


@pytest.mark.parametrize("scopes", [5, ["read", 5]])
def test_scopes_of_a_wrong_type_are_a_configuration_error(
        make_client: Any, provider: FakeProvider, scopes: Any):
    with pytest.raises(ConfigurationError, match="scope must be a string or a collection"):
        make_client().verify_token(provider.sign(), scopes=scopes)


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
        # a header of nested arrays: a RecursionError in the parser, within the size limit
        lambda p: base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".e30.AA",
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


def test_a_real_signature_of_another_algorithm_with_the_same_key_is_refused(
        make_client: Any, provider: FakeProvider) -> None:
    # The RSA key is published for RS256; a genuine PS256 signature by its private key
    # must not pass (the algorithm is the key's own, RFC 8725 3.1).
    rsa = PrivateKey.generate("rsa-1", "RS256")
    provider.jwks_keys.append(rsa)
    client = make_client()
    assert client.verify_token(provider.sign(key=rsa))
    with pytest.raises(InvalidToken):
        client.verify_token(provider.sign(key=PrivateKey("rsa-1", "PS256", rsa.key)))


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


# -- the keys' max age: a withdrawn key stops verifying -------------------------------


def age_keys(client: Any, seconds: float) -> None:
    """As if the JWKS had been fetched ``seconds`` earlier."""
    client._core.keys.fetched_at -= seconds
    client._core.keys.expires_at -= seconds
    client._core.keys.usable_until -= seconds


def jwks_response(provider: FakeProvider, cache_control: str) -> httpx2.Response:
    return httpx2.Response(200, json={"keys": [k.public_jwk() for k in provider.jwks_keys]},
                           headers={"Cache-Control": cache_control})


def test_a_key_the_provider_withdraws_stops_verifying_once_the_keys_are_old(
        make_client: Any, provider: FakeProvider):
    """After a leak the provider rotates and stops publishing the leaked key; a
    long-running app must not trust it for ever."""
    client = make_client(jwks_max_age=300)
    leaked = provider.sign()
    assert client.verify_token(leaked)
    provider.jwks_keys = [PrivateKey.generate("key-2", "ES256")]  # key-1 withdrawn
    assert client.verify_token(leaked)  # trusted while the keys are fresh
    age_keys(client, 301)
    with pytest.raises(InvalidToken, match="unknown key"):
        client.verify_token(leaked)
    assert provider.calls["/tenant/jwks"] == 2  # the refetch for the kid is rate-limited


def test_the_providers_max_age_shortens_the_trust_but_not_below_the_refresh_interval(
        make_client: Any, provider: FakeProvider):
    for header, trusted in (("public, max-age=120", 120), ("max-age=0", 60),
                            ("max-age=86400", 300), ("no-cache", 60), ("No-Store", 60),
                            ("public", 300)):
        provider.overrides["/tenant/jwks"] = [jwks_response(provider, header)]
        client = make_client(jwks_max_age=300, jwks_refresh_interval=60)
        client.verify_token(provider.sign())
        keys = client._core.keys
        assert keys.expires_at - keys.fetched_at == trusted, header


def test_a_failed_renewal_keeps_the_keys_at_hand_and_waits_the_interval(
        make_client: Any, provider: FakeProvider):
    client = make_client(retries=0)
    client.verify_token(provider.sign())
    age_keys(client, 301)
    provider.overrides["/tenant/jwks"] = [httpx2.Response(503)]
    assert client.verify_token(provider.sign())  # the provider is down: old keys serve
    assert client.verify_token(provider.sign())  # and no new try before the interval
    assert provider.calls["/tenant/jwks"] == 2
    age_keys(client, 61)
    assert client.verify_token(provider.sign())
    assert provider.calls["/tenant/jwks"] == 3
    assert not client._core.keys.stale(time.time())  # renewed


def renewal_failed(make_client: Any, provider: FakeProvider, retries: int) -> tuple[Any, str]:
    """A client whose keys (max age 300 s, 600 s more when stale) were loaded, then
    failed to be renewed; the provider answers the next two JWKS requests 503 too."""
    client = make_client(retries=retries, jwks_max_age=300, jwks_refresh_interval=60,
                         jwks_max_stale=600)
    token = provider.sign()
    client.verify_token(token)
    provider.overrides["/tenant/jwks"] = [httpx2.Response(503)] * 3
    age_keys(client, 301)
    assert client.verify_token(token)  # the renewal fails: the keys at hand serve
    return client, token


def test_keys_that_cannot_be_fetched_again_serve_only_until_max_stale(
        make_client: Any, provider: FakeProvider):
    """Whoever can keep the app from reaching the provider must not keep a withdrawn
    key trusted there for ever: past ``jwks_max_stale`` the keys are dropped, and
    verification fails (as at the start) until the keys can be fetched."""
    client, token = renewal_failed(make_client, provider, retries=0)
    age_keys(client, 600)  # 901 s since the fetch: past max_age + max_stale
    with pytest.raises(TemporarilyUnavailable):
        client.verify_token(token)
    assert not client._core.keys.keys  # dropped, not kept for the next call
    with pytest.raises(TemporarilyUnavailable):
        client.verify_token(token)  # still down: still refused
    assert client.verify_token(token)  # back: fetched as at the start
    assert provider.calls["/tenant/jwks"] == 5


def test_a_failed_renewal_never_stretches_the_keys_past_max_stale(
        make_client: Any, provider: FakeProvider):
    """A renewal failing shortly before the limit puts the next try off by the refresh
    interval, but the keys must not serve past the limit meanwhile."""
    client = make_client(retries=0, jwks_max_age=300, jwks_refresh_interval=60,
                         jwks_max_stale=600)
    token = provider.sign()
    client.verify_token(token)
    provider.overrides["/tenant/jwks"] = [httpx2.Response(503)] * 2
    age_keys(client, 870)  # 30 s before the keys' last usable moment
    assert client.verify_token(token)  # the renewal fails: the keys at hand serve
    age_keys(client, 31)  # past it, though within the interval of that failure
    with pytest.raises(TemporarilyUnavailable):
        client.verify_token(token)


def test_keys_serve_without_limit_when_max_stale_is_none(
        make_client: Any, provider: FakeProvider):
    client = make_client(retries=0, jwks_max_stale=None)
    token = provider.sign()
    client.verify_token(token)
    provider.overrides["/tenant/jwks"] = [httpx2.Response(503)]
    age_keys(client, 10 * 86400)
    assert client.verify_token(token)


def test_a_renewal_is_one_request_and_a_failure_is_not_retried_at_once(
        make_client: Any, provider: FakeProvider):
    client = make_client(retries=2)  # other requests would be tried three times
    client.verify_token(provider.sign())
    age_keys(client, 301)
    provider.overrides["/tenant/jwks"] = [httpx2.Response(503, headers={"Retry-After": "1"})]
    for _ in range(3):  # the fast path serves again after the failure
        assert client.verify_token(provider.sign())
    assert provider.calls["/tenant/jwks"] == 2


def test_a_renewal_under_way_is_not_waited_for(make_client: Any, provider: FakeProvider):
    """Only the caller that fetches waits for the provider; the others verify with the
    keys at hand meanwhile."""
    client = make_client()
    client.verify_token(provider.sign())
    age_keys(client, 301)
    flight, lead = client._core.flights.join("jwks")  # someone else's fetch, under way
    assert lead
    assert client.verify_token(provider.sign())
    assert provider.calls["/tenant/jwks"] == 1
    client._core.flights.land("jwks", flight, client._core.keys)


def test_fresh_keys_are_not_fetched_again(make_client: Any, provider: FakeProvider):
    client = make_client()
    client.verify_token(provider.sign())
    age_keys(client, 299)
    client.verify_token(provider.sign())
    assert provider.calls["/tenant/jwks"] == 1


# -- the refetch limit: one fetch for many callers, failures count ------------------


def test_a_failed_refetch_counts_and_gives_invalid_token(make_client: Any, provider: FakeProvider):
    client = make_client(retries=0)
    client.verify_token(provider.sign())
    client._core.keys.fetched_at -= 120  # a refetch is allowed again
    provider.overrides["/tenant/jwks"] = [httpx2.Response(503)]
    stranger = PrivateKey.generate("who", "ES256")
    with pytest.raises(InvalidToken, match="unknown key") as caught:
        client.verify_token(provider.sign(key=stranger))
    assert isinstance(caught.value.__cause__, TemporarilyUnavailable)
    for _ in range(3):  # the failed attempt counts: no JWKS request until the interval
        with pytest.raises(InvalidToken, match="unknown key"):
            client.verify_token(provider.sign(key=PrivateKey.generate("other", "ES256")))
    assert provider.calls["/tenant/jwks"] == 2
    assert client.verify_token(provider.sign())  # the keys at hand still work


def test_without_keys_an_unreachable_jwks_is_not_an_invalid_token(
    make_client: Any, provider: FakeProvider
):
    client = make_client(retries=0)
    provider.overrides["/tenant/jwks"] = [httpx2.Response(503)]
    with pytest.raises(TemporarilyUnavailable):
        client.verify_token(provider.sign())
    assert client.verify_token(provider.sign())  # the first load is not rate-limited


def test_without_keys_a_down_provider_costs_one_request_a_call_and_no_waiting(
    make_client: Any, provider: FakeProvider
):
    """The first load is retried; once it has failed, the next loads are one request
    each, so no verification waits for retries and their Retry-After meanwhile."""
    client = make_client(retries=2, timeout=30)
    provider.overrides["/tenant/jwks"] = [
        httpx2.Response(503, headers={"Retry-After": "10"}) for _ in range(5)]
    with pytest.raises(TemporarilyUnavailable):
        client.verify_token(provider.sign())
    assert provider.calls["/tenant/jwks"] == 3 and len(client.sleeps) == 2
    for calls in (4, 5):
        with pytest.raises(TemporarilyUnavailable):
            client.verify_token(provider.sign())
        assert provider.calls["/tenant/jwks"] == calls and len(client.sleeps) == 2
    assert client.verify_token(provider.sign())  # back: loaded at once
    assert not client._core.jwks_failed
    client._core.keys.drop_if_unusable(float("inf"))  # a later first load is retried again
    provider.overrides["/tenant/jwks"] = [httpx2.Response(503), httpx2.Response(503)]
    assert client.verify_token(provider.sign())
    assert provider.calls["/tenant/jwks"] == 9


def test_keys_dropped_after_failed_renewals_are_loaded_with_retries(
    make_client: Any, provider: FakeProvider
):
    """Only a failed load without keys makes the next loads single requests; failed
    renewals (one request each anyway) do not."""
    client, token = renewal_failed(make_client, provider, retries=2)
    assert provider.calls["/tenant/jwks"] == 2
    age_keys(client, 600)  # past max_age + max_stale: dropped
    assert client.verify_token(token)  # loaded as at the start: 503, 503, then the keys
    assert provider.calls["/tenant/jwks"] == 5 and len(client.sleeps) == 2


def test_concurrent_threads_share_one_refetch(provider: FakeProvider, monkeypatch: Any):
    """Keys rotated: the first token with the new kid refetches the JWKS, the
    others wait for that fetch and are verified with its keys."""
    gate = Gate(provider, "/tenant/jwks", followers=4, skip=1)
    watch_followers(monkeypatch, gate.follow)
    with Client(ISSUER, transport=httpx2.MockTransport(gate)) as client:
        client.verify_token(provider.sign())
        new_key = PrivateKey.generate("key-2", "ES256")
        provider.jwks_keys = [provider.key, new_key]
        client._core.keys.fetched_at -= 120
        threads = [run_in_thread(lambda: client.verify_token(provider.sign(key=new_key)))]
        assert gate.leader_in.wait(10)
        threads += [
            run_in_thread(lambda: client.verify_token(provider.sign(key=new_key)))
            for _ in range(4)
        ]
        for thread, _ in threads:
            thread.join()
    assert [out[0]["iss"] for _, out in threads] == [ISSUER] * 5
    assert provider.calls["/tenant/jwks"] == 2


async def test_fifty_concurrent_junk_tokens_cause_one_jwks_request(
    provider: FakeProvider, monkeypatch: Any
):
    """b_jwks_herd.py: unknown kids in a burst, after the interval has passed."""
    followed = anyio.Event()
    waiting = [0]

    def follow() -> None:
        waiting[0] += 1
        if waiting[0] == 49:
            followed.set()

    watch_followers(monkeypatch, follow)

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/tenant/jwks" and provider.calls["/tenant/jwks"]:
            with anyio.fail_after(10):
                await followed.wait()
        return provider(request)

    outcomes: list[str] = []
    async with AsyncClient(ISSUER, transport=httpx2.MockTransport(handler)) as client:
        await client.verify_token(provider.sign())
        client._core.keys.fetched_at -= 120

        async def junk(i: int) -> None:
            header = {"alg": "ES256", "kid": f"x{i}", "typ": "at+jwt"}
            try:
                await client.verify_token(_forge(header, {"iss": ISSUER}))
            except InvalidToken:
                outcomes.append("invalid")

        async with anyio.create_task_group() as group:
            for i in range(50):
                group.start_soon(junk, i)
    assert outcomes == ["invalid"] * 50
    assert provider.calls["/tenant/jwks"] == 2  # the warm-up, then one refetch


# -- a provider that leaves out kid (OIDC Core 10.1 allows it with one key) ---------


class KeyWithoutKid(PrivateKey):
    def _header(self, typ: str | None) -> bytes:
        header = {"alg": self.alg, **({"typ": typ} if typ else {})}
        return b64url_encode(json.dumps(header).encode()).encode("ascii")

    def public_jwk(self) -> dict[str, Any]:
        return {k: v for k, v in super().public_jwk().items() if k != "kid"}


def test_tokens_and_keys_without_kid_verify(make_client: Any, provider: FakeProvider):
    provider.key = KeyWithoutKid(provider.key.kid, "ES256", provider.key.key)
    provider.id_key = KeyWithoutKid("", "RS256", provider.id_key.key)
    provider.jwks_keys = [provider.key, provider.id_key]
    client = make_client()
    assert client.verify_token(provider.sign(), scopes="read")["sub"] == "svc"
    tokens = client.login_password("ann", "pw")  # its ID token has no kid either
    assert tokens.id_token_claims["sub"] == "user-1"
    assert provider.calls["/tenant/jwks"] == 1


def test_a_token_without_kid_needs_the_one_key_for_its_algorithm(
    make_client: Any, provider: FakeProvider
):
    second = KeyWithoutKid("", "ES256", PrivateKey.generate("x", "ES256").key)
    provider.key = KeyWithoutKid("", "ES256", provider.key.key)
    provider.jwks_keys = [provider.key, second, provider.id_key]
    with pytest.raises(InvalidToken, match="unknown key"):
        make_client().verify_token(provider.sign())
