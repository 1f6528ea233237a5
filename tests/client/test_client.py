"""Client and AsyncClient against a fake provider (MockTransport), every branch twice."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import httpx2
import pytest
from sdk_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, FakeProvider

from bastion import (
    AsyncClient,
    BastionError,
    Client,
    ConfigurationError,
    EndpointNotAdvertised,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    NotFound,
    ProtocolError,
    RateLimited,
    ServerError,
    TemporarilyUnavailable,
    TimeoutError,
    TokenSet,
    TransportError,
    Unauthorized,
)


def error(status: int, body: dict[str, Any], **headers: str) -> httpx2.Response:
    return httpx2.Response(status, json=body, headers=headers)


def test_client_credentials_uses_basic_auth_form_encoded(make_client: Any, provider: FakeProvider):
    tokens = make_client().client_credentials(scope=["read"])
    assert isinstance(tokens, TokenSet)
    assert tokens.scope == "read"
    assert tokens.expires_at is not None
    token_request = provider.requests[-1]
    # RFC 6749 2.3.1: form-encode id and secret, then base64.
    assert provider.basic(token_request) == ("svc+client", "s3cr%3At%2F%2B%25")
    assert provider.form(token_request) == {"grant_type": "client_credentials", "scope": "read"}


def test_discovery_is_cached_and_falls_back_to_rfc8414(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/.well-known/openid-configuration"] = [httpx2.Response(404)]
    provider.overrides["/.well-known/oauth-authorization-server/tenant"] = [
        httpx2.Response(200, json=provider.metadata)
    ]
    client = make_client()
    client.client_credentials()
    client.client_credentials()
    assert provider.calls["/tenant/.well-known/openid-configuration"] == 1
    assert provider.calls["/.well-known/oauth-authorization-server/tenant"] == 1
    assert provider.calls["/tenant/oauth/token"] == 2
    assert client.discover().issuer == ISSUER


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410])
def test_a_refused_discovery_falls_back_to_rfc8414(
    make_client: Any, provider: FakeProvider, status: int
):
    """Any 4xx but 429 at the OpenID document: not an OpenID provider (or not there)."""
    provider.overrides["/tenant/.well-known/openid-configuration"] = [
        error(status, {"title": "Refused", "detail": "Not here."})]
    provider.overrides["/.well-known/oauth-authorization-server/tenant"] = [
        httpx2.Response(200, json=provider.metadata)
    ]
    assert make_client().discover().issuer == ISSUER
    assert provider.calls["/.well-known/oauth-authorization-server/tenant"] == 1


def test_when_rfc8414_refuses_too_its_answer_is_raised(make_client: Any, provider: FakeProvider):
    refused = error(401, {"title": "Unauthorized", "detail": "Sign in first."})
    provider.overrides["/tenant/.well-known/openid-configuration"] = [refused]
    with pytest.raises(NotFound):  # the fake provider has no RFC 8414 document
        make_client().discover()
    assert provider.calls["/.well-known/oauth-authorization-server/tenant"] == 1


def test_a_rate_limited_discovery_says_so(make_client: Any, provider: FakeProvider):
    """Not RFC 8414's 404 as NotFound: the 429 and how long to wait."""
    limited = error(429, {"detail": "Slow down."}, **{"Retry-After": "120"})
    provider.overrides["/tenant/.well-known/openid-configuration"] = [limited]
    with pytest.raises(RateLimited) as caught:
        make_client().discover()
    assert caught.value.retry_after == 120
    assert provider.calls["/.well-known/oauth-authorization-server/tenant"] == 0


@pytest.mark.parametrize(("status", "raised"), [(500, ServerError),
                                                (503, TemporarilyUnavailable)])
def test_a_failing_provider_is_not_tried_elsewhere(
    make_client: Any, provider: FakeProvider, status: int, raised: type[Exception]
):
    failing = error(status, {}, **{"Retry-After": "120"})
    provider.overrides["/tenant/.well-known/openid-configuration"] = [failing]
    with pytest.raises(raised):
        make_client().discover()
    assert provider.calls["/.well-known/oauth-authorization-server/tenant"] == 0


def test_closing_the_client_during_a_retry_wait(
    make_client: Any, provider: FakeProvider, mode: str
):
    """The retry after the wait raises ConfigurationError, not httpx2's RuntimeError."""
    busy = [error(503, {}, **{"Retry-After": "1"}) for _ in range(3)]
    provider.overrides["/tenant/.well-known/openid-configuration"] = busy
    client = make_client()
    if mode == "sync":
        client._sleep = lambda seconds: client.close()
    else:
        async def close_instead(seconds: float) -> None:
            await client._client.aclose()

        client._client._sleep = close_instead
    with pytest.raises(ConfigurationError, match="closed"):
        client.discover()
    assert provider.calls["/tenant/.well-known/openid-configuration"] == 1


