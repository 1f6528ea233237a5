"""``User.from_authorization_code`` when userinfo fails after the code was traded.

The code is spent: the sign-in stands on the validated ID token when userinfo is
unavailable, and otherwise its tokens are revoked before the error is raised, so no
live refresh token is left that nobody holds. Each test runs with both shells.
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
    Client,
    InsufficientScope,
    InvalidToken,
    ProtocolError,
    TemporarilyUnavailable,
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
    """``sign_in(scope)`` -> the ``User`` of a login, through the shell of the param."""
    def nonce_of(url: str) -> None:
        provider.nonce = dict(parse_qsl(urlsplit(url).query)).get("nonce")

    def sync(scope: str) -> User:
        with Client(ISSUER, transport=httpx2.MockTransport(provider), **OPTIONS) as client:
            monkeypatch.setattr(models, "shared_client", lambda using=None: client)
            state, url = User.start_authorization(scope=scope)
            nonce_of(url)
            return User.from_authorization_code("c-1", state, state)

    async def main(scope: str) -> User:
        transport = httpx2.MockTransport(provider)
        async with AsyncClient(ISSUER, transport=transport, **OPTIONS) as client:
            monkeypatch.setattr(models, "shared_async_client", lambda using=None: client)
            state, url = await User.astart_authorization(scope=scope)
            nonce_of(url)
            return await User.afrom_authorization_code("c-1", state, state)

    return sync if request.param == "sync" else lambda scope: anyio.run(main, scope)


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
    ],
    ids=["503", "502", "429", "unreachable", "insufficient_scope"],
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


def test_without_an_id_token_the_tokens_are_revoked(sign_in: Any, provider: FakeProvider):
    provider.overrides[USERINFO] = [
        httpx2.Response(403, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
    ]
    provider.user_scope = "profile"  # no openid: no ID token
    with pytest.raises(InsufficientScope):
        sign_in("profile")
    sent = revoked(provider)
    assert [(f["token"], f["token_type_hint"]) for f in sent] == [
        ("refresh-1", "refresh_token"), (sent[1]["token"], "access_token")]


@pytest.mark.parametrize(
    ("userinfo", "raised"),
    [
        (lambda: httpx2.Response(
            401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}), InvalidToken),
        (lambda: httpx2.Response(200, json={"sub": "someone-else"}), ProtocolError),
    ],
    ids=["token refused", "another user"],
)
def test_a_refusing_userinfo_revokes_the_tokens(
    sign_in: Any, provider: FakeProvider, userinfo: Any, raised: type[Exception]
):
    """Userinfo says something against the token: no sign-in on the ID token."""
    provider.overrides[USERINFO] = [userinfo()]
    with pytest.raises(raised):
        sign_in("openid profile")
    assert [f["token_type_hint"] for f in revoked(provider)] == ["refresh_token", "access_token"]


def test_the_userinfo_error_is_raised_even_if_revoking_fails(
    sign_in: Any, provider: FakeProvider
):
    provider.overrides[USERINFO] = [httpx2.Response(503)]
    provider.overrides["/tenant/oauth/revoke"] = [httpx2.Response(503)]
    provider.user_scope = "profile"
    with pytest.raises(TemporarilyUnavailable) as caught:
        sign_in("profile")
    assert caught.value.status_code == 503 and len(revoked(provider)) == 1
