"""``AsyncClient``: the asynchronous shell around the I/O-free core in ``_base``."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Collection
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx2

from bastion.oauth.metadata import ProviderMetadata

from ._api_clients import AsyncClients, AsyncKeys
from ._async_api import AsyncEvents, AsyncOrganizations, AsyncRoles, AsyncUsers
from ._async_signin import AsyncSignIn
from ._auth import ScopedAuths
from ._base import CLOSED, BaseClient, Flow, map_http_error, not_copied
from ._flight import Wait, wait_in_task
from ._retry import TOKEN_REQUEST_IN_FLIGHT
from .connections import resolve
from .exceptions import ConfigurationError
from .logout_token import LogoutToken
from .state import ReplayStore
from .tokens import TokenSet

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(AsyncSignIn):
    """The asynchronous twin of ``Client``: the same calls, awaited.

    ``AsyncClient(url=..., client_id=..., client_secret=...)`` or
    ``AsyncClient(using="test")`` for a connection made with ``configure``.
    ``transport=`` takes any ``httpx2`` transport (``MockTransport`` in tests).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        using: str | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        settings = resolve(url, using, options)
        self._core = BaseClient(settings)
        self._core.owner = self
        self._transport = transport
        self._http = httpx2.AsyncClient(
            base_url=settings.url,
            transport=transport,
            timeout=settings.timeout,
            verify=settings.verify_ssl,
            follow_redirects=settings.allow_redirects,
        )
        #: The asyncio loop the client belongs to (see ``_http_of_this_loop``), weakly:
        #: the shared clients are kept per loop, until the loop goes (``_shared``).
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        #: Client-credentials auth for this client's own calls, or any httpx2 client.
        self._auths = ScopedAuths(self._core)
        self.auth = self._auths.get()
        #: Bastion's REST API, as an administrator (``.with_token(tokens)``: as a user).
        self.users = AsyncUsers(self)
        self.organizations = AsyncOrganizations(self)
        self.roles = AsyncRoles(self)
        self.events = AsyncEvents(self)
        self.clients = AsyncClients(self)
        self.keys = AsyncKeys(self)

    def _http_of_this_loop(self) -> httpx2.AsyncClient:
        """The HTTP client, if this is the event loop the client belongs to: the first
        that used it. Its pooled connections belong to that loop, and another (a
        second ``asyncio.run``, a test's own loop) would fail on them with a bare
        ``RuntimeError``, or not at all, by chance. A transport the app passed in
        is the app's to manage."""
        if self._transport is not None:
            return self._http
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio, through anyio): nothing to track
            return self._http
        if self._loop is None:
            self._loop = weakref.ref(loop)
        elif self._loop() is not loop:
            raise ConfigurationError(
                "this AsyncClient belongs to the event loop that first used it, and its "
                "connections with it: make one AsyncClient in each loop (or use the "
                "shared clients of bastion.configure, one per loop)")
        return self._http

    def __repr__(self) -> str:
        settings = self._core.settings
        return f"AsyncClient(url={settings.url!r}, client_id={settings.client_id!r})"

    __deepcopy__ = not_copied

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client, from any event loop (at shutdown, say, once the loop that
        used it has ended): closing must always work. Connections of a loop that has
        closed cannot be closed any more (Python warns about them): they are dropped."""
        try:
            await self._http.aclose()  # marks it closed before closing the connections
        except RuntimeError:  # "Event loop is closed", from the first connection
            if not self._loop_has_closed():
                raise

    def _loop_has_closed(self) -> bool:
        """The loop the client belongs to has closed (or is gone)."""
        if self._loop is None:
            return False
        loop = self._loop()
        return loop is None or loop.is_closed()

    # -- the sending loop: the only part AsyncClient writes differently -----------

    _sleep = staticmethod(anyio.sleep)

    async def _send(
        self, request: httpx2.Request, auth: httpx2.Auth | None = None
    ) -> httpx2.Response:
        if self._http.is_closed:  # said before _http_of_this_loop's complaint, if any
            raise ConfigurationError(CLOSED)
        http = self._http_of_this_loop()
        core = self._core
        idempotent = core.is_idempotent(request)
        attempt = core.first_attempt(request)
        while True:
            # Checked before each attempt: the client may be closed during a wait.
            if http.is_closed:  # httpx would raise a bare RuntimeError
                raise ConfigurationError(CLOSED)
            request.extensions.pop(TOKEN_REQUEST_IN_FLIGHT, None)
            try:
                response = await http.send(request, auth=auth)
            except (httpx2.HTTPError, httpx2.StreamError, httpx2.InvalidURL) as exc:
                delay = core.delay_after_error(request, exc, attempt, idempotent)
                if delay is None:
                    raise map_http_error(exc) from exc
            except RuntimeError:  # (httpx2's StreamError is one too: caught above)
                if not http.is_closed:
                    raise
                raise ConfigurationError(CLOSED) from None  # by another task meanwhile
            else:
                delay = core.delay_after_response(request, response, attempt)
                if delay is None:
                    return response
                await response.aclose()
            attempt += 1
            await self._sleep(delay)

    async def _run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Wait):
                    await wait_in_task(step)
                    step = next(flow)
                    continue
                try:
                    response = await self._send(step)
                except BaseException as exc:  # let a flow leading a flight land it
                    step = flow.throw(exc)
                else:
                    step = flow.send(response)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            flow.close()

    # -- the public calls: each runs one flow of the core --------------------------

    async def discover(self) -> ProviderMetadata:
        """The provider's metadata (fetched once, then cached)."""
        return await self._run(self._core.metadata_flow())

    async def client_credentials(self, scope: str | Collection[str] | None = None) -> TokenSet:
        """A fresh token for this client itself (RFC 6749 section 4.4)."""
        return await self._run(self._core.client_credentials_flow(scope))

    async def refresh(
        self, refresh_token: str | TokenSet, scope: str | Collection[str] | None = None
    ) -> TokenSet:
        """Trade a refresh token for new tokens; keep the *new* refresh token.

        Tasks refreshing the same token share one request, and a refresh token
        already traded by this client returns the same new tokens instead of
        being sent again. Given a ``TokenSet``, a new ID token must be about the
        same user, and the old one is kept if the provider sends none.
        """
        return await self._run(self._core.refresh_flow(refresh_token, scope))

    async def verify_token(
        self,
        token: str,
        audience: str | None = None,
        scopes: str | Collection[str] | None = None,
        leeway: float | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid JWT access token, checked locally with the JWKS.

        Raises ``InvalidToken``, or ``InsufficientScope`` when ``scopes`` are missing.
        A revoked token stays valid here until it expires; use ``introspect``.
        """
        claims = self._core.verify_cached(token, audience, scopes, leeway)
        if claims is not None:  # no I/O needed: the common case, kept cheap
            return claims
        return await self._run(self._core.verify_flow(token, audience, scopes, leeway))

    async def verify_logout_token(
        self, logout_token: str, replay_store: ReplayStore | None = None
    ) -> LogoutToken:
        """See ``Client.verify_logout_token``."""
        return await self._run(self._core.logout_token_flow(logout_token, replay_store))

    async def introspect(self, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
        """The provider's view of a token (RFC 7662); sees revocation at once."""
        return await self._run(self._core.introspect_flow(token, token_type_hint))

    async def revoke(self, token: str | TokenSet, token_type_hint: str | None = None) -> None:
        """Revoke an access or refresh token (RFC 7009); a ``TokenSet`` revokes both."""
        await self._run(self._core.revoke_flow(token, token_type_hint))

    async def request(
        self, method: str, url: str, *, auth: httpx2.Auth | None = None, **kwargs: Any
    ) -> httpx2.Response:
        """Call the provider's API as this client (client-credentials bearer token),
        or with ``auth=client.token_auth(tokens)`` as a user.

        ``url`` may be relative to the issuer URL. Error statuses raise.
        """
        try:
            request = self._http.build_request(method, url, **kwargs)
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            raise map_http_error(exc) from exc
        response = await self._send(request, auth=auth or self.auth)
        self._core.raise_for_response(response)
        return response