def test_client_secret_post_when_forced_or_only_one_supported(
    make_client: Any, provider: FakeProvider
):
    provider.metadata["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
    make_client().client_credentials()
    request = provider.requests[-1]
    assert "authorization" not in request.headers
    assert provider.form(request)["client_secret"] == CLIENT_SECRET


def test_public_client_sends_only_its_id(make_client: Any, provider: FakeProvider):
    make_client(client_secret=None).refresh("old-refresh")
    request = provider.requests[-1]
    assert "authorization" not in request.headers
    assert provider.form(request) == {
        "grant_type": "refresh_token",
        "refresh_token": "old-refresh",
        "client_id": CLIENT_ID,
    }


def test_refresh_returns_the_rotated_refresh_token(make_client: Any):
    tokens = make_client().refresh("old-refresh", scope="read")
    assert tokens.refresh_token == "rotated-refresh-1"
    assert "rotated-refresh" not in repr(tokens)


def test_introspect_and_revoke(make_client: Any, provider: FakeProvider):
    client = make_client()
    assert client.introspect("tok", token_type_hint="access_token")["active"] is True
    assert provider.form(provider.requests[-1]) == {
        "token": "tok",
        "token_type_hint": "access_token",
    }
    assert client.revoke("tok") is None
    assert provider.calls["/tenant/oauth/revoke"] == 1


def test_introspection_answer_without_active_is_a_protocol_error(
    make_client: Any, provider: FakeProvider
):
    provider.overrides["/tenant/oauth/introspect"] = [httpx2.Response(200, json={})]
    with pytest.raises(ProtocolError):
        make_client().introspect("tok")


@pytest.mark.parametrize("field", ["revocation_endpoint", "introspection_endpoint"])
def test_missing_endpoint_is_a_clear_error(make_client: Any, provider: FakeProvider, field: str):
    del provider.metadata[field]
    client = make_client()
    call = client.revoke if field == "revocation_endpoint" else client.introspect
    with pytest.raises(EndpointNotAdvertised, match=field):
        call("tok")
    assert isinstance(EndpointNotAdvertised(""), ConfigurationError)


def test_missing_client_id_names_the_option(make_client: Any):
    with pytest.raises(ConfigurationError, match="client_id"):
        make_client(client_id=None).client_credentials()


@pytest.mark.parametrize(
    ("make_response", "cls", "code"),
    [
        (lambda: error(401, {"error": "invalid_client"}), InvalidClient, "invalid_client"),
        (
            lambda: error(400, {"error": "invalid_scope", "error_description": "no"}),
            InvalidScope,
            None,
        ),
        (lambda: error(400, {"error": "invalid_grant"}), InvalidGrant, None),
        (lambda: error(500, {"error": "server_error"}), ServerError, None),
        (lambda: error(503, {}), TemporarilyUnavailable, None),
        (lambda: httpx2.Response(200, text="<html>"), ProtocolError, None),
        (lambda: error(200, {"token_type": "Bearer"}), ProtocolError, None),
        (lambda: httpx2.Response(302, headers={"location": "/elsewhere"}), ProtocolError, None),
    ],
)
def test_token_errors_map_to_classes(
    make_client: Any, provider: FakeProvider, make_response: Any, cls: type, code: Any
):
    provider.overrides["/tenant/oauth/token"] = [make_response()]
    with pytest.raises(cls) as caught:
        make_client(retries=0).client_credentials()
    if code:
        assert caught.value.error_code == code
    assert CLIENT_SECRET not in str(caught.value) and CLIENT_SECRET not in repr(caught.value)


def test_problem_json_from_the_api_maps_to_http_classes(make_client: Any, provider: FakeProvider):
    client = make_client()
    with pytest.raises(NotFound) as caught:
        client.request("GET", "/nowhere")
    assert caught.value.status_code == 404
    assert caught.value.title == "Not Found"
    provider.overrides["/tenant/api/thing"] = [httpx2.Response(401), httpx2.Response(401)]
    with pytest.raises(Unauthorized):
        client.request("GET", "api/thing")


def test_request_authenticates_and_refetches_once_on_401(make_client: Any, provider: FakeProvider):
    client = make_client()
    assert client.request("GET", "api/thing").json() == {"ok": True}
    assert client.request("GET", "api/thing").json() == {"ok": True}
    assert provider.calls["/tenant/oauth/token"] == 1  # cached
    provider.overrides["/tenant/api/thing"] = [httpx2.Response(401)]
    assert client.request("GET", "api/thing").json() == {"ok": True}
    assert provider.calls["/tenant/oauth/token"] == 2  # refetched once, then retried


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.client_credentials(),
        lambda c: c.refresh("r-1"),
        lambda c: c.login_password("ann", "pw"),
        lambda c: c.revoke("tok"),
    ],
)
def test_a_rate_limited_post_raises_at_once_without_sleeping(
    make_client: Any, provider: FakeProvider, call: Any
):
    """A user waits on these: the SDK does not sleep a Retry-After of up to 60 s
    (twice) while holding them; the caller gets retry_after and decides."""
    limited = [error(429, {"error": "slow_down"}, **{"Retry-After": "30"}) for _ in range(3)]
    provider.overrides["/tenant/oauth/token"] = list(limited)
    provider.overrides["/tenant/oauth/revoke"] = list(limited)
    client = make_client(retries=2)
    with pytest.raises(RateLimited) as caught:
        call(client)
    assert caught.value.retry_after == 30
    assert client.sleeps == []
    assert provider.calls["/tenant/oauth/token"] + provider.calls["/tenant/oauth/revoke"] == 1


