"""Fixtures for SDK tests: a fake provider, and clients in both shells.

``make_client`` is parametrized: each test that uses it runs once with ``Client``
and once with ``AsyncClient`` (driven from a blocking portal, so the test body
is the same code for both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio.from_thread
import httpx2
import pytest
from sdk_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, Blocking, FakeProvider, Handler, SyncClient

from bastion import AsyncClient


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(mode: str, provider: FakeProvider) -> Iterator[Callable[..., Any]]:
    """``make_client(**options)`` -> a Client, or an AsyncClient behind a portal."""
    with anyio.from_thread.start_blocking_portal() as portal:
        opened: list[Any] = []

        def make(handler: Handler | None = None, **options: Any) -> Any:
            options = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **options}
            transport = httpx2.MockTransport(handler or provider)
            if mode == "sync":
                client: Any = SyncClient(ISSUER, transport=transport, **options)
            else:
                client = Blocking(AsyncClient(ISSUER, transport=transport, **options), portal)
            opened.append(client)
            return client

        yield make
        for client in opened:
            if isinstance(client, Blocking):
                client.aclose()
            else:
                client.close()
