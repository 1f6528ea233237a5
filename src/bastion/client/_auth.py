"""Bearer tokens as ``httpx2.Auth`` flows: the client's own, and a user's.

- ``ClientCredentialsAuth`` (RFC 6749 section 4.4): fetched on first use.
- ``TokenAuth``: a signed-in user's ``TokenSet``, refreshed with its refresh
  token (RFC 6749 section 6); the new tokens replace the old ones (rotation)
  and are handed to ``on_refresh`` so the app can store them (awaited by the
  async shell if it is an ``async def``; the sync shell cannot, and refuses it).

Both cache the token, replace it ``refresh_margin`` seconds before it expires,
and once more when the resource server answers 401. The flow itself is
lock-free and shared; ``sync_auth_flow`` and ``async_auth_flow`` only add the
lock (a thread lock or an anyio lock) around "get a usable token", so
concurrent callers of one auth trigger a single fetch or refresh. A refresh
is also a single flight in the core (``BaseClient.refresh_flow``): another
``TokenAuth``, or a ``Client.refresh``, holding the same refresh token waits
for it instead of sending the token again.

While a token request is in flight the outer request carries it as the extension
``TOKEN_REQUEST_IN_FLIGHT``: if sending fails then, the token request may have
been processed, and the shells' retry loop must not send it again (a reused
refresh token revokes its whole family); if it surely never left, the shells tell
the core (``BaseClient.not_sent``), which then lets the token be sent again.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Generator

import anyio
import httpx2

from ._arguments import expect, scope_text
from ._base import BaseClient, Flow
from ._callbacks import awaited, not_awaitable
from ._flight import Wait, wait_in_task, wait_in_thread
from ._retry import TOKEN_REQUEST_IN_FLIGHT
from .tokens import TokenSet, renewal_margin

__all__ = [
    "TOKEN_REQUEST_IN_FLIGHT",
    "ClientCredentialsAuth",
    "OnRefresh",
    "ScopedAuths",
    "TokenAuth",
]

#: ``on_refresh``: a plain function, or an ``async def`` one where it can be awaited
#: (an async client's requests).
OnRefresh = Callable[[TokenSet], Awaitable[object] | object]
#: Why an ``async def on_refresh`` is refused on the sync path.
SYNC_ON_REFRESH = ("in a Client, or any sync httpx2 client: give a plain function, or use "
                   "AsyncClient")


class _CachedTokenAuth(httpx2.Auth):
    requires_request_body = True  # a request refused with 401 is sent again

    def __init__(self, core: BaseClient) -> None:
        self._core = core
        self._token: TokenSet | None = None
        self._margin = core.settings.refresh_margin  # of the cached token (renewal_margin)
        self._thread_lock = threading.Lock()
        self._task_lock: anyio.Lock | None = None

    def new_token_flow(self) -> Flow[TokenSet]:
        raise NotImplementedError

    def token_flow(self, stale: TokenSet | None = None) -> Flow[TokenSet]:
        """A usable token: the cached one unless it is ``stale`` or about to expire."""
        core, token = self._core, self._token
        fresh = token is not None and not token.expires_within(self._margin, core.clock())
        if token is not None and token is not stale and fresh:
            return token
        token = yield from self.new_token_flow()
        self._keep(token)
        return token

    def _renewed(self, token: TokenSet) -> object:
        """Called by the shells once a new ``token`` is kept: what to await, if anything."""
        return None

    def _keep(self, token: TokenSet) -> None:
        self._token = token
        self._margin = renewal_margin(token, self._core.clock(),
                                      self._core.settings.refresh_margin)

    @staticmethod
    def _authorize(request: httpx2.Request, token: TokenSet) -> httpx2.Request:
        request.headers["Authorization"] = token.authorization
        return request

    # -- the shells: the same steps, each with its lock, waiting on single flights
    # and reading each token response (``auth_flow`` is not used: it cannot wait)

    def _sync_token(
        self, request: httpx2.Request, stale: TokenSet | None
    ) -> Generator[httpx2.Request, httpx2.Response, TokenSet]:
        with self._thread_lock:
            held = self._token
            flow = self.token_flow(stale)
            try:
                step = next(flow)
                while True:
                    if isinstance(step, Wait):  # another caller is refreshing this token
                        wait_in_thread(step)
                        step = next(flow)
                        continue
                    request.extensions[TOKEN_REQUEST_IN_FLIGHT] = step
                    response = yield step
                    del request.extensions[TOKEN_REQUEST_IN_FLIGHT]
                    response.read()
                    step = flow.send(response)
            except StopIteration as done:
                token: TokenSet = done.value
            finally:
                flow.close()
            if token is not held:
                not_awaitable(self._renewed(token), "on_refresh", SYNC_ON_REFRESH)
        return token

    def sync_auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.read()
        token = yield from self._sync_token(request, None)
        response = yield self._authorize(request, token)
        if response.status_code == 401:
            response.read()
            renewed = yield from self._sync_token(request, token)
            if renewed is not token:
                yield self._authorize(request, renewed)

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        await request.aread()
        stale: TokenSet | None = None
        for _ in range(2):
            if self._task_lock is None:
                self._task_lock = anyio.Lock()
            async with self._task_lock:
                held = self._token
                # An async generator cannot ``yield from``: step the flow by hand.
                flow = self.token_flow(stale)
                try:
                    step = next(flow)
                    while True:
                        if isinstance(step, Wait):  # another caller is refreshing this token
                            await wait_in_task(step)
                            step = next(flow)
                            continue
                        request.extensions[TOKEN_REQUEST_IN_FLIGHT] = step
                        token_response = yield step
                        del request.extensions[TOKEN_REQUEST_IN_FLIGHT]
                        await token_response.aread()
                        step = flow.send(token_response)
                except StopIteration as done:
                    token: TokenSet = done.value
                finally:
                    flow.close()
                if token is not held:  # under the lock: saved in the order refreshed
                    await awaited(self._renewed(token))
            if token is stale:  # nothing better to offer: the 401 stands
                return
            response = yield self._authorize(request, token)
            if response.status_code != 401 or stale is not None:
                return
            await response.aread()
            stale = token


class ClientCredentialsAuth(_CachedTokenAuth):
    """Adds a client-credentials bearer token to each request.

    Use it with the SDK's ``Client.request`` or with any ``httpx2`` client:
    ``httpx2.Client(auth=bastion_client.auth)``.
    """

    def __init__(self, core: BaseClient, scope: str | Collection[str] | None = None) -> None:
        super().__init__(core)
        self._scope = scope

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(url={self._core.settings.url!r}, scope={self._scope!r})"

    def new_token_flow(self) -> Flow[TokenSet]:
        return (yield from self._core.client_credentials_flow(self._scope))


class ScopedAuths:
    """A client's ``ClientCredentialsAuth`` objects, one per scope, so that
    ``client_credentials_auth(scope)`` called for each request still fetches the
    token once and reuses it, as ``client.auth`` does (its scope: ``None``)."""

    def __init__(self, core: BaseClient) -> None:
        self._core = core
        self._lock = threading.Lock()
        self._auths: dict[str | None, ClientCredentialsAuth] = {}

    def get(self, scope: str | Collection[str] | None = None) -> ClientCredentialsAuth:
        text = scope_text(scope)
        with self._lock:
            auth = self._auths.get(text)
            if auth is None:
                auth = self._auths[text] = ClientCredentialsAuth(self._core, text)
            return auth


class TokenAuth(_CachedTokenAuth):
    """Adds a user's access token to each request, refreshing it when due.

    ``client.token_auth(tokens, on_refresh=save)``; ``auth.tokens`` is always
    the current ``TokenSet``. Without a refresh token, an expired access token
    is sent as is and the server's 401 is returned. Should ``on_refresh`` raise,
    the request raises its error, and ``auth.tokens`` holds the new tokens all the same.
    An ``async def on_refresh`` is awaited by async requests; sync ones refuse it
    (``ConfigurationError``, the new tokens kept as well).
    """

    def __init__(
        self,
        core: BaseClient,
        tokens: TokenSet,
        on_refresh: OnRefresh | None = None,
    ) -> None:
        super().__init__(core)
        self._token = expect(tokens, TokenSet, "token_auth needs a TokenSet (for an access "
                             "token alone: TokenSet(access_token=token))")
        self._on_refresh = on_refresh

    def __repr__(self) -> str:
        return f"TokenAuth(url={self._core.settings.url!r}, tokens={self._token!r})"

    @property
    def tokens(self) -> TokenSet:
        assert self._token is not None  # set at construction, only ever replaced
        return self._token

    def new_token_flow(self) -> Flow[TokenSet]:
        current = self.tokens
        if not current.refresh_token:
            return current
        return (yield from self._core.refresh_flow(current))

    def _renewed(self, token: TokenSet) -> object:
        # Called once the tokens are kept: should the callback fail, the spent
        # refresh token must not be sent again (a reuse revokes the whole family).
        return None if self._on_refresh is None else self._on_refresh(token)