def test_an_unavailable_revocation_is_not_waited_for(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/oauth/revoke"] = [error(503, {}, **{"Retry-After": "60"})]
    client = make_client(retries=2)
    with pytest.raises(TemporarilyUnavailable):
        client.revoke("tok")
    assert client.sleeps == [] and provider.calls["/tenant/oauth/revoke"] == 1


def test_a_rate_limited_get_is_retried_then_raises_with_retry_after(
    make_client: Any, provider: FakeProvider
):
    provider.overrides["/tenant/oauth/userinfo"] = [
        error(429, {"title": "Too Many"}, **{"Retry-After": "7"}) for _ in range(3)
    ]
    client = make_client(retries=2)
    with pytest.raises(RateLimited) as caught:
        client.userinfo("at")
    assert caught.value.retry_after == 7
    assert provider.calls["/tenant/oauth/userinfo"] == 3
    assert len(client.sleeps) == 2 and min(client.sleeps) >= 7


def test_idempotent_get_is_retried_on_503_and_read_errors(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/.well-known/openid-configuration"] = [
        httpx2.Response(503),
        httpx2.ReadError("reset"),
    ]
    client = make_client(retries=2)
    assert client.discover().issuer == ISSUER
    assert provider.calls["/tenant/.well-known/openid-configuration"] == 3
    assert len(client.sleeps) == 2


def test_token_post_that_may_have_been_processed_is_not_retried(
    make_client: Any, provider: FakeProvider
):
    provider.overrides["/tenant/oauth/token"] = [httpx2.ReadError("reset")]
    client = make_client(retries=3)
    with pytest.raises(TransportError):
        client.client_credentials()
    assert provider.calls["/tenant/oauth/token"] == 1
    provider.overrides["/tenant/oauth/token"] = [httpx2.Response(503)]
    with pytest.raises(TemporarilyUnavailable):
        client.client_credentials()
    assert provider.calls["/tenant/oauth/token"] == 2


def test_token_post_is_retried_when_it_never_left(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/oauth/token"] = [httpx2.ConnectError("refused")]
    client = make_client()
    assert client.client_credentials().access_token
    assert provider.calls["/tenant/oauth/token"] == 2


def test_revocation_post_is_idempotent_and_retried(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/oauth/revoke"] = [httpx2.ReadTimeout("slow")]
    make_client().revoke("tok")
    assert provider.calls["/tenant/oauth/revoke"] == 2


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx2.ConnectTimeout, TimeoutError),
        (httpx2.ReadTimeout, TimeoutError),
        (httpx2.ConnectError, TransportError),
        (httpx2.RemoteProtocolError, TransportError),
    ],
)
def test_transport_errors_never_escape_as_httpx2(
    make_client: Any, provider: FakeProvider, exc: type[Exception], cls: type
):
    provider.overrides["/tenant/.well-known/openid-configuration"] = [exc("boom")]
    with pytest.raises(cls) as caught:
        make_client(retries=0).discover()
    assert isinstance(caught.value, BastionError)
    assert not isinstance(caught.value, httpx2.HTTPError)


