"""ClientCredentialsAuth: caching, early refresh, 401 retry and one fetch under concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
from sdk_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, FakeProvider

from bastion import AsyncClient, Client, Unauthorized


def test_token_is_replaced_shortly_before_expiry(make_client: Any, provider: FakeProvider):
    provider.expires_in = 60
    client = make_client(refresh_margin=30)
    now = [time.time()]
    client._core.clock = lambda: now[0]
    client.request("GET", "api/thing")
    now[0] += 29  # 31 s left: still good
    client.request("GET", "api/thing")
    assert provider.calls["/tenant/oauth/token"] == 1
    now[0] += 2  # 29 s left: inside the margin
    client.request("GET", "api/thing")
    assert provider.calls["/tenant/oauth/token"] == 2


def test_a_second_401_is_returned_not_looped(make_client: Any, provider: FakeProvider):
    provider.overrides["/tenant/api/thing"] = [httpx2.Response(401)] * 3
    client = make_client()
    with pytest.raises(Unauthorized):
        client.request("GET", "api/thing")
    assert provider.calls["/tenant/api/thing"] == 2
    assert provider.calls["/tenant/oauth/token"] == 2


def test_auth_plugs_into_any_httpx2_client(provider: FakeProvider):
    transport = httpx2.MockTransport(provider)
    client = Client(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, transport=transport)
    with client, httpx2.Client(auth=client.auth, transport=transport) as http:
        assert http.get(ISSUER + "/api/thing").json() == {"ok": True}
        assert http.get(ISSUER + "/api/thing").json() == {"ok": True}
    assert provider.calls["/tenant/oauth/token"] == 1


def test_concurrent_threads_trigger_one_fetch(provider: FakeProvider):
    transport = httpx2.MockTransport(provider)
    client = Client(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, transport=transport)
    start = threading.Barrier(8)
    results: list[int] = []

    def call() -> None:
        start.wait()
        results.append(client.request("GET", "api/thing").status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert results == [200] * 8
    assert provider.calls["/tenant/oauth/token"] == 1


async def test_concurrent_tasks_trigger_one_fetch(provider: FakeProvider):
    async def handler(request: httpx2.Request) -> httpx2.Response:
        for _ in range(5):  # give every other task the chance to race us
            await anyio.lowlevel.checkpoint()
        return provider(request)

    transport = httpx2.MockTransport(handler)
    async with AsyncClient(
        ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, transport=transport
    ) as client:
        statuses: list[int] = []

        async def call() -> None:
            statuses.append((await client.request("GET", "api/thing")).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(call)
    assert statuses == [200] * 8
    assert provider.calls["/tenant/oauth/token"] == 1


async def test_concurrent_tasks_share_one_discovery(provider: FakeProvider):
    async def handler(request: httpx2.Request) -> httpx2.Response:
        for _ in range(5):  # give every other task the chance to race us
            await anyio.lowlevel.checkpoint()
        return provider(request)

    client = AsyncClient(ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                         transport=httpx2.MockTransport(handler))
    async with client, anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(client.introspect, "a-token")
    assert provider.calls["/tenant/.well-known/openid-configuration"] == 1
    assert provider.calls["/tenant/oauth/introspect"] == 8


def test_a_token_living_less_than_the_refresh_margin_is_fetched_once(make_client: Any,
                                                                      provider: FakeProvider):
    # 20 s tokens with the default 30 s margin: renewed at half their lifetime, not
    # fetched again for every request (the client's own, the admin one, a user's).
    provider.expires_in = 20
    client = make_client()
    for _ in range(5):
        client.request("GET", "api/thing")
        client.users.delete("u-1")
    assert provider.calls["/tenant/oauth/token"] == 2  # client credentials, admin
    tokens = client.login_password("ann", "pw", "read")
    http = client.token_auth(tokens)
    for _ in range(5):
        client.request("GET", "api/thing", auth=http)
    assert provider.calls["/tenant/oauth/token"] == 4  # the login, one refresh


def test_a_client_credentials_auth_for_a_scope(make_client: Any, provider: FakeProvider):
    client = make_client()
    scoped = client.client_credentials_auth("read")
    for _ in range(2):
        client.request("GET", "api/thing", auth=scoped)
    sent = [provider.form(r) for r in provider.requests if r.url.path.endswith("/oauth/token")]
    assert [form.get("scope") for form in sent] == ["read"]  # fetched once, for its scope
    assert repr(scoped).endswith("scope='read')")


def test_client_credentials_auth_called_per_request_fetches_once_per_scope(
        make_client: Any, provider: FakeProvider):
    client = make_client()
    for scope in ("read", ["read"], "write", "read", None, ""):
        client.request("GET", "api/thing", auth=client.client_credentials_auth(scope))
    sent = [provider.form(r) for r in provider.requests if r.url.path.endswith("/oauth/token")]
    assert [form.get("scope") for form in sent] == ["read", "write", None]
    assert client.client_credentials_auth() is client.auth  # the registered scopes
