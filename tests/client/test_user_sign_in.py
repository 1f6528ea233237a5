"""``User.from_authorization_code`` when userinfo fails after the code was traded.

The code is spent: the sign-in stands on the validated ID token whenever userinfo
fails without saying anything against the tokens; when it refuses them or answers
about another user, or when there is no ID token, the tokens are revoked (one try
each) before the error is raised, so no live refresh token is left that nobody
holds. Each test runs with both shells.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
import pytest
from sdk_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, REDIRECT_URI, STATE_KEY, FakeProvider

from bastion import (
    AsyncClient,
    BastionError,
    Client,
    InsufficientScope,
    InvalidToken,
    NotFound,
    ProtocolError,
    TemporarilyUnavailable,
    TimeoutError,
    User,
)
from bastion.client import models

OPTIONS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT_URI,
           "state_key": STATE_KEY, "retries": 0}
USERINFO = "/tenant/oauth/userinfo"


@pytest.fixture(params=["sync", "async"])
def sign_in(
    request: pytest.FixtureRequest, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """``sign_in(scope, **options)`` -> the ``User`` of a login, through the shell of
    the param; ``options`` override the client's (``OPTIONS``)."""
    def nonce_of(url: str) -> None:
        provider.nonce = dict(parse_qsl(urlsplit(url).query)).get("nonce")

    def sync(scope: str, **options: Any) -> User:
        with Client(ISSUER, transport=httpx2.MockTransport(provider),
                    **{**OPTIONS, **options}) as client:
            monkeypatch.setattr(models, "shared_client", lambda using=None: client)
            state, url = User.start_authorization(scope=scope)
            nonce_of(url)
            return User.from_authorization_code("c-1", state, state)

    async def main(scope: str, options: dict[str, Any]) -> User:
        transport = httpx2.MockTransport(provider)
        async with AsyncClient(ISSUER, transport=transport, **{**OPTIONS, **options}) as client:
            monkeypatch.setattr(models, "shared_async_client", lambda using=None: client)
            state, url = await User.astart_authorization(scope=scope)
            nonce_of(url)
            return await User.afrom_authorization_code("c-1", state, state)

    if request.param == "sync":
        return sync
    return lambda scope, **options: anyio.run(main, scope, options)


def revoked(provider: FakeProvider) -> list[dict[str, str]]:
    return [provider.form(r) for r in provider.requests if r.url.path == "/tenant/oauth/revoke"]


