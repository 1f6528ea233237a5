"""TokenAuth (a user's refreshing bearer), bound TokenSet calls, and the User model."""

from __future__ import annotations

import contextlib
import pickle
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
from sdk_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, FakeProvider, SyncClient

from bastion import (
    AsyncClient,
    Client,
    ConfigurationError,
    TimeoutError,
    TokenSet,
    TransportError,
    Unauthorized,
    User,
    configure,
)
from bastion.client.models import shared_async_client, shared_client


def user_tokens(expires_in: float = 300, refresh: str | None = "r-0") -> TokenSet:
    return TokenSet.from_response(
        {"access_token": "at-0", "expires_in": expires_in, "refresh_token": refresh,
         "id_token": "id.to.ken"},
        time.time(),
    )


def test_token_auth_refreshes_before_expiry_and_reports(make_client: Any, provider: Any):
    client = make_client()
    seen: list[TokenSet] = []
    auth = client.token_auth(user_tokens(expires_in=10), on_refresh=seen.append)
    assert client.request("GET", "api/thing", auth=auth).status_code == 200
    assert provider.form(provider.requests[1]) == {"grant_type": "refresh_token",
                                                   "refresh_token": "r-0"}
    assert seen == [auth.tokens] and auth.tokens.refresh_token == "rotated-refresh-1"
    assert auth.tokens.id_token == "id.to.ken"  # kept when the refresh brings none
    client.request("GET", "api/thing", auth=auth)
    assert provider.calls["/tenant/oauth/token"] == 1  # the new token is fresh
    assert "at-0" not in repr(auth) and "r-0" not in repr(auth)


def test_token_auth_refreshes_once_on_401(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/api/thing"] = [httpx2.Response(401)]
    client = make_client()
    auth = client.token_auth(user_tokens())
    assert client.request("GET", "api/thing", auth=auth).status_code == 200
    assert provider.calls["/tenant/oauth/token"] == 1


def test_without_refresh_token_the_401_stands(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/api/thing"] = [httpx2.Response(401)]
    client = make_client()
    auth = client.token_auth(user_tokens(expires_in=0, refresh=None))
    with pytest.raises(Unauthorized):
        client.request("GET", "api/thing", auth=auth)
    assert provider.calls["/tenant/oauth/token"] == 0
    assert provider.calls["/tenant/api/thing"] == 1


def test_a_refresh_that_may_have_been_processed_is_not_sent_again(
    make_client: Any, provider: FakeProvider
):
    """The outer GET is idempotent, but the refresh POST inside its auth flow is not:
    resending a rotated refresh token would revoke the user's whole token family."""
    client = make_client(retries=3)
    provider.overrides["/tenant/oauth/token"] = [httpx2.ReadTimeout("lost")]
    auth = client.token_auth(user_tokens(expires_in=0))
    with pytest.raises(TimeoutError):
        client.request("GET", "api/thing", auth=auth)
    assert provider.calls["/tenant/oauth/token"] == 1
    assert provider.calls["/tenant/api/thing"] == 0
    assert auth.tokens.refresh_token == "r-0"


def test_a_refresh_that_never_left_is_retried(make_client: Any, provider: FakeProvider):
    client = make_client(retries=3)
    provider.overrides["/tenant/oauth/token"] = [httpx2.ConnectError("refused")]
    auth = client.token_auth(user_tokens(expires_in=0))
    assert client.request("GET", "api/thing", auth=auth).status_code == 200
    assert provider.calls["/tenant/oauth/token"] == 2
    assert auth.tokens.refresh_token == "rotated-refresh-1"


@pytest.mark.parametrize("failure", [httpx2.ConnectError("refused"), httpx2.ReadTimeout("x")])
def test_a_discovery_that_fails_inside_token_auth_is_no_lost_refresh(
    make_client: Any, provider: FakeProvider, failure: Exception
):
    client = make_client(retries=3)
    provider.overrides["/tenant/.well-known/openid-configuration"] = [failure]
    auth = client.token_auth(user_tokens(expires_in=0))
    with contextlib.suppress(TransportError):  # retried, or raised: either way
        client.request("GET", "api/thing", auth=auth)
    assert client.request("GET", "api/thing", auth=auth).status_code == 200
    assert provider.calls["/tenant/oauth/token"] == 1
    assert auth.tokens.refresh_token == "rotated-refresh-1"


async def test_concurrent_tasks_share_one_refresh(provider: FakeProvider):
    async def handler(request: httpx2.Request) -> httpx2.Response:
        for _ in range(5):  # let the other tasks race
            await anyio.lowlevel.checkpoint()
        return provider(request)

    async with AsyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           transport=httpx2.MockTransport(handler)) as client:
        auth = client.token_auth(user_tokens(expires_in=0))
        statuses: list[int] = []

        async def call() -> None:
            statuses.append((await client.request("GET", "api/thing", auth=auth)).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(call)
    assert statuses == [200] * 8
    assert provider.calls["/tenant/oauth/token"] == 1


def test_bound_token_set_refresh_and_revoke(provider: FakeProvider):
    with SyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                    transport=httpx2.MockTransport(provider)) as client:
        tokens = client.login_password("ann", "pw")
        assert tokens.client is client
        renewed = tokens.refresh()
        assert renewed.refresh_token != tokens.refresh_token and renewed.client is client
        renewed.revoke()
        assert provider.calls["/tenant/oauth/revoke"] == 2
        with pytest.raises(ConfigurationError, match=r"fetched with a Client: use refresh"):
            anyio.run(tokens.arefresh)
    # Unbound (unpickled, from_dict): the "default" connection, as the models.
    configure()
    with pytest.raises(ConfigurationError, match="no connection named 'default'"):
        TokenSet(access_token="a", refresh_token="r").refresh()
    with pytest.raises(ConfigurationError, match="no refresh_token"):
        TokenSet(access_token="a", client=client).refresh()


def test_a_bound_token_set_pickles_without_its_client(provider: FakeProvider):
    import pickle

    with SyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                    transport=httpx2.MockTransport(provider)) as client:
        tokens = client.login_password("ann", "pw")
        copy = pickle.loads(pickle.dumps(tokens))  # noqa: S301 - our own bytes
    assert copy == tokens and copy.client is None and copy.expires_at == tokens.expires_at


