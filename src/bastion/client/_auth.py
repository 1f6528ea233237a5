"""Client credentials as an ``httpx2.Auth`` flow (RFC 6749 section 4.4).

The token is fetched on first use, cached, replaced ``refresh_margin`` seconds
before it expires, and replaced once when the resource server answers 401.
The flow itself is lock-free and shared; ``sync_auth_flow`` and
``async_auth_flow`` only add the lock (a thread lock or an anyio lock) around
"get a usable token", so concurrent callers trigger a single fetch.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Collection, Generator

import anyio
import httpx2

from ._base import BaseClient, Flow
from .tokens import TokenSet

__all__ = ["ClientCredentialsAuth"]


class ClientCredentialsAuth(httpx2.Auth):
    """Adds a client-credentials bearer token to each request.

    Use it with the SDK's ``Client.request`` or with any ``httpx2`` client:
    ``httpx2.Client(auth=bastion_client.auth)``.
    """

    requires_request_body = True  # a request refused with 401 is sent again

    def __init__(self, core: BaseClient, scope: str | Collection[str] | None = None) -> None:
        self._core = core
        self._scope = scope
        self._token: TokenSet | None = None
        self._thread_lock = threading.Lock()
        self._task_lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(url={self._core.settings.url!r}, scope={self._scope!r})"

    def token_flow(self, stale: TokenSet | None = None) -> Flow[TokenSet]:
        """A usable token: the cached one unless it is ``stale`` or about to expire."""
        token = self._token
        margin = self._core.settings.refresh_margin
        fresh = token is not None and not token.expires_within(margin, self._core.clock())
        if token is not None and token is not stale and fresh:
            return token
        token = yield from self._core.client_credentials_flow(self._scope)
        self._token = token
        return token

    @staticmethod
    def _authorize(request: httpx2.Request, token: TokenSet) -> httpx2.Request:
        request.headers["Authorization"] = token.authorization
        return request

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        token = yield from self.token_flow()
        response = yield self._authorize(request, token)
        if response.status_code == 401:
            token = yield from self.token_flow(stale=token)
            yield self._authorize(request, token)

    # -- the shells: same steps, plus a lock and reading each token response -----

    def _sync_token(
        self, stale: TokenSet | None
    ) -> Generator[httpx2.Request, httpx2.Response, TokenSet]:
        with self._thread_lock:
            flow = self.token_flow(stale)
            try:
                token_request = next(flow)
                while True:
                    response = yield token_request
                    response.read()
                    token_request = flow.send(response)
            except StopIteration as done:
                token: TokenSet = done.value
        return token

    def sync_auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.read()
        token = yield from self._sync_token(None)
        response = yield self._authorize(request, token)
        if response.status_code == 401:
            response.read()
            token = yield from self._sync_token(token)
            yield self._authorize(request, token)

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        await request.aread()
        stale: TokenSet | None = None
        for _ in range(2):
            if self._task_lock is None:
                self._task_lock = anyio.Lock()
            async with self._task_lock:
                # An async generator cannot ``yield from``: step the flow by hand.
                flow = self.token_flow(stale)
                try:
                    token_request = next(flow)
                    while True:
                        token_response = yield token_request
                        await token_response.aread()
                        token_request = flow.send(token_response)
                except StopIteration as done:
                    token: TokenSet = done.value
            response = yield self._authorize(request, token)
            if response.status_code != 401 or stale is not None:
                return
            await response.aread()
            stale = token