# Factories: a response is read once, and each test runs twice.
@pytest.mark.parametrize(
    "userinfo",
    [
        lambda: httpx2.Response(503, headers={"Retry-After": "30"}),
        lambda: httpx2.Response(502, text="<html>Bad gateway</html>"),
        lambda: httpx2.Response(429, headers={"Retry-After": "30"}),
        lambda: httpx2.ConnectError("refused"),
        lambda: httpx2.Response(
            403, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'}),
        lambda: httpx2.Response(200, text="<html>Please sign in to the proxy</html>"),
        lambda: httpx2.Response(200, text="eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
                                headers={"Content-Type": "application/jwt"}),
        lambda: httpx2.Response(404, json={"title": "Not Found", "status": 404}),
        lambda: httpx2.Response(404, json={"error": "invalid_request"}),
        lambda: httpx2.Response(405),
    ],
    ids=["503", "502", "429", "unreachable", "insufficient_scope", "proxy page",
         "signed userinfo", "404", "404 invalid_request", "405"],
)
def test_an_unavailable_userinfo_leaves_the_id_token(
    sign_in: Any, provider: FakeProvider, userinfo: Any
):
    provider.id_claims = {"preferred_username": "ann", "email": "ann@example.com",
                          "email_verified": True}
    provider.overrides[USERINFO] = [userinfo()]
    user = sign_in("openid profile email")
    assert (user.identifier, user.username, user.email, user.email_verified) == (
        "user-1", "ann", "ann@example.com", True)
    assert user.token is not None and user.token.refresh_token == "refresh-1"
    assert provider.calls[USERINFO] == 1 and revoked(provider) == []


def test_userinfo_not_advertised_leaves_the_id_token(sign_in: Any, provider: FakeProvider):
    del provider.metadata["userinfo_endpoint"]
    user = sign_in("openid")
    assert (user.identifier, user.username, user.email) == ("user-1", None, None)
    assert user.token is not None and revoked(provider) == []


def test_fields_the_id_token_lacks_stay_unknown(sign_in: Any, provider: FakeProvider):
    provider.overrides[USERINFO] = [httpx2.Response(503)]
    user = sign_in("openid profile")
    assert user.identifier == "user-1" and user.username is None and user.email is None


@pytest.mark.parametrize(
    ("userinfo", "raised"),
    [
        (lambda: httpx2.Response(
            403, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'}),
         InsufficientScope),
        (lambda: httpx2.Response(200, text="<html>Please sign in to the proxy</html>"),
         ProtocolError),
        (lambda: httpx2.Response(404), NotFound),
    ],
    ids=["insufficient_scope", "proxy page", "404"],
)
def test_without_an_id_token_the_tokens_are_revoked(
    sign_in: Any, provider: FakeProvider, userinfo: Any, raised: type[Exception]
):
    provider.overrides[USERINFO] = [userinfo()]
    provider.user_scope = "profile"  # no openid: no ID token
    with pytest.raises(raised):
        sign_in("profile")
    sent = revoked(provider)
    assert [(f["token"], f["token_type_hint"]) for f in sent] == [
        ("refresh-1", "refresh_token"), (sent[1]["token"], "access_token")]


@pytest.mark.parametrize(
    ("userinfo", "raised"),
    [
        (lambda: httpx2.Response(
            401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}), InvalidToken),
        (lambda: httpx2.Response(401, text="<html>Unauthorized</html>"), BastionError),
        (lambda: httpx2.Response(200, json={"sub": "someone-else"}), ProtocolError),
    ],
    ids=["token refused", "bare 401", "another user"],
)
def test_a_refusing_userinfo_revokes_the_tokens(
    sign_in: Any, provider: FakeProvider, userinfo: Any, raised: type[Exception]
):
    """Userinfo says something against the token: no sign-in on the ID token."""
    provider.overrides[USERINFO] = [userinfo()]
    with pytest.raises(raised):
        sign_in("openid profile")
    assert [f["token_type_hint"] for f in revoked(provider)] == ["refresh_token", "access_token"]


def test_userinfo_about_another_user_is_a_protocol_error(sign_in: Any, provider: FakeProvider):
    provider.overrides[USERINFO] = [httpx2.Response(200, json={"sub": "someone-else"})]
    with pytest.raises(ProtocolError, match="differs from the ID token's") as caught:
        sign_in("openid profile")
    assert isinstance(caught.value, BastionError) and caught.value.status_code is None


def test_the_userinfo_error_is_raised_even_if_revoking_fails(
    sign_in: Any, provider: FakeProvider
):
    provider.overrides[USERINFO] = [httpx2.Response(503)]
    provider.overrides["/tenant/oauth/revoke"] = [httpx2.Response(503)]
    provider.user_scope = "profile"
    with pytest.raises(TemporarilyUnavailable) as caught:
        sign_in("profile")
    assert caught.value.status_code == 503 and len(revoked(provider)) == 1


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between retries, recorded instead of slept (both shells)."""
    slept: list[float] = []

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(Client, "_sleep", staticmethod(slept.append))
    monkeypatch.setattr(AsyncClient, "_sleep", staticmethod(asleep))
    return slept


@pytest.mark.parametrize(
    "revocation",
    [lambda: httpx2.ReadTimeout("timed out"), lambda: httpx2.ConnectError("refused"),
     lambda: httpx2.Response(503)],
    ids=["timeout", "unreachable", "503"],
)
def test_the_revoke_after_a_failed_userinfo_is_a_single_try(
    sign_in: Any, provider: FakeProvider, sleeps: list[float], revocation: Any
):
    """With retries on, userinfo gets its retries, but the best-effort revoke does not:
    a provider that cannot be reached would hold the browser's callback twice as long."""
    provider.overrides[USERINFO] = [httpx2.ReadTimeout("timed out") for _ in range(3)]
    provider.overrides["/tenant/oauth/revoke"] = [revocation() for _ in range(3)]
    provider.user_scope = "profile"  # no ID token: the tokens are revoked
    with pytest.raises(TimeoutError):
        sign_in("profile", retries=2)
    assert provider.calls[USERINFO] == 3 and len(sleeps) == 2  # userinfo's retries only
    assert provider.calls["/tenant/oauth/revoke"] == 1  # the refresh token's, failed


def test_a_revoke_after_a_refused_token_is_a_single_try_per_token(
    sign_in: Any, provider: FakeProvider, sleeps: list[float]
):
    provider.overrides[USERINFO] = [
        httpx2.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})]
    provider.overrides["/tenant/oauth/revoke"] = [httpx2.Response(200),
                                                  httpx2.ReadTimeout("timed out")]
    with pytest.raises(InvalidToken):
        sign_in("openid profile", retries=2)
    assert [f["token_type_hint"] for f in revoked(provider)] == ["refresh_token", "access_token"]
    assert sleeps == []