def test_an_unbound_token_set_runs_on_the_default_connection(
        provider: FakeProvider, monkeypatch: pytest.MonkeyPatch):
    """Tokens kept in a session (a pickled ``User``, or ``to_dict``) refresh and revoke
    on the "default" connection's shared client once restored, as the models do."""
    from bastion.client import _shared
    from bastion.client.connections import get_settings

    configure(default={"url": ISSUER, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    try:
        with SyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                        transport=httpx2.MockTransport(provider)) as shared:
            # The shared client of "default", on the fake provider.
            monkeypatch.setitem(_shared._sync_clients, "default", (get_settings(), shared))
            with SyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                            transport=httpx2.MockTransport(provider)) as client:
                user = User.from_claims({"sub": "user-1"}, client.login_password("ann", "pw"),
                                        client)
            restored = pickle.loads(pickle.dumps(user))  # noqa: S301 - our own bytes
            assert restored.token is not None and restored.token.client is None
            restored.token = restored.token.refresh()  # the docs' "keep the rotated tokens"
            assert restored.token.client is shared
            TokenSet.from_dict(restored.token.to_dict()).revoke()
        assert provider.calls["/tenant/oauth/token"] == 2  # the login, the refresh
        assert provider.calls["/tenant/oauth/revoke"] == 2
    finally:
        configure()


def test_a_copied_token_set_keeps_its_client_and_an_old_pickle_loads(provider: FakeProvider):
    import copy
    from dataclasses import fields

    with SyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                    transport=httpx2.MockTransport(provider)) as client:
        tokens = client.login_password("ann", "pw")
        for copied in (copy.copy(tokens), copy.deepcopy(tokens)):
            assert copied == tokens and copied.client is client
        assert copy.copy(tokens).refresh().access_token != tokens.access_token
    # The positional state earlier releases pickled (all of TokenSet's fields so far),
    # here as if from before its last two fields: a field added since takes its default
    # instead of failing the load.
    names = [f.name for f in fields(tokens)]
    assert names[-2:] == ["id_token_claims", "client"]
    old = TokenSet.__new__(TokenSet)
    old.__setstate__([getattr(tokens, name) for name in names[:-2]])
    assert old == tokens and (old.id_token_claims, old.client) == (None, None)


async def test_bound_token_set_async(provider: FakeProvider):
    async with AsyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           transport=httpx2.MockTransport(provider)) as client:
        tokens = await client.login_password("ann", "pw")
        renewed = await tokens.arefresh()
        await renewed.arevoke()
        assert provider.calls["/tenant/oauth/revoke"] == 2
        with pytest.raises(ConfigurationError, match="refresh"):
            tokens.refresh()


def test_user_from_claims_tolerates_missing_fields():
    user = User.from_claims({"sub": "u1"})
    assert (user.identifier, user.username, user.email) == ("u1", None, None)
    assert user.is_administrator is False and user.created_at is None
    assert not user.is_authenticated
    full = User.from_claims(
        {"id": "u2", "username": "ann", "email": "a@x", "is_administrator": True,
         "created_at": "2026-01-02T03:04:05Z", "deleted_at": 1_800_000_000},
        TokenSet(access_token="secret-at"),
    )
    assert full.is_administrator and full.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert full.deleted_at is not None and full.is_authenticated
    assert "secret-at" not in repr(full)
    full.logout()
    assert full.token is None


@pytest.mark.parametrize("when", [1e20, float("nan"), float("inf"), -1e20])
def test_an_absurd_timestamp_is_no_datetime(when: float):
    user = User.from_claims({"sub": "u1", "created_at": when, "deleted_at": when})
    assert user.created_at is None and user.deleted_at is None


def test_models_share_one_client_per_connection():
    configure(default={"url": ISSUER}, other={"url": ISSUER + "/other"})
    try:
        first = shared_client()
        assert shared_client() is first and shared_client("default") is first
        assert isinstance(first, Client) and shared_client("other") is not first
        configure(default={"url": ISSUER})  # new settings: a new client
        assert shared_client() is not first

        async def main() -> None:
            client = shared_async_client()
            assert shared_async_client() is client
            await client.aclose()

        anyio.run(main)
    finally:
        configure()
