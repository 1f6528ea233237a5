"""The SDK against the real ``bastion serve`` process (SQLite), sync and async.

Introspection and revocation are exercised whichever way the server stands:
advertised -> they must work; not advertised -> a clear ``EndpointNotAdvertised``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bastion import (
    AsyncClient,
    Client,
    ConfigurationError,
    EndpointNotAdvertised,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    InvalidToken,
    TokenSet,
    TransportError,
    UnauthorizedClient,
    UnsupportedGrantType,
    configure,
)
from support import ServerProcess, free_port


@pytest.fixture
def client(bastion_server: ServerProcess) -> Iterator[Client]:
    with Client(
        url=bastion_server.url,
        client_id=bastion_server.client_id,
        client_secret=bastion_server.client_secret,
    ) as c:
        yield c


def test_discovery(client: Client, bastion_server: ServerProcess) -> None:
    meta = client.discover()
    assert meta.issuer == bastion_server.url
    assert meta.token_endpoint and meta.jwks_uri


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_then_verify(bastion_server: ServerProcess, method: str) -> None:
    with Client(
        url=bastion_server.url,
        client_id=bastion_server.client_id,
        client_secret=bastion_server.client_secret,
        token_endpoint_auth_method=method,
    ) as client:
        tokens = client.client_credentials(scope="read")
        assert isinstance(tokens, TokenSet)
        assert tokens.token_type.lower() == "bearer" and tokens.expires_at is not None
        claims = client.verify_token(tokens.access_token, scopes=["read"])
    assert claims["iss"] == bastion_server.url
    assert claims["client_id"] == bastion_server.client_id
    assert "read" in claims["scope"].split()


def test_verify_refuses_wrong_audience_and_tampering(client: Client) -> None:
    token = client.client_credentials().access_token
    with pytest.raises(InvalidToken):
        client.verify_token(token, audience="https://someone-else.example")
    with pytest.raises(InvalidToken):
        client.verify_token(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))


def test_oauth_errors_come_back_as_classes(bastion_server: ServerProcess, client: Client) -> None:
    with pytest.raises(InvalidScope):
        client.client_credentials(scope="bastion:admin")
    with (
        Client(
            url=bastion_server.url, client_id=bastion_server.client_id, client_secret="wrong"
        ) as bad,
        pytest.raises(InvalidClient) as caught,
    ):
        bad.client_credentials()
    assert caught.value.status_code == 401
    assert "wrong" not in str(caught.value)
    with pytest.raises((InvalidGrant, UnsupportedGrantType, UnauthorizedClient)):
        client.refresh("not-a-refresh-token")


def test_introspect_and_revoke(client: Client) -> None:
    token = client.client_credentials().access_token
    meta = client.discover()
    if meta.introspection_endpoint is None:
        with pytest.raises(EndpointNotAdvertised, match="introspection_endpoint"):
            client.introspect(token)
    else:
        assert client.introspect(token)["active"] is True
    if meta.revocation_endpoint is None:
        with pytest.raises(EndpointNotAdvertised, match="revocation_endpoint"):
            client.revoke(token)
    else:
        client.revoke(token)
        if meta.introspection_endpoint is not None:
            assert client.introspect(token)["active"] is False


def test_authenticated_request_and_named_connection(bastion_server: ServerProcess) -> None:
    configure(
        default={
            "url": bastion_server.url,
            "client_id": bastion_server.client_id,
            "client_secret": bastion_server.client_secret,
        }
    )
    try:
        with Client() as client:
            response = client.request("GET", "/.well-known/openid-configuration")
            assert response.json()["issuer"] == bastion_server.url
    finally:
        configure()


def test_unreachable_server_is_a_transport_error() -> None:
    with Client(url=f"http://127.0.0.1:{free_port()}", retries=1) as client:
        client._sleep = lambda _: None  # type: ignore[method-assign]
        with pytest.raises(TransportError):
            client.discover()


def test_an_async_client_belongs_to_the_event_loop_that_first_used_it(
        bastion_server: ServerProcess) -> None:
    # Its pooled connections belong to that loop: another loop (a second asyncio.run,
    # a test's own loop) gets a clear error, not httpx2's bare RuntimeError by chance.
    client = AsyncClient(url=bastion_server.url, client_id=bastion_server.client_id,
                         client_secret=bastion_server.client_secret)
    with asyncio.Runner() as first:
        tokens = first.run(client.client_credentials(scope="read"))
        for _ in range(2):
            with pytest.raises(ConfigurationError, match="one AsyncClient in each loop"):
                asyncio.run(client.introspect(tokens.access_token))
        assert first.run(client.introspect(tokens.access_token))["active"] is True
        first.run(client.aclose())


async def test_async_client_end_to_end(bastion_server: ServerProcess) -> None:
    async with AsyncClient(
        url=bastion_server.url,
        client_id=bastion_server.client_id,
        client_secret=bastion_server.client_secret,
    ) as client:
        assert (await client.discover()).issuer == bastion_server.url
        tokens = await client.client_credentials(scope=["read", "write"])
        claims = await client.verify_token(tokens.access_token, scopes="read write")
        assert claims["sub"]
        with pytest.raises(InvalidScope):
            await client.client_credentials(scope="nope")
        with pytest.raises(InvalidToken):
            await client.verify_token(tokens.access_token, audience="other")
        with pytest.raises((InvalidGrant, UnsupportedGrantType, UnauthorizedClient)):
            await client.refresh("not-a-refresh-token")
        meta = await client.discover()
        if meta.introspection_endpoint is None:
            with pytest.raises(EndpointNotAdvertised):
                await client.introspect(tokens.access_token)
        else:
            assert (await client.introspect(tokens.access_token))["active"] is True
        if meta.revocation_endpoint is None:
            with pytest.raises(EndpointNotAdvertised):
                await client.revoke(tokens.access_token)
        else:
            await client.revoke(tokens.access_token)
        response = await client.request("GET", "/.well-known/openid-configuration")
        assert response.status_code == 200