def test_timeout_error_is_also_the_builtin(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/.well-known/openid-configuration"] = [httpx2.ReadTimeout("t")]
    with pytest.raises(TimeoutError) as caught:
        make_client(retries=0).discover()
    assert isinstance(caught.value, builtins.TimeoutError)


def test_issuer_mismatch_is_refused(make_client: Any, provider: FakeProvider):
    provider.metadata["issuer"] = "https://evil.example"
    with pytest.raises(ProtocolError, match="issuer"):
        make_client().discover()


def test_reprs_hide_secrets(make_client: Any):
    client = make_client()
    assert CLIENT_SECRET not in repr(client)
    assert CLIENT_SECRET not in repr(client.auth)
    tokens = client.client_credentials()
    assert tokens.access_token not in repr(tokens)
    assert tokens.access_token not in str(tokens)


class _StreamingProvider(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """Streams a request's body without keeping it, as a real transport does, and
    answers 503 to the API call: the retry finds the body spent (httpx2.StreamConsumed)."""

    def _answer(self, path: str) -> httpx2.Response:
        if path.endswith("openid-configuration"):
            return httpx2.Response(200, json={
                "issuer": ISSUER, "token_endpoint": ISSUER + "/oauth/token",
                "authorization_endpoint": ISSUER + "/oauth/authorize",
                "jwks_uri": ISSUER + "/jwks", "response_types_supported": ["code"]})
        if path == "/oauth/token":
            return httpx2.Response(200, json={"access_token": "a", "token_type": "Bearer",
                                              "expires_in": 600})
        return httpx2.Response(503, headers={"Retry-After": "0"})

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        for _ in request.stream:  # type: ignore[union-attr]
            pass
        return self._answer(request.url.path)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        async for _ in request.stream:  # type: ignore[union-attr]
            pass
        return self._answer(request.url.path)


def test_a_spent_streamed_body_is_a_transport_error_not_httpx2s() -> None:
    """httpx2's StreamError is a RuntimeError: the clause for a client closed during a
    send caught it first and let it out bare."""
    def body() -> Any:
        yield b"chunk"

    with Client(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                transport=_StreamingProvider()) as client:
        client._sleep = staticmethod(lambda seconds: None)  # type: ignore[method-assign]
        with pytest.raises(TransportError):
            client.request("PUT", "/api/thing", content=body(), auth=httpx2.BasicAuth("u", "p"))


async def test_a_spent_streamed_body_is_a_transport_error_not_httpx2s_async() -> None:
    async def body() -> Any:
        yield b"chunk"

    async def no_wait(seconds: float) -> None:
        return None

    async with AsyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           transport=_StreamingProvider()) as client:
        client._sleep = staticmethod(no_wait)  # type: ignore[method-assign]
        with pytest.raises(TransportError):
            await client.request("PUT", "/api/thing", content=body(),
                                 auth=httpx2.BasicAuth("u", "p"))


class _LoopBoundTransport(httpx2.MockTransport):
    """Connections as a real pool holds them: they belong to the loop that opened
    them, and closing them once that loop has closed raises, as asyncio's do."""

    def __init__(self, handler: Any) -> None:
        super().__init__(handler)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.loop = asyncio.get_running_loop()
        return await super().handle_async_request(request)

    async def aclose(self) -> None:
        if self.loop is not None and self.loop.is_closed():
            raise RuntimeError("Event loop is closed")
        self.closed = True


def loop_bound_client(provider: FakeProvider) -> tuple[AsyncClient, _LoopBoundTransport]:
    """An ``AsyncClient`` that tracks its loop, as without ``transport=``."""
    client = AsyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    transport = _LoopBoundTransport(provider)
    client._http = httpx2.AsyncClient(base_url=ISSUER, transport=transport)
    return client, transport


def test_an_async_client_closes_from_another_loop_once_its_own_has_closed(
    provider: FakeProvider,
) -> None:
    """At shutdown (``asyncio.run(client.aclose())`` in a teardown hook), after the
    loop that used it had ended: it raised ConfigurationError and stayed open."""
    client, transport = loop_bound_client(provider)
    asyncio.run(client.discover())
    asyncio.run(client.aclose())  # its connections are dropped: nothing can close them
    assert client._http.is_closed and not transport.closed
    with pytest.raises(ConfigurationError, match="closed"):
        asyncio.run(client.client_credentials())


def test_an_async_client_closes_from_another_loop_while_its_own_is_open(
    provider: FakeProvider,
) -> None:
    client, transport = loop_bound_client(provider)
    with asyncio.Runner() as first:
        first.run(client.discover())
        asyncio.run(client.aclose())
        assert client._http.is_closed and transport.closed
