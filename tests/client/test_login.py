"""Login flows against the fake provider, each test run with Client and AsyncClient."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx2
import pytest
from sdk_fakes import CLIENT_ID, ISSUER, REDIRECT_URI, STATE_KEY, FakeProvider
from starlette.datastructures import URL

from bastion import (
    AccessDenied,
    ConfigurationError,
    EndpointNotAdvertised,
    Forbidden,
    InvalidGrant,
    InvalidStateError,
    InvalidToken,
    MemoryReplayStore,
    ProtocolError,
    RateLimited,
    TemporarilyUnavailable,
    TokenSet,
    User,
)
from bastion.client.state import AuthorizationState, derive_key, seal
from bastion.oauth import pkce
from bastion.oauth.jose import PrivateKey

LOGIN = {"redirect_uri": REDIRECT_URI, "state_key": STATE_KEY}


def params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def start(client: Any, provider: FakeProvider, scope: str = "openid profile") -> tuple[str, str]:
    """Start a login; the fake provider will answer with the nonce it was sent."""
    state, url = client.start_authorization(scope)
    provider.nonce = params(url).get("nonce")
    return state, url


def callback(state: str, **extra: str) -> str:
    return REDIRECT_URI + "?" + urlencode({"code": "c-1", "state": state, "iss": ISSUER, **extra})


def test_authorization_url_carries_pkce_and_a_sealed_state(make_client: Any, provider: Any):
    client = make_client(**LOGIN)
    state, url = start(client, provider)
    assert url.startswith(ISSUER + "/oauth/authorize?")
    sent = params(url)
    assert sent["response_type"] == "code" and sent["client_id"] == CLIENT_ID
    assert sent["redirect_uri"] == REDIRECT_URI and sent["state"] == state
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert sent["scope"] == "openid profile" and len(sent["nonce"]) >= 32
    # A caller's nonce is used as given; no openid, no nonce.
    assert params(client.start_authorization("openid", nonce="mine")[1])["nonce"] == "mine"
    assert "nonce" not in params(client.start_authorization("read")[1])
    extra = params(client.start_authorization(prompt="login", login_hint="ann")[1])
    assert extra["prompt"] == "login" and extra["login_hint"] == "ann"


def test_finish_sends_verifier_and_redirect_uri_and_checks_the_id_token(
    make_client: Any, provider: FakeProvider
):
    client = make_client(**LOGIN)
    state, url = start(client, provider)
    tokens = client.finish_authorization_response(callback(state), expected_state=state)
    token_request = next(
        provider.form(r) for r in provider.requests if r.url.path.endswith("/oauth/token")
    )
    assert token_request["grant_type"] == "authorization_code"
    assert token_request["redirect_uri"] == REDIRECT_URI
    assert pkce.challenge(token_request["code_verifier"]) == params(url)["code_challenge"]
    assert tokens.id_token_claims is not None and tokens.id_token_claims["sub"] == "user-1"
    assert tokens.client is not None


def test_the_callback_error_is_raised_only_for_a_good_state(make_client: Any, provider: Any):
    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    denied = REDIRECT_URI + "?" + urlencode(
        {"error": "access_denied", "error_description": "no", "state": state, "iss": ISSUER}
    )
    with pytest.raises(AccessDenied, match="no"):
        client.finish_authorization_response(denied, state)
    forged = denied.replace("state=v1.", "state=v1.AAAA")
    with pytest.raises(InvalidStateError):
        client.finish_authorization_response(forged)
    assert provider.calls["/tenant/oauth/token"] == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"iss": None}, "lacks the iss"),
    ],
)
def test_iss_in_the_response_is_checked(
    make_client: Any, provider: FakeProvider, changes: dict[str, Any], message: str
):
    provider.metadata["authorization_response_iss_parameter_supported"] = True
    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    query = {"code": "c-1", "state": state, "iss": ISSUER, **changes}
    url = REDIRECT_URI + "?" + urlencode({k: v for k, v in query.items() if v is not None})
    with pytest.raises(InvalidStateError, match=message):
        client.finish_authorization_response(url)
    assert provider.calls["/tenant/oauth/token"] == 0


def test_state_from_another_client_or_issuer_is_refused(make_client: Any, provider: Any):
    state, _ = start(make_client(**LOGIN), provider)
    with pytest.raises(InvalidStateError, match="another client"):
        make_client(**LOGIN, client_id="someone-else").finish_authorization("c", state)
    with pytest.raises(InvalidStateError):
        other_key = "another state key, just as long!!"
        make_client(redirect_uri=REDIRECT_URI, state_key=other_key).finish_authorization("c", state)
    with pytest.raises(InvalidStateError, match="does not match"):
        make_client(**LOGIN).finish_authorization("c", state, expected_state=state + "x")


def test_state_sealed_for_another_issuer_with_the_same_key_is_refused(
        make_client: Any, provider: FakeProvider) -> None:
    # Two connections sharing one state key: a state of the other provider opens, and
    # only its issuer tells it apart. Nothing is sent to the token endpoint.
    foreign = AuthorizationState.new(
        issuer="https://other-provider.example/tenant", client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI, code_verifier=pkce.new_verifier(), now=time.time(),
        expiration=600, nonce="n", openid=True)
    sealed = seal(foreign, derive_key(STATE_KEY))
    with pytest.raises(InvalidStateError, match="another provider"):
        make_client(**LOGIN).finish_authorization("c-1", sealed)
    assert provider.calls["/tenant/oauth/token"] == 0


def test_a_callback_repeating_a_parameter_is_refused(make_client: Any,
                                                     provider: FakeProvider) -> None:
    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    with pytest.raises(InvalidStateError, match="repeats"):  # RFC 6749 3.1
        client.finish_authorization_response(
            REDIRECT_URI + "?code=c-1&code=c-2&state=" + state)
    assert provider.calls["/tenant/oauth/token"] == 0


@pytest.mark.parametrize("given", [
    lambda s: {"code": "c-1", "state": s, "iss": ISSUER, "error": None},  # args.get("error")
    lambda s: f"code=c-1&state={s}&iss={ISSUER}",  # the query, its iss unencoded
    lambda s: "/callback?" + urlencode({"code": "c-1", "state": s, "iss": ISSUER}),
    lambda s: "/cb;jsessionid=A1?" + urlencode({"code": "c-1", "state": s, "iss": ISSUER}),
    lambda s: "app.example/cb?" + urlencode({"code": "c-1", "state": s, "iss": ISSUER}),
    lambda s: URL(callback(s)),  # Starlette's request.url: a URL object, str() its text
    lambda s: httpx2.URL(callback(s)),
])
def test_the_callback_may_be_given_as_its_parameters(make_client: Any, provider: FakeProvider,
                                                     given: Any) -> None:
    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    assert client.finish_authorization_response(given(state), state).access_token
    sent = [provider.form(r) for r in provider.requests if r.url.path.endswith("/oauth/token")]
    assert [form["code"] for form in sent] == ["c-1"]


@pytest.mark.parametrize("call", [
    lambda client: client.finish_authorization_response(None),
    lambda client: client.finish_authorization_response(b"/cb?code=c-1"),
    lambda client: client.start_authorization(scope=5),
    lambda client: client.start_authorization(scope=["openid", 5]),
    lambda client: client.client_credentials(scope=5),
    lambda client: client.logout_url(id_token_hint=5),
    lambda client: client.revoke(None),
    lambda client: client.edit_profile_url(5),
    lambda client: client.users.search("ann", limit="5"),
    lambda client: client.users.search("ann", offset=None),
    lambda client: client.users.search(5),
    lambda client: client.users.count(include_deleted=1),
    lambda client: client.events.list(limit=1.5),
    lambda client: client.request("GET", "/api/thing", auth=client.token_auth("at")),
])
def test_an_argument_of_a_wrong_type_is_a_configuration_error(
        make_client: Any, provider: FakeProvider, call: Any) -> None:
    """Not an AttributeError or TypeError from deep inside: only BastionError escapes."""
    client = make_client(**LOGIN)
    with pytest.raises(ConfigurationError, match=r", not (NoneType|bytes|int|float|str)$"):
        call(client)
    assert provider.calls["/tenant/oauth/token"] == 0


def test_a_code_of_none_is_no_code(make_client: Any, provider: FakeProvider) -> None:
    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    with pytest.raises(ProtocolError, match="neither a code nor an error"):
        client.finish_authorization_response({"code": None, "state": state, "iss": ISSUER})
    assert provider.calls["/tenant/oauth/token"] == 0


def test_an_expected_state_is_compared_whatever_its_text(make_client: Any,
                                                        provider: FakeProvider) -> None:
    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    lone = "\ud800"  # no UTF-8 for it: raised UnicodeEncodeError, the state in its text
    for callback_state, expected in ((state, lone), (lone, state), (state + lone, state)):
        with pytest.raises(InvalidStateError, match="does not match") as caught:
            client.finish_authorization("c-1", callback_state, expected_state=expected)
        assert state not in str(caught.value)
    assert provider.calls["/tenant/oauth/token"] == 0
    # a session store may give it back as bytes
    assert client.finish_authorization("c-1", state, expected_state=state.encode())


def test_the_algorithms_option_applies_to_id_tokens(make_client: Any,
                                                    provider: FakeProvider) -> None:
    client = make_client(**LOGIN, algorithms=["ES256"])  # the provider's ID key is RS256
    state, _ = start(client, provider)
    with pytest.raises(InvalidToken):
        client.finish_authorization_response(callback(state))


def test_replay_store_refuses_a_second_use(make_client: Any, provider: FakeProvider):
    client = make_client(**LOGIN)
    store = MemoryReplayStore()
    state, _ = start(client, provider)
    client.finish_authorization("c-1", state, replay_store=store)
    with pytest.raises(InvalidStateError, match="already used"):
        client.finish_authorization("c-1", state, replay_store=store)
    assert provider.calls["/tenant/oauth/token"] == 1


def test_a_replay_store_whose_claim_is_async_is_refused_not_trusted(
        make_client: Any, provider: FakeProvider):
    class AsyncStore:  # its coroutine is truthy: every replay would pass
        async def claim(self, state_id: str, expires_at: float) -> bool:
            return True

    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    with pytest.raises(ConfigurationError, match="returned an awaitable"):
        client.finish_authorization("c-1", state, replay_store=AsyncStore())
    assert provider.calls["/tenant/oauth/token"] == 0


def test_a_replay_stores_answer_is_taken_for_its_truth(make_client: Any, provider: Any):
    class RedisLike:  # SET NX: True the first time, None after
        def __init__(self) -> None:
            self.seen: set[str] = set()

        def claim(self, state_id: str, expires_at: float) -> bool | None:
            first = state_id not in self.seen
            self.seen.add(state_id)
            return True if first else None

    client, store = make_client(**LOGIN), RedisLike()
    state, _ = start(client, provider)
    assert client.finish_authorization("c-1", state, replay_store=store)
    with pytest.raises(InvalidStateError, match="already used"):
        client.finish_authorization("c-1", state, replay_store=store)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"nonce": "other"}, "nonce"),
        ({"aud": "other-client"}, "not meant for this client"),
        ({"aud": [CLIENT_ID, "x"], "azp": "x"}, "authorized party"),
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"exp": 1000}, "expired"),
        ({"iat": 4_000_000_000}, "future"),
        ({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}, "at_hash"),
        ({"sub": None}, "subject"),
        ({"_key": PrivateKey("id-1", "RS256", PrivateKey.generate("x", "RS256").key)}, "signat"),
    ],
)
def test_a_bad_id_token_is_refused(
    make_client: Any, provider: FakeProvider, claims: dict[str, Any], message: str
):
    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    provider.id_claims = claims
    with pytest.raises(InvalidToken, match=message):
        client.finish_authorization_response(callback(state))


def test_max_age_is_sent_kept_in_the_state_and_checked_against_auth_time(
    make_client: Any, provider: FakeProvider
):
    client = make_client(**LOGIN, leeway=30)
    state, url = client.start_authorization("openid", max_age=300)
    provider.nonce = params(url)["nonce"]
    assert params(url)["max_age"] == "300"
    provider.id_claims = {"auth_time": int(time.time()) - 320}  # within the leeway
    assert client.finish_authorization("c-1", state).id_token_claims is not None
    for claims, message in (
        ({"auth_time": int(time.time()) - 400}, "longer ago than the login's max_age"),
        ({"auth_time": None}, "no numeric auth_time"),
    ):
        state, url = client.start_authorization("openid", max_age=300)
        provider.nonce = params(url)["nonce"]
        provider.id_claims = claims
        with pytest.raises(InvalidToken, match=message):
            client.finish_authorization("c-1", state)
    # Without max_age an old sign-in is the provider's business.
    provider.id_claims = {"auth_time": 1000}
    state, _ = start(client, provider)
    assert client.finish_authorization("c-1", state).id_token_claims is not None
    assert params(client.start_authorization("openid", max_age=0)[1])["max_age"] == "0"


@pytest.mark.parametrize("max_age", [-1, True, "300", 1.5])
def test_max_age_must_be_whole_seconds(make_client: Any, provider: Any, max_age: Any):
    with pytest.raises(ConfigurationError, match="max_age must be"):
        make_client(**LOGIN).start_authorization(max_age=max_age)


def test_max_age_needs_the_openid_scope(make_client: Any, provider: Any):
    with pytest.raises(ConfigurationError, match="needs the openid scope"):
        make_client(**LOGIN).start_authorization("read", max_age=60)


def test_an_id_token_by_an_unknown_key_refetches_the_jwks_once(
    make_client: Any, provider: FakeProvider
):
    client = make_client(**LOGIN, jwks_refresh_interval=0)
    state, _ = start(client, provider)
    provider.id_claims = {"_key": PrivateKey.generate("id-unknown", "ES256")}
    with pytest.raises(InvalidToken, match="unknown key"):
        client.finish_authorization_response(callback(state))
    assert provider.calls["/tenant/jwks"] == 2


def test_missing_id_token_for_openid_is_a_protocol_error(make_client: Any, provider: Any):
    client = make_client(**LOGIN)
    state, _ = start(client, provider)
    provider.user_scope = "profile"  # the provider "forgets" the ID token
    with pytest.raises(ProtocolError, match="no ID token"):
        client.finish_authorization_response(callback(state))


def test_token_endpoint_errors_are_mapped(make_client: Any, provider: FakeProvider):
    client = make_client(**LOGIN, retries=0)
    provider.overrides["/tenant/oauth/token"] = [
        httpx2.Response(400, json={"error": "invalid_grant", "error_description": "used"}),
        httpx2.Response(429, json={"error": "slow_down"}, headers={"Retry-After": "7"}),
    ]
    state, _ = start(client, provider)
    with pytest.raises(InvalidGrant, match="used"):
        client.finish_authorization("c-1", state)
    with pytest.raises(RateLimited) as caught:
        client.login_password("ann", "pw")
    assert caught.value.retry_after == 7 and caught.value.error_code == "slow_down"


def test_missing_options_and_endpoints(make_client: Any, provider: FakeProvider):
    with pytest.raises(ConfigurationError, match="state_key"):
        make_client(redirect_uri=REDIRECT_URI).start_authorization()
    with pytest.raises(ConfigurationError, match="redirect_uri"):
        make_client(state_key=STATE_KEY).start_authorization()
    for expiration in (0, -1, float("nan"), float("inf"), float("-inf"), True, "600"):
        with pytest.raises(ConfigurationError, match="expiration"):
            make_client(**LOGIN).start_authorization(expiration=expiration)
    del provider.metadata["authorization_endpoint"]
    del provider.metadata["end_session_endpoint"]
    with pytest.raises(EndpointNotAdvertised, match="authorization_endpoint"):
        make_client(**LOGIN).start_authorization()
    with pytest.raises(EndpointNotAdvertised, match="end_session_endpoint"):
        make_client(**LOGIN).logout_url()


def test_password_grant_validates_the_id_token(make_client: Any, provider: FakeProvider):
    client = make_client()
    tokens = client.login_password("ann", "pw", scope=["openid"])
    assert provider.form(provider.requests[1]) == {
        "grant_type": "password",
        "username": "ann",
        "password": "pw",
        "scope": "openid",
    }
    assert tokens.id_token_claims and tokens.id_token_claims["sub"] == "user-1"
    provider.id_claims = {"aud": "another"}
    with pytest.raises(InvalidToken):
        client.login_password("ann", "pw", scope="openid")


def test_userinfo(make_client: Any, provider: FakeProvider):
    client = make_client()
    assert client.userinfo("at")["preferred_username"] == "ann"
    assert provider.requests[-1].headers["authorization"] == "Bearer at"
    provider.overrides["/tenant/oauth/userinfo"] = [
        httpx2.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}),
        httpx2.Response(200, json={"name": "no sub"}),
    ]
    with pytest.raises(InvalidToken):
        client.userinfo("at")
    with pytest.raises(ProtocolError, match="sub"):
        client.userinfo("at")
    with pytest.raises(ConfigurationError):
        client.userinfo("")


def test_userinfo_subject_must_match_the_id_token(make_client: Any, provider: FakeProvider):
    client = make_client()
    tokens = client.login_password("ann", "pw", scope="openid")
    provider.overrides["/tenant/oauth/userinfo"] = [httpx2.Response(200, json={"sub": "other"})]
    with pytest.raises(ProtocolError, match="differs"):
        client.userinfo(tokens)


def test_logout_url(make_client: Any, provider: FakeProvider):
    client = make_client()
    hint = provider.id_token("at")
    url = client.logout_url(hint, "https://app.example/bye", state="s")
    assert url.startswith(ISSUER + "/oauth/logout?")
    assert params(url) == {
        "id_token_hint": hint,
        "post_logout_redirect_uri": "https://app.example/bye",
        "state": "s",
        "client_id": CLIENT_ID,
    }


def test_an_access_token_is_no_logout_hint(make_client: Any, provider: FakeProvider):
    """It would travel in the URL (browser history, logs) to an endpoint that wants an
    ID token."""
    client = make_client()
    with pytest.raises(ConfigurationError, match="not an access token"):
        client.logout_url(provider.sign())


@pytest.mark.parametrize("hint", [
    "2YotnFZFEjr1zCsicMWpAA",  # an opaque access or refresh token
    "id.tok.en",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.AA",  # a JWT without aud
])
def test_only_an_id_token_is_a_logout_hint(make_client: Any, provider: FakeProvider,
                                           hint: str) -> None:
    with pytest.raises(ConfigurationError, match="must be an ID token"):
        make_client().logout_url(hint)


def test_revoke_all(make_client: Any, provider: FakeProvider):
    client = make_client()
    client.revoke_all("user-at")
    request = provider.requests[-1]
    assert (request.method, request.url.path) == ("DELETE", "/tenant/api/v1/users/me/sessions")
    assert request.headers["authorization"] == "Bearer user-at"
    client.revoke_all(user_id="u/1")
    token_request, delete = provider.requests[-2:]
    assert provider.form(token_request) == {"grant_type": "client_credentials",
                                            "scope": "bastion:admin"}
    assert delete.url.raw_path == b"/tenant/api/v1/users/u%2F1/sessions"
    assert delete.headers["authorization"].startswith("Bearer ey")
    forgotten: list[str] = []
    client._core.forget_user = forgotten.append
    client.revoke_all(user_id=User(identifier="u2"))  # a User will do, and is forgotten
    assert provider.requests[-1].url.raw_path == b"/tenant/api/v1/users/u2/sessions"
    assert forgotten == ["u2"]
    with pytest.raises(ConfigurationError):
        client.revoke_all()
    with pytest.raises(ConfigurationError):
        client.revoke_all("at", user_id="u")
    provider.overrides["/tenant/api/v1/users/me/sessions"] = [
        httpx2.Response(403, json={"title": "Forbidden", "status": 403})
    ]
    with pytest.raises(Forbidden):
        client.revoke_all("at")


@pytest.mark.parametrize(("lifetime", "done"), [(3600, True), (-10, False), (None, False)])
def test_a_revoke_all_resent_after_a_lost_answer_is_done_only_if_its_token_lived(
        make_client: Any, provider: FakeProvider, lifetime: int | None, done: bool):
    """The resend's 401 means the first attempt revoked the token, unless the token may
    have expired meanwhile; then nothing proves the sessions ended."""
    expires_at = None if lifetime is None else datetime.fromtimestamp(
        time.time() + lifetime, UTC)
    tokens = TokenSet(access_token="opaque-at", expires_at=expires_at)
    provider.overrides["/tenant/api/v1/users/me/sessions"] = [
        httpx2.ReadTimeout("the answer was lost"),
        httpx2.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})]
    client = make_client(retries=1)
    if done:
        client.revoke_all(tokens)
    else:
        with pytest.raises(InvalidToken, match="may not have ended"):
            client.revoke_all(tokens)
    assert provider.calls["/tenant/api/v1/users/me/sessions"] == 2


def test_revoking_a_token_set_revokes_refresh_then_access(make_client: Any, provider: Any):
    client = make_client()
    tokens = client.login_password("ann", "pw")
    client.revoke(tokens)
    forms = [provider.form(r) for r in provider.requests if r.url.path.endswith("/revoke")]
    assert forms == [
        {"token": tokens.refresh_token, "token_type_hint": "refresh_token"},
        {"token": tokens.access_token, "token_type_hint": "access_token"},
    ]


def test_a_refresh_token_is_sent_once_per_client(make_client: Any, provider: FakeProvider):
    client = make_client()
    first = client.refresh("r-1")
    assert client.refresh("r-1") == first  # answered from memory: no reuse at the provider
    assert provider.calls["/tenant/oauth/token"] == 1
    client.refresh("r-2")
    assert provider.calls["/tenant/oauth/token"] == 2


def test_validate_token_set_states(make_client: Any, provider: FakeProvider):
    client = make_client()
    access = provider.sign()
    # the app's own tokens are read as given (a stored refresh token with a newline)
    assert client.validate_token_set(access, "r-1\n").state == "valid"
    valid = client.validate_token_set(access, "r-1")
    assert valid.state == "valid" and valid.tokens and valid.tokens.refresh_token == "r-1"
    assert valid.claims and valid.claims["sub"] == "svc" and valid.is_valid
    expired = provider.sign(exp=1000, iat=900)
    refreshed = client.validate_token_set(expired, "r-1")
    assert refreshed.state == "refreshed" and refreshed.tokens
    assert refreshed.tokens.refresh_token == "rotated-refresh-1"
    assert client.validate_token_set(expired).state == "invalid"
    provider.overrides["/tenant/oauth/token"] = [
        httpx2.Response(400, json={"error": "invalid_grant"})
    ]
    invalid = client.validate_token_set(expired, "r-2")
    assert invalid.state == "invalid" and isinstance(invalid.error, InvalidGrant)
    assert not invalid.is_valid and invalid.tokens is None
    introspected = client.validate_token_set(access, "r-3", introspect=True)
    assert introspected.state == "valid"


def test_validate_token_set_raises_when_the_provider_is_down(make_client: Any, provider: Any):
    client = make_client(retries=0)
    provider.overrides["/tenant/oauth/token"] = [httpx2.Response(503)]
    with pytest.raises(TemporarilyUnavailable):
        client.validate_token_set(provider.sign(exp=1000, iat=900), "r-1")


def test_validate_token_set_with_an_absurd_exp(make_client: Any, provider: FakeProvider):
    client = make_client()
    check = client.validate_token_set(provider.sign(exp=1e300), "r-1")
    assert check.state == "valid" and check.tokens and check.tokens.expires_at is None
    provider.overrides["/tenant/oauth/introspect"] = [
        httpx2.Response(200, content=b'{"active": true, "exp": 1e400}'),
        httpx2.Response(200, content=b'{"active": true, "exp": NaN}'),
    ]
    for _ in range(2):
        check = client.validate_token_set("opaque", "r-1", introspect=True)
        assert check.state == "valid" and check.tokens and check.tokens.expires_at is None
